//! Checkpoints cross between doge and transformers: what `doge convert` writes loads in
//! `AutoModelForCausalLM` (no trust_remote_code) with the same logits, and what transformers'
//! `save_pretrained` writes loads in doge with the same logits.
//!
//! Needs Python with torch and transformers >= 5.18 (`DOGE_PYTHON`, default `python3`); the tests
//! print a notice and pass without checking when they are not importable (CI does not install torch).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::reference_support::max_diff;
use candle_core::{DType, Device, Tensor};
use doge::checkpoint::Checkpoint;

fn python() -> String {
    std::env::var("DOGE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/transformers_logits.py")
}

/// Runs the helper script; None when transformers is unavailable.
fn run_python(args: &[&str]) -> Option<String> {
    let out = Command::new(python())
        .arg(script())
        .args(args)
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
    Some(String::from_utf8(out.stdout).unwrap())
}

fn transformers_logits(dir: &Path, ids: &[u32]) -> Option<Vec<Vec<f32>>> {
    let text = run_python(&[
        "load",
        dir.to_str().unwrap(),
        &serde_json::to_string(ids).unwrap(),
    ])?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    Some(serde_json::from_value(v["logits"].clone()).unwrap())
}

fn doge_logits(dir: &Path, ids: &[u32]) -> Vec<Vec<f32>> {
    let model = Checkpoint::load(dir, DType::F32, &Device::Cpu)
        .unwrap()
        .model()
        .unwrap();
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

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/doge-tiny")
        .join(name)
}

#[test]
fn doge_convert_output_loads_in_transformers() {
    let ids: Vec<u32> = (0..20).map(|i| (i * 41 + 3) % 256).collect();
    for (name, ids) in [("dense", ids.as_slice()), ("moe", &ids[..1])] {
        // MoE: transformers' routing equals per-token routing only for a single token (spec 2.8).
        let tmp = tempfile::tempdir().unwrap();
        let ckpt = Checkpoint::load(&fixture(name), DType::F32, &Device::Cpu).unwrap();
        ckpt.save(tmp.path(), DType::F32).unwrap();
        let Some(reference) = transformers_logits(tmp.path(), ids) else {
            return;
        };
        let diff = max_diff(&reference, &doge_logits(tmp.path(), ids));
        eprintln!(
            "{name}: max |logit diff| {diff:e} over {} positions",
            ids.len()
        );
        assert!(diff < 1e-4, "{name}: {diff}");
    }
}

#[test]
fn transformers_save_pretrained_loads_in_doge() {
    let cfg = r#"{"vocab_size": 300, "hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "keep_window_size": 6,
        "attention_bias": true, "mlp_bias": true, "tie_word_embeddings": false, "pad_token_id": 2}"#;
    let tmp = tempfile::tempdir().unwrap();
    if run_python(&["save", tmp.path().to_str().unwrap(), cfg]).is_none() {
        return;
    }
    let ids: Vec<u32> = (0..19).map(|i| (i * 53 + 7) % 300).collect();
    let reference = transformers_logits(tmp.path(), &ids).unwrap();
    let diff = max_diff(&reference, &doge_logits(tmp.path(), &ids));
    eprintln!("transformers-saved untied/biased model: max |logit diff| {diff:e}");
    assert!(diff < 1e-4, "{diff}");
}
