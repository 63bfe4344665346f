//! Greedy KV-cache generation throughput (prefill included), as `doge generate` runs it.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::stats::{cpu_seconds, peak_rss_bytes, Timings};
use crate::checkpoint::Checkpoint;
use crate::generate::{generate, GenerationSettings};
use crate::model::DogeConfig;

#[derive(Debug, Clone)]
pub struct GenerateBenchSettings {
    pub prompt_len: usize,
    pub new_tokens: usize,
    /// Timed generations.
    pub runs: usize,
    pub warmup: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerateBench {
    pub new_tokens: usize,
    /// Wall time of each whole generation (prompt included).
    pub run_seconds: Timings,
    /// New tokens per second at the median run time.
    pub tokens_per_s: f64,
    pub peak_rss_bytes: Option<u64>,
    /// Process CPU time (all threads) per timed generation, seconds.
    pub cpu_seconds_per_run: Option<f64>,
}

pub fn bench_generate(
    cfg: &DogeConfig,
    s: &GenerateBenchSettings,
    dev: &Device,
) -> Result<GenerateBench> {
    let model = Checkpoint::init(cfg, s.seed, DType::F32, dev)?.model()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed + 1);
    let prompt: Vec<u32> = (0..s.prompt_len)
        .map(|_| rng.random_range(0..cfg.vocab_size as u32))
        .collect();
    // No eos: every run makes exactly `new_tokens` tokens.
    let settings = GenerationSettings {
        max_new_tokens: s.new_tokens,
        eos_token_id: None,
        ..GenerationSettings::default()
    };
    for _ in 0..s.warmup {
        generate(&model, &prompt, &settings, |_| Ok(()))?;
    }
    let mut seconds = Vec::with_capacity(s.runs);
    let cpu0 = cpu_seconds();
    for _ in 0..s.runs {
        let t0 = Instant::now();
        let out = generate(&model, &prompt, &settings, |_| Ok(()))?;
        seconds.push(t0.elapsed().as_secs_f64());
        anyhow::ensure!(out.len() == s.new_tokens, "generation stopped early");
    }
    let cpu_seconds_per_run = cpu0
        .zip(cpu_seconds())
        .map(|(a, b)| (b - a) / s.runs as f64);
    let run_seconds = Timings { seconds };
    Ok(GenerateBench {
        new_tokens: s.new_tokens,
        tokens_per_s: s.new_tokens as f64 / run_seconds.median(),
        run_seconds,
        peak_rss_bytes: peak_rss_bytes(),
        cpu_seconds_per_run,
    })
}
