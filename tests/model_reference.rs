//! doge's forward pass and greedy generation against transformers' DogeForCausalLM outputs
//! (tests/fixtures/doge-tiny, made by transformers 5.24.0; see tests/fixtures/README.md).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use doge::checkpoint::Checkpoint;
use doge::generate::{generate, GenerationSettings};
use doge::model::{causal_lm_loss, DogeForCausalLM};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/doge-tiny")
        .join(name)
}

fn load(name: &str) -> DogeForCausalLM {
    Checkpoint::load(&fixture(name), DType::F32, &Device::Cpu)
        .unwrap()
        .model()
        .unwrap()
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
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
    check_scores("dense");
}

#[test]
fn moe_scores_match_transformers() {
    check_scores("moe");
}

#[test]
fn dense_greedy_generation_matches_transformers() {
    check_generation("dense");
}

#[test]
fn moe_greedy_generation_matches_transformers() {
    check_generation("moe");
}
