//! bf16 autocast (doge/model/autocast.rs): with matmuls in bf16 and everything else in float32,
//! the reference models still score what transformers computed in float32
//! (tests/fixtures/doge-tiny/*/score.jsonl), within bf16 rounding; and the setting really changes
//! the matmuls (the scores are not the float32 ones bit for bit).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use doge::checkpoint::Checkpoint;
use doge::model::autocast;
use doge::model::causal_lm_loss;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn nll(model: &doge::model::DogeForCausalLM, input: &[u32]) -> f32 {
    let t = Tensor::new(input, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let labels = t.to_dtype(DType::I64).unwrap();
    causal_lm_loss(&model.forward(&t, None).unwrap(), &labels)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn check(name: &str) {
    let model = Checkpoint::load(&fixture(name), DType::F32, &Device::Cpu)
        .unwrap()
        .model()
        .unwrap();
    let text = std::fs::read_to_string(fixture(name).join("score.jsonl")).unwrap();
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let input: Vec<u32> = row["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let want = row["nll"].as_f64().unwrap() as f32;
        let full = nll(&model, &input);
        let low = {
            let _bf16 = autocast::enable(Some(DType::BF16));
            nll(&model, &input)
        };
        // bf16 keeps 8 significant bits: about 0.4% per product, partly averaging out.
        assert!(
            (low - want).abs() < 0.02 * want,
            "{name}: bf16 nll {low} vs transformers' float32 {want}"
        );
        assert!(
            (full - want).abs() < 1e-4,
            "{name}: f32 nll {full} vs {want}"
        );
        assert_ne!(low, full, "{name}: autocast did not change the matmuls");
        // The guard restored float32.
        assert_eq!(nll(&model, &input), full);
    }
}

#[test]
fn bf16_autocast_scores_the_dense_reference_within_bf16_rounding() {
    check("doge-tiny/dense");
}

#[test]
fn bf16_autocast_scores_the_moe_reference_within_bf16_rounding() {
    check("doge-tiny/moe");
}

#[test]
fn bf16_autocast_scores_the_smalldoge_references_within_bf16_rounding() {
    for name in ["smalldoge-b/dense-b", "smalldoge-b/gqa-b"] {
        check(name);
    }
}
