//! The pretrain loop: parity with torch's six AdamW steps through the real loop, and exact resume
//! (2N steps straight equal N steps, interrupt, resume N: same losses and same weights, bitwise).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device};
use doge::checkpoint::Checkpoint;
use doge::train::optimizer::AdamWConfig;
use doge::train::pretrain::{train, StageObserver, StageOutcome, StageSettings};
use doge::train::rows::MemoryRows;
use doge::train::schedule::Schedule;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Records losses; raises the stop flag after `stop_after` steps.
struct Recorder<'a> {
    losses: Vec<(u64, f64)>,
    stop_after: Option<u64>,
    stop: &'a AtomicBool,
}

impl StageObserver for Recorder<'_> {
    fn metrics(&mut self, step: u64, values: &[(&str, f64)]) -> anyhow::Result<()> {
        for (name, v) in values {
            if *name == "loss" {
                self.losses.push((step, *v));
            }
        }
        if Some(step) == self.stop_after {
            self.stop.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
    fn checkpoint(&mut self, _dir: &Path, _step: u64) -> anyhow::Result<()> {
        Ok(())
    }
    fn println(&mut self, _line: &str) {}
}

fn settings(total_steps: u64, batch_size: usize, grad_accum: usize) -> StageSettings {
    StageSettings {
        adamw: AdamWConfig {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.01,
        },
        schedule: Schedule::Wsd {
            warmup_steps: 2,
            decay_steps: 2,
            min_lr_rate: 0.0,
        },
        total_steps,
        batch_size,
        grad_accum,
        grad_clip: Some(1.0),
        log_every: 1,
        eval_every: 0,
        save_every: 3,
        keep_last: 1,
        max_bad_steps: 3,
        decay_all: false,
        config_hash: "test".into(),
    }
}

#[test]
fn the_loop_reproduces_torch_adamw_steps() {
    // transformers' native model, then small-doge's remote code (the published checkpoints' layout).
    for name in [
        "doge-tiny/dense",
        "doge-tiny/moe",
        "smalldoge-b/dense-b",
        "smalldoge-b/moe-b",
        "smalldoge-b/gqa-b",
    ] {
        let spec: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("train.json")).unwrap(),
        )
        .unwrap();
        let rows: Vec<Vec<u32>> = serde_json::from_value(spec["input_ids"].clone()).unwrap();
        let want: Vec<f64> = serde_json::from_value(spec["losses"].clone()).unwrap();
        let data = MemoryRows {
            train: rows.clone(),
            test: vec![],
        };
        let s = StageSettings {
            adamw: AdamWConfig {
                lr: spec["lr"].as_f64().unwrap(),
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.01,
            },
            schedule: Schedule::Constant { warmup_steps: 0 },
            // The reference ran plain `torch.optim.AdamW(model.parameters())`: every tensor decays.
            // (With the transformers groups, norms excluded, the losses drift ~2e-4 from it; with
            // one group they agree to ~1e-6, which pins the update rule down.)
            decay_all: true,
            save_every: 0,
            ..settings(want.len() as u64, rows.len(), 1)
        };
        let stop = AtomicBool::new(false);
        let mut rec = Recorder {
            losses: vec![],
            stop_after: None,
            stop: &stop,
        };
        let start = Checkpoint::load(&fixture(name), DType::F32, &Device::Cpu).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        train(start, &data, &s, tmp.path(), &mut rec, &stop).unwrap();
        assert_eq!(rec.losses.len(), want.len());
        let worst = rec
            .losses
            .iter()
            .zip(&want)
            .map(|((_, got), want)| (got - want).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "{name}: largest |loss - torch| over {} steps: {worst:e}",
            want.len()
        );
        // The issue asks for 1e-3; the loop meets 1e-4 with a wide margin.
        assert!(worst < 1e-4, "{name}: {:?} vs {want:?}", rec.losses);
    }
}

fn weights_of(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let c = Checkpoint::load(dir, DType::F32, &Device::Cpu).unwrap();
    c.tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

#[test]
fn resume_is_exact() {
    let rows: Vec<Vec<u32>> = (0..7u32)
        .map(|r| (0..13).map(|i| (r * 31 + i * 17 + 5) % 256).collect())
        .collect();
    let data = MemoryRows {
        train: rows,
        test: vec![],
    };
    let s = settings(8, 2, 2); // 4 rows per step over 7 rows: the data wraps mid-run
    let start = || Checkpoint::load(&fixture("doge-tiny/moe"), DType::F32, &Device::Cpu).unwrap();

    let stop = AtomicBool::new(false);
    let straight_dir = tempfile::tempdir().unwrap();
    let mut straight = Recorder {
        losses: vec![],
        stop_after: None,
        stop: &stop,
    };
    let StageOutcome::Done(straight_final) = train(
        start(),
        &data,
        &s,
        straight_dir.path(),
        &mut straight,
        &stop,
    )
    .unwrap() else {
        panic!("not done")
    };

    let split_dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let mut first = Recorder {
        losses: vec![],
        stop_after: Some(4),
        stop: &stop,
    };
    let outcome = train(start(), &data, &s, split_dir.path(), &mut first, &stop).unwrap();
    assert!(matches!(outcome, StageOutcome::Interrupted(_)));
    assert_eq!(first.losses.len(), 4);
    let stop = AtomicBool::new(false);
    let mut second = Recorder {
        losses: vec![],
        stop_after: None,
        stop: &stop,
    };
    // The start weights passed here are ignored: the stage resumes from its checkpoint.
    let StageOutcome::Done(split_final) =
        train(start(), &data, &s, split_dir.path(), &mut second, &stop).unwrap()
    else {
        panic!("not done")
    };
    let resumed: Vec<(u64, f64)> = first.losses.into_iter().chain(second.losses).collect();
    assert_eq!(resumed, straight.losses, "losses differ after resume");
    assert_eq!(
        weights_of(&split_final),
        weights_of(&straight_final),
        "weights differ after resume"
    );
    // keep_last 1: the final checkpoint and one before it.
    assert_eq!(doge::train::state::list(split_dir.path()).len(), 2);
}
