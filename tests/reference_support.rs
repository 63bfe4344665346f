//! Readers and comparisons that the reference-output tests share.

use std::path::Path;

use serde_json::Value;

/// The JSON records of a .jsonl reference file.
pub fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A JSON list of token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Largest elementwise difference of two equally shaped logit tables.
pub fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The test fixtures folder.
pub fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The tiny dense reference model with its dynamic-mask window opened to the whole context, as
/// the eval fixture generators load it in transformers: repeated tokens tie exactly in layer 0,
/// and transformers' top-k breaks such ties its own way (the window is tested in
/// tests/model_reference.rs).
pub fn tiny_eval_model() -> doge::model::DogeForCausalLM {
    let mut ckpt = doge::checkpoint::Checkpoint::load(
        &fixtures().join("doge-tiny/dense"),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    ckpt.config.keep_window_size = ckpt.config.max_position_embeddings;
    ckpt.model().unwrap()
}

/// The 256-id tokenizer of the eval fixtures (tests/fixtures/eval/tokenizer-256).
pub fn tokenizer_256() -> doge::data::tokenizer::DogeTokenizer {
    doge::data::tokenizer::DogeTokenizer::load(&fixtures().join("eval/tokenizer-256")).unwrap()
}

/// The tiny dense model with the 256-id fixture tokenizer, copied to `dir` (a model folder for
/// the CLI).
pub fn tiny_eval_model_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (from, name) in [
        ("doge-tiny/dense", "config.json"),
        ("doge-tiny/dense", "model.safetensors"),
        ("eval/tokenizer-256", "tokenizer.json"),
        ("eval/tokenizer-256", "tokenizer_config.json"),
    ] {
        std::fs::copy(fixtures().join(from).join(name), dir.join(name)).unwrap();
    }
}
