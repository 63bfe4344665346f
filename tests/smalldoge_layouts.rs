//! The SmallDoge layouts as checkpoints: a remote-code (variant B) folder saves back in the same
//! form (config.json's `auto_map`, the remote `.py` files, B's tensor names and shapes), reloads
//! bit for bit, and loads in small-doge's own code with the same logits; the training-era names
//! (variant C) load as their B twin; what no layout computes is refused by name.
//!
//! The small-doge check needs Python with torch and transformers 4.5x (`DOGE_SMALLDOGE_PYTHON`,
//! default `python3`) and small-doge's remote code from `../shared/ref/smalldoge-b/dense-b`; without
//! either it prints a notice and checks the rest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::reference_support::{ids, jsonl, max_diff};
use candle_core::{DType, Device, Tensor};
use doge::checkpoint::Checkpoint;
use doge::model::{causal_lm_loss, DogeForCausalLM, Layout};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/smalldoge-b")
        .join(name)
}

/// The folder of shared/ref that ships small-doge's configuration_doge.py / modeling_doge.py.
fn shared_remote_code() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/ref/smalldoge-b/dense-b");
    dir.join("modeling_doge.py").is_file().then_some(dir)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn load(dir: &Path) -> Checkpoint {
    Checkpoint::load(dir, DType::F32, &Device::Cpu).unwrap()
}

fn load_err(dir: &Path) -> String {
    Checkpoint::load(dir, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn logits(model: &DogeForCausalLM, ids: &[u32]) -> Vec<Vec<f32>> {
    let t = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward(&t, None)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn nll(model: &DogeForCausalLM, ids: &[u32]) -> f32 {
    let t = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.forward(&t, None).unwrap();
    causal_lm_loss(&logits, &t.to_dtype(DType::I64).unwrap())
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Every tensor of a safetensors file, as raw bytes by name.
fn raw_tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| (name, (view.shape().to_vec(), view.data().to_vec())))
        .collect()
}

/// A copy of a fixture with stand-in remote-code files beside it, as a hub repo of that layout has.
fn with_remote_code(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture(name), tmp.path());
    match shared_remote_code() {
        Some(src) => {
            for f in ["configuration_doge.py", "modeling_doge.py"] {
                std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
            }
        }
        None => {
            std::fs::write(
                tmp.path().join("configuration_doge.py"),
                "# configuration\n",
            )
            .unwrap();
            std::fs::write(tmp.path().join("modeling_doge.py"), "# modeling\n").unwrap();
        }
    }
    tmp
}

#[test]
fn a_smalldoge_checkpoint_saves_back_in_its_own_form() {
    for name in ["dense-b", "gqa-b"] {
        let src = with_remote_code(name);
        let ckpt = load(src.path());
        assert_eq!(ckpt.config.layout, Layout::SmallDoge);
        let out = tempfile::tempdir().unwrap();
        ckpt.save(out.path(), DType::F32).unwrap();

        // config.json: the remote-code classes, and the 4.x RoPE keys small-doge's config reads.
        let (before, after) = (
            json(&src.path().join("config.json")),
            json(&out.path().join("config.json")),
        );
        assert_eq!(after["auto_map"], before["auto_map"], "{name}");
        assert_eq!(after["rope_theta"], before["rope_theta"], "{name}");
        assert_eq!(after["rope_scaling"], before["rope_scaling"], "{name}");
        assert!(after.get("rope_parameters").is_none(), "{name}");
        for key in [
            "num_attention_heads",
            "num_key_value_heads",
            "keep_window_size",
            "attention_bias",
            "tie_word_embeddings",
            "max_position_embeddings",
        ] {
            assert_eq!(after[key], before[key], "{name}: {key}");
        }
        // The remote code, byte for byte.
        for f in ["configuration_doge.py", "modeling_doge.py"] {
            assert_eq!(
                std::fs::read(out.path().join(f)).unwrap(),
                std::fs::read(src.path().join(f)).unwrap(),
                "{name}: {f}"
            );
        }
        // The same tensors under the same names, bit for bit (no q/k norms appear).
        assert_eq!(
            raw_tensors(&out.path().join("model.safetensors")),
            raw_tensors(&src.path().join("model.safetensors")),
            "{name}"
        );
        // And a reload computes the same numbers bit for bit.
        let ids: Vec<u32> = (0..30).map(|i| (i * 37 + 11) % 256).collect();
        let a = logits(&ckpt.model().unwrap(), &ids);
        let b = logits(&load(out.path()).model().unwrap(), &ids);
        assert_eq!(a, b, "{name}");
    }
}

/// Runs tests/python/smalldoge_logits.py; None when torch / transformers 4.5x are not importable.
fn small_doge_logits(dir: &Path, ids: &[u32]) -> Option<Vec<Vec<f32>>> {
    let python = std::env::var("DOGE_SMALLDOGE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/smalldoge_logits.py");
    let out = Command::new(python)
        .arg(script)
        .arg("load")
        .arg(dir)
        .arg(serde_json::to_string(ids).unwrap())
        .output()
        .ok()?;
    if out.status.code() == Some(3) {
        eprintln!("skipped: {}", String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(serde_json::from_value(v["logits"].clone()).unwrap())
}

#[test]
fn what_doge_saves_loads_in_small_doge_remote_code_with_the_same_logits() {
    if shared_remote_code().is_none() {
        eprintln!(
            "skipped: small-doge's remote code (../shared/ref/smalldoge-b/dense-b) is absent"
        );
        return;
    }
    for name in ["dense-b", "moe-b", "gqa-b"] {
        let src = with_remote_code(name);
        let ckpt = load(src.path());
        let out = tempfile::tempdir().unwrap();
        ckpt.save(out.path(), DType::F32).unwrap();
        // Past the keep window (8) and, for gqa-b, past max_position_embeddings (16): dynamic NTK.
        let ids: Vec<u32> = (0..21).map(|i| (i * 37 + 11) % 256).collect();
        let ids = if ckpt.config.is_moe {
            // small-doge's CDMoE views the router logits across tokens (spec 2.8); doge routes
            // each token by its own, and the two agree on a single token.
            vec![ids[0]]
        } else {
            ids
        };
        let Some(theirs) = small_doge_logits(out.path(), &ids) else {
            return;
        };
        let ours = logits(&load(out.path()).model().unwrap(), &ids);
        let diff = max_diff(&ours, &theirs);
        eprintln!(
            "{name}: max |logit doge - small-doge| over {} positions: {diff:e}",
            ids.len()
        );
        assert!(diff < 1e-4, "{name}: {diff}");
    }
}

/// Variant C's tensor names (spec 3.4), written here by hand rather than through doge's table.
fn training_era(name: &str) -> String {
    let name = name
        .replace("model.embed_tokens.", "model.word_embed.")
        .replace("model.norm.", "model.final_layernorm.")
        .replace(".input_layernorm.", ".pre_layernorm.")
        .replace(".post_attention_layernorm.", ".post_layernorm.")
        .replace(".mlp.", ".feed_forward.");
    if let Some(layer) = name.strip_suffix(".input_residual") {
        format!("{layer}.pre_residual.weight")
    } else if let Some(layer) = name.strip_suffix(".post_attention_residual") {
        format!("{layer}.post_residual.weight")
    } else {
        name
    }
}

/// dense-b rewritten as a training-era checkpoint: renamed tensors and that era's config keys.
fn training_era_twin(edit: impl Fn(&mut serde_json::Map<String, Value>)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("dense-b").join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let renamed: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (training_era(&name), view))
        .collect();
    safetensors::serialize_to_file(renamed, None, &tmp.path().join("model.safetensors")).unwrap();
    let mut cfg = json(&fixture("dense-b").join("config.json"))
        .as_object()
        .unwrap()
        .clone();
    for key in ["attention_bias", "mlp_bias", "sliding_window", "auto_map"] {
        cfg.remove(key);
    }
    cfg.insert("hidden_bias".into(), Value::Bool(false));
    cfg.insert("dynamic_mask_ratio".into(), serde_json::json!(0.0));
    edit(&mut cfg);
    std::fs::write(
        tmp.path().join("config.json"),
        serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
    tmp
}

#[test]
fn training_era_names_load_and_score_as_their_smalldoge_twin() {
    let twin = training_era_twin(|_| {});
    let c = load(twin.path());
    assert_eq!(c.config.layout, Layout::SmallDogeTrainingEra);
    let c_model = c.model().unwrap();
    let b = load(&fixture("dense-b"));
    let b_model = b.model().unwrap();
    let window = b.config.keep_window_size;
    // The training-era code has no top-k window (its keep_window_size only applied with
    // dynamic_mask_ratio > 0): it is B with every causal key kept.
    let mut b_all_keys = b.clone();
    b_all_keys.config.keep_window_size = 1 << 20;
    let b_all_keys = b_all_keys.model().unwrap();
    let rows = jsonl(&fixture("dense-b").join("score.jsonl"));
    let mut saw_short = false;
    for row in &rows {
        let seq = ids(&row["input_ids"]);
        let reference = row["nll"].as_f64().unwrap() as f32;
        if seq.len() <= window {
            // Within the window B keeps every key too: C equals small-doge's own numbers.
            saw_short = true;
            assert!((nll(&c_model, &seq) - reference).abs() < 1e-4);
            assert_eq!(logits(&c_model, &seq), logits(&b_model, &seq));
        } else {
            assert_eq!(logits(&c_model, &seq), logits(&b_all_keys, &seq));
            // ... and the window does change the numbers, so the check above has teeth.
            assert!(max_diff(&logits(&c_model, &seq), &logits(&b_model, &seq)) > 1e-4);
        }
    }
    assert!(saw_short && rows.iter().any(|r| ids(&r["input_ids"]).len() > window));

    // Saved, it keeps its names and config keys, and reloads bit for bit.
    let out = tempfile::tempdir().unwrap();
    c.save(out.path(), DType::F32).unwrap();
    assert_eq!(
        raw_tensors(&out.path().join("model.safetensors")),
        raw_tensors(&twin.path().join("model.safetensors"))
    );
    let saved = json(&out.path().join("config.json"));
    assert_eq!(saved["hidden_bias"], Value::Bool(false));
    assert_eq!(saved["dynamic_mask_ratio"], serde_json::json!(0.0));
    let seq: Vec<u32> = (0..20).collect();
    assert_eq!(
        logits(&load(out.path()).model().unwrap(), &seq),
        logits(&c_model, &seq)
    );
}

#[test]
fn a_training_era_config_with_a_dynamic_mask_ratio_is_refused_by_field() {
    let twin = training_era_twin(|cfg| {
        cfg.insert("dynamic_mask_ratio".into(), serde_json::json!(0.3));
    });
    let msg = load_err(twin.path());
    assert!(
        msg.contains("config.json") && msg.contains("`dynamic_mask_ratio`") && msg.contains("0.3"),
        "{msg}"
    );
}

#[test]
fn the_march_2025_cdmoe_is_refused_by_tensor() {
    let twin = training_era_twin(|_| {});
    // Add the old retrieval CDMoE's query projection to the renamed checkpoint.
    let path = twin.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    tensors.insert(
        "model.layers.0.feed_forward.queries_proj.weight".into(),
        Tensor::zeros((8, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let msg = load_err(twin.path());
    assert!(
        msg.contains("model.layers.0.feed_forward.queries_proj.weight") && msg.contains("CDMoE"),
        "{msg}"
    );
}

#[test]
fn a_smalldoge_layout_with_the_wrong_bias_heads_names_the_tensor() {
    // q/k norms removed from a transformers checkpoint make it read as SmallDoge, whose `A` has
    // one entry per attention head: the native [Hkv] `A` is then the wrong shape, and says so.
    let tmp = tempfile::tempdir().unwrap();
    let native = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/doge-tiny/dense");
    copy_dir(&native, tmp.path());
    let path = tmp.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    tensors.retain(|k, _| !k.contains("self_attn.q_norm") && !k.contains("self_attn.k_norm"));
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let msg = load_err(tmp.path());
    assert!(
        msg.contains("model.layers.0.self_attn.A")
            && msg.contains("variant B")
            && msg.contains("[2]")
            && msg.contains("[1]"),
        "{msg}"
    );
}

#[test]
fn an_experiment_names_the_layout_or_takes_its_init_checkpoint_s() {
    use doge::experiment::types::ModelSpec;
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    // From scratch: a preset in the SmallDoge layout, counted as spec 3.3's "B tied" column.
    let spec = ModelSpec {
        preset: Some("doge-20m".into()),
        layout: Some(Layout::SmallDoge),
        ..ModelSpec::default()
    };
    let cfg = spec.to_config(base).unwrap().unwrap();
    assert_eq!(cfg.layout, Layout::SmallDoge);
    assert_eq!(cfg.num_parameters(), 13_117_712);
    // From a checkpoint: its layout, read from the tensors.
    let from = |init: &str, layout: Option<Layout>| {
        ModelSpec {
            init: Some(init.into()),
            layout,
            ..ModelSpec::default()
        }
        .to_config(base)
    };
    let b = "./tests/fixtures/smalldoge-b/dense-b";
    assert_eq!(from(b, None).unwrap().unwrap().layout, Layout::SmallDoge);
    assert_eq!(
        from(b, Some(Layout::SmallDoge)).unwrap().unwrap().layout,
        Layout::SmallDoge
    );
    // Another layout than the checkpoint's has no exact conversion: refused, naming the key.
    let err = from("./tests/fixtures/doge-tiny/dense", Some(Layout::SmallDoge)).unwrap_err();
    assert_eq!(err.key, "layout");
    assert!(
        err.to_string().contains("transformers (variant A)"),
        "{err}"
    );
}

#[test]
fn doge_convert_keeps_the_layout_and_the_remote_code() {
    let src = with_remote_code("dense-b");
    let out = tempfile::tempdir().unwrap();
    let dst = out.path().join("bf16");
    let status = Command::new(env!("CARGO_BIN_EXE_doge"))
        .args(["convert", "--dtype", "bf16", "--model"])
        .arg(src.path())
        .arg("--out")
        .arg(&dst)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let saved = json(&dst.join("config.json"));
    assert_eq!(
        saved["auto_map"],
        json(&src.path().join("config.json"))["auto_map"]
    );
    assert_eq!(saved["dtype"], "bfloat16");
    for f in ["configuration_doge.py", "modeling_doge.py"] {
        assert!(dst.join(f).is_file(), "{f}");
    }
    let ckpt = load(&dst);
    assert_eq!(ckpt.config.layout, Layout::SmallDoge);
    // bf16 weights score the f32 reference within bf16 rounding.
    let row = &jsonl(&fixture("dense-b").join("score.jsonl"))[2];
    let got = nll(&ckpt.model().unwrap(), &ids(&row["input_ids"]));
    assert!(
        (got - row["nll"].as_f64().unwrap() as f32).abs() < 2e-2,
        "{got}"
    );
}
