//! One training step as the pretrain loop does it (forward, loss, backward, global-norm clip,
//! AdamW), timed over random tokens on a freshly initialised model.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::stats::{cpu_seconds, peak_rss_bytes, Timings};
use crate::checkpoint::Checkpoint;
use crate::model::params::param_specs;
use crate::model::{DogeConfig, DogeForCausalLM};
use crate::train::optimizer::{clip_scale, grad_norm, AdamW, AdamWConfig};

#[derive(Debug, Clone)]
pub struct TrainBenchSettings {
    pub batch: usize,
    pub seq: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first (allocator and thread-pool warm-up).
    pub warmup: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainBench {
    pub tokens_per_step: usize,
    pub step_seconds: Timings,
    /// Tokens per second at the median step time.
    pub tokens_per_s: f64,
    pub peak_rss_bytes: Option<u64>,
    pub final_loss: f64,
    /// Per timed step: forward + loss, backward, clip + AdamW (seconds).
    pub phases: Vec<[f64; 3]>,
    /// Process CPU time (all threads) per timed step, seconds.
    pub cpu_seconds_per_step: Option<f64>,
    /// Training FLOPs per token (model::flops), and the MFU where the device's peak is known.
    pub flops_per_token: f64,
    pub mfu: Option<f64>,
}

/// The AdamW settings of the seed's pretraining recipe (spec 7.1); the values do not change the
/// cost of a step.
pub fn bench_adamw() -> AdamWConfig {
    AdamWConfig {
        lr: 8e-3,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.01,
    }
}

/// A model whose tensors are `Var`s, with its optimizer (weight decay groups as transformers').
pub fn trainable(cfg: &DogeConfig, seed: u64, dev: &Device) -> Result<(DogeForCausalLM, AdamW)> {
    let mut weights = Checkpoint::init(cfg, seed, DType::F32, dev)?;
    let decays: std::collections::HashMap<String, bool> = param_specs(cfg)
        .into_iter()
        .map(|p| (p.name.clone(), p.decays()))
        .collect();
    let mut params = Vec::new();
    for (name, t) in weights.tensors.iter_mut() {
        let var = Var::from_tensor(t)?;
        *t = var.as_tensor().clone();
        params.push((name.clone(), var, decays.get(name).copied().unwrap_or(true)));
    }
    let model = weights.model()?;
    Ok((model, AdamW::new(bench_adamw(), params)?))
}

/// Uniform random token ids [batch, seq] (u32) and the same as i64 labels.
pub fn random_batch(
    vocab: usize,
    batch: usize,
    seq: usize,
    seed: u64,
    dev: &Device,
) -> Result<(Tensor, Tensor)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let ids: Vec<u32> = (0..batch * seq)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect();
    let labels: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    Ok((
        Tensor::from_vec(ids, (batch, seq), dev)?,
        Tensor::from_vec(labels, (batch, seq), dev)?,
    ))
}

/// One optimizer step; returns the loss and the seconds of its three phases (forward + loss,
/// backward, clip + AdamW).
pub fn train_step(
    model: &DogeForCausalLM,
    opt: &mut AdamW,
    ids: &Tensor,
    labels: &Tensor,
) -> Result<(f64, [f64; 3])> {
    let t0 = Instant::now();
    let loss = model.loss(ids, labels)?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let t1 = Instant::now();
    let store = loss.backward()?;
    let mut grads: Vec<Option<Tensor>> = vec![None; opt.params.len()];
    opt.accumulate(&mut grads, &store)?;
    drop(store);
    let t2 = Instant::now();
    let norm = grad_norm(&grads)?;
    let lr = opt.config.lr;
    opt.step(&grads, lr, clip_scale(norm, Some(1.0)))?;
    let t3 = Instant::now();
    let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
    Ok((value, [secs(t0, t1), secs(t1, t2), secs(t2, t3)]))
}

pub fn bench_train(cfg: &DogeConfig, s: &TrainBenchSettings, dev: &Device) -> Result<TrainBench> {
    let (model, mut opt) = trainable(cfg, s.seed, dev)?;
    let (ids, labels) = random_batch(cfg.vocab_size, s.batch, s.seq, s.seed + 1, dev)?;
    let mut loss = f64::NAN;
    for _ in 0..s.warmup {
        loss = train_step(&model, &mut opt, &ids, &labels)?.0;
    }
    let mut seconds = Vec::with_capacity(s.steps);
    let mut phases = Vec::with_capacity(s.steps);
    let cpu0 = cpu_seconds();
    for _ in 0..s.steps {
        let t0 = Instant::now();
        let (l, p) = train_step(&model, &mut opt, &ids, &labels)?;
        dev.synchronize()?;
        seconds.push(t0.elapsed().as_secs_f64());
        loss = l;
        phases.push(p);
    }
    let cpu_seconds_per_step = cpu0
        .zip(cpu_seconds())
        .map(|(a, b)| (b - a) / s.steps as f64);
    let step_seconds = Timings { seconds };
    let tokens_per_step = s.batch * s.seq;
    Ok(TrainBench {
        tokens_per_step,
        tokens_per_s: tokens_per_step as f64 / step_seconds.median(),
        step_seconds,
        peak_rss_bytes: peak_rss_bytes(),
        final_loss: loss,
        phases,
        cpu_seconds_per_step,
        flops_per_token: crate::model::flops::train_flops_per_token(cfg, s.seq),
        mfu: None,
    })
}
