//! doge's forward pass and greedy generation against transformers' DogeForCausalLM outputs
//! (tests/fixtures/doge-tiny, made by transformers 5.24.0; see tests/fixtures/README.md) and against
//! small-doge's own remote-code model, the layout of the published SmallDoge checkpoints
//! (tests/fixtures/smalldoge-b; see its README).

use std::path::{Path, PathBuf};

use crate::reference_support::{ids, jsonl};
use candle_core::{DType, Device, Tensor};
use doge::checkpoint::Checkpoint;
use doge::generate::{generate, GenerationSettings};
use doge::model::{causal_lm_loss, DogeForCausalLM, Layout};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> DogeForCausalLM {
    Checkpoint::load(&fixture(name), DType::F32, &Device::Cpu)
        .unwrap()
        .model()
        .unwrap()
}

fn check_scores(name: &str) {
    let model = load(name);
    let rows = jsonl(&fixture(name).join("score.jsonl"));
    assert_eq!(rows.len(), 4);
    let mut longest = 0;
    for row in &rows {
        let input = ids(&row["input_ids"]);
        longest = longest.max(input.len());
        let t = Tensor::new(input.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = model.forward(&t, None).unwrap();
        let labels = t.to_dtype(DType::I64).unwrap();
        let nll = causal_lm_loss(&logits, &labels)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = row["nll"].as_f64().unwrap() as f32;
        assert!(
            (nll - want).abs() < 1e-4,
            "{name} {input:?}: nll {nll} vs {want}"
        );
        let last = logits
            .squeeze(0)
            .unwrap()
            .get(input.len() - 1)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let want: Vec<f32> = row["last_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let max_diff = last
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            max_diff < 1e-3,
            "{name} {input:?}: max |logit diff| {max_diff}"
        );
    }
    // The fixtures are built so that the keep window (8) is exceeded.
    assert!(longest > model.config().keep_window_size);
    let cfg = model.config();
    if cfg.rope.rope_type == "dynamic" {
        // ... and, with dynamic NTK RoPE, the original context too.
        assert!(longest > cfg.max_position_embeddings, "{name}");
    }
}

fn check_generation(name: &str) {
    let model = load(name);
    for row in jsonl(&fixture(name).join("generate.jsonl")) {
        let prompt = ids(&row["input_ids"]);
        let settings = GenerationSettings {
            max_new_tokens: row["max_new_tokens"].as_u64().unwrap() as usize,
            ..Default::default()
        };
        let out = generate(&model, &prompt, &settings, |_| Ok(())).unwrap();
        assert_eq!(out, ids(&row["output_ids"]), "{name}: prompt {prompt:?}");
    }
}

#[test]
fn dense_scores_match_transformers() {
    check_scores("doge-tiny/dense");
}

#[test]
fn moe_scores_match_transformers() {
    check_scores("doge-tiny/moe");
}

#[test]
fn dense_greedy_generation_matches_transformers() {
    check_generation("doge-tiny/dense");
}

#[test]
fn moe_greedy_generation_matches_transformers() {
    check_generation("doge-tiny/moe");
}

/// The three SmallDoge remote-code cases: dense (H 2, Hkv 1), MoE, and GQA (H 4, Hkv 2) with
/// attention biases and dynamic NTK RoPE past max_position_embeddings.
const SMALLDOGE: [&str; 3] = [
    "smalldoge-b/dense-b",
    "smalldoge-b/moe-b",
    "smalldoge-b/gqa-b",
];

#[test]
fn smalldoge_layout_is_read_from_the_tensors() {
    for name in SMALLDOGE {
        let model = load(name);
        assert_eq!(model.config().layout, Layout::SmallDoge, "{name}");
    }
    assert_eq!(
        load("doge-tiny/dense").config().layout,
        Layout::Transformers
    );
}

#[test]
fn smalldoge_scores_match_small_doge_remote_code() {
    for name in SMALLDOGE {
        check_scores(name);
    }
}

#[test]
fn smalldoge_greedy_generation_matches_small_doge_remote_code() {
    for name in SMALLDOGE {
        check_generation(name);
    }
}
