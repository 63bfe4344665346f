//! Reading and writing Hugging Face checkpoints: round trips, shards, dtypes, and clear errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use doge::checkpoint::Checkpoint;
use doge::score::score_sequences;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/doge-tiny")
        .join(name)
}

fn seqs() -> Vec<Vec<u32>> {
    vec![
        (0..20).map(|i| (i * 29 + 7) % 256).collect(),
        (0..9).map(|i| (i * 3 + 100) % 256).collect(),
    ]
}

fn scores(dir: &Path) -> Vec<Vec<f32>> {
    let model = Checkpoint::load(dir, DType::F32, &Device::Cpu)
        .unwrap()
        .model()
        .unwrap();
    score_sequences(&model, &seqs(), 2)
        .unwrap()
        .into_iter()
        .map(|s| s.token_logprobs)
        .collect()
}

fn load_err(dir: &Path) -> String {
    match Checkpoint::load(dir, DType::F32, &Device::Cpu) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn save_then_load_scores_identically() {
    for name in ["dense", "moe"] {
        let tmp = tempfile::tempdir().unwrap();
        let ckpt = Checkpoint::load(&fixture(name), DType::F32, &Device::Cpu).unwrap();
        ckpt.save(tmp.path(), DType::F32).unwrap();
        assert_eq!(scores(&fixture(name)), scores(tmp.path()), "{name}");
        // Tied embeddings are saved once, as transformers does.
        let st = candle_core::safetensors::load(tmp.path().join("model.safetensors"), &Device::Cpu)
            .unwrap();
        assert!(!st.contains_key("lm_head.weight"));
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["model_type"], "doge");
        assert_eq!(cfg["architectures"][0], "DogeForCausalLM");
        // The saved config parses back to the same model config.
        assert_eq!(
            doge::checkpoint::read_config(tmp.path()).unwrap(),
            ckpt.config
        );
    }
}

#[test]
fn bf16_round_trip_stays_close() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = Checkpoint::load(&fixture("dense"), DType::F32, &Device::Cpu).unwrap();
    ckpt.save(tmp.path(), DType::BF16).unwrap();
    let st =
        candle_core::safetensors::load(tmp.path().join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(st.values().all(|t| t.dtype() == DType::BF16));
    // Loading gives back exactly the f32 weights rounded to bf16.
    let back = Checkpoint::load(tmp.path(), DType::F32, &Device::Cpu).unwrap();
    for (name, t) in &ckpt.tensors {
        let want = t
            .to_dtype(DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap();
        let got = back.tensors[name].flatten_all().unwrap();
        assert_eq!(
            want.to_vec1::<f32>().unwrap(),
            got.to_vec1::<f32>().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn sharded_checkpoints_load() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("moe").join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let all =
        candle_core::safetensors::load(fixture("moe").join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let mut shards: [HashMap<String, Tensor>; 2] = Default::default();
    let mut weight_map = serde_json::Map::new();
    for (i, (k, v)) in all.into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        weight_map.insert(k.clone(), serde_json::json!(file));
        shards[i % 2].insert(k, v);
    }
    for (i, s) in shards.iter().enumerate() {
        candle_core::safetensors::save(
            s,
            tmp.path()
                .join(format!("model-0000{}-of-00002.safetensors", i + 1)),
        )
        .unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    assert_eq!(scores(&fixture("moe")), scores(tmp.path()));
}

/// Copies the dense fixture, letting `edit` change its tensors before they are written.
fn edited_copy(edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("dense").join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let mut t =
        candle_core::safetensors::load(fixture("dense").join("model.safetensors"), &Device::Cpu)
            .unwrap();
    edit(&mut t);
    candle_core::safetensors::save(&t, tmp.path().join("model.safetensors")).unwrap();
    tmp
}

#[test]
fn a_wrong_shape_names_the_tensor_and_both_shapes() {
    let name = "model.layers.1.self_attn.dt_proj.weight";
    let tmp = edited_copy(|t| {
        t.insert(
            name.into(),
            Tensor::zeros((1, 5), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let msg = load_err(tmp.path());
    assert!(
        msg.contains(name) && msg.contains("[1, 5]") && msg.contains("[1, 16]"),
        "{msg}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let name = "model.layers.0.mlp.up_proj.weight";
    let tmp = edited_copy(|t| {
        t.remove(name);
    });
    let msg = load_err(tmp.path());
    assert!(msg.contains(name) && msg.contains("missing"), "{msg}");
}

#[test]
fn a_truncated_file_is_an_error_not_a_panic() {
    let tmp = edited_copy(|_| {});
    let path = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_err(tmp.path());
    assert!(
        msg.contains("model.safetensors") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn a_config_that_contradicts_the_tensors_is_an_error() {
    let tmp = edited_copy(|_| {});
    let cfg_path = tmp.path().join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("\"intermediate_size\": 64", "\"intermediate_size\": 96");
    std::fs::write(&cfg_path, text).unwrap();
    let msg = load_err(tmp.path());
    assert!(
        msg.contains("mlp.gate_proj.weight")
            && msg.contains("[96, 32]")
            && msg.contains("intermediate_size 96"),
        "{msg}"
    );
}

#[test]
fn untied_checkpoints_need_and_use_lm_head() {
    let tmp = edited_copy(|_| {});
    let cfg_path = tmp.path().join("config.json");
    let text = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "\"tie_word_embeddings\": true",
        "\"tie_word_embeddings\": false",
    );
    std::fs::write(&cfg_path, text).unwrap();
    let msg = load_err(tmp.path());
    assert!(
        msg.contains("lm_head.weight") && msg.contains("tie_word_embeddings"),
        "{msg}"
    );
    // With lm_head equal to the embedding, the untied model scores as the tied one.
    let tmp2 = edited_copy(|t| {
        let e = t["model.embed_tokens.weight"].clone();
        t.insert("lm_head.weight".into(), e);
    });
    std::fs::copy(&cfg_path, tmp2.path().join("config.json")).unwrap();
    assert_eq!(scores(&fixture("dense")), scores(tmp2.path()));
    let ckpt = Checkpoint::load(tmp2.path(), DType::F32, &Device::Cpu).unwrap();
    assert!(ckpt.tensors.contains_key("lm_head.weight"));
}

#[test]
fn legacy_config_spellings_are_accepted() {
    let text = r#"{"model_type": "doge", "vocab_size": 256, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 2, "rope_theta": 500000.0,
        "rope_scaling": {"type": "dynamic", "factor": 4.0, "original_max_position_embeddings": 2048},
        "torch_dtype": "bfloat16", "some_future_key": [1, 2]}"#;
    let cfg = doge::model::DogeConfig::from_json_str(text).unwrap();
    assert_eq!(cfg.num_key_value_heads, 2);
    assert_eq!(cfg.rope.rope_theta, 500000.0);
    assert_eq!(cfg.rope.rope_type, "dynamic");
    assert_eq!(cfg.rope.factor, Some(4.0));
    assert_eq!(cfg.dtype, "bfloat16");
    let bad = text.replace("\"num_attention_heads\": 2", "\"num_attention_heads\": 3");
    let msg = doge::model::DogeConfig::from_json_str(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("num_attention_heads") && msg.contains("hidden_size 32"),
        "{msg}"
    );
}
