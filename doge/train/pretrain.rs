//! The pretrain loop, top to bottom: restore or start, then for every optimizer step read
//! `grad_accum` micro-batches, backpropagate, clip, update, and log / evaluate / checkpoint on
//! their intervals. Next-token loss over packed rows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};

use super::optimizer::{clip_scale, grad_norm, AdamW, AdamWConfig};
use super::rows::TokenRows;
use super::schedule::Schedule;
use super::state::{self, TrainerState};
use crate::checkpoint::Checkpoint;
use crate::model::doge::IGNORE_INDEX;
use crate::model::params::param_specs;
use crate::model::{causal_lm_loss, DogeForCausalLM};

/// A stage's settings with every length in optimizer steps.
#[derive(Debug, Clone)]
pub struct StageSettings {
    pub adamw: AdamWConfig,
    pub schedule: Schedule,
    pub total_steps: u64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub grad_clip: Option<f64>,
    /// 0 = only at the end (for all three intervals).
    pub log_every: u64,
    pub eval_every: u64,
    pub save_every: u64,
    pub keep_last: usize,
    /// Abort after this many non-finite steps in a row.
    pub max_bad_steps: u32,
    /// Weight decay on every tensor instead of the transformers groups (plain torch AdamW).
    pub decay_all: bool,
    /// Identifies the settings, so a resume under other settings is refused.
    pub config_hash: String,
}

/// Where a stage reports (the registry in a real run, a vector in tests).
pub trait StageObserver {
    fn metrics(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()>;
    fn checkpoint(&mut self, dir: &Path, step: u64) -> Result<()>;
    /// Called once after restoring from a checkpoint at `step`.
    fn resumed(&mut self, _step: u64) -> Result<()> {
        Ok(())
    }
    /// Human-facing progress (a progress bar, or nothing).
    fn progress(&mut self, _step: u64, _total: u64, _line: &str) {}
    fn println(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

pub enum StageOutcome {
    /// The stage finished; its final checkpoint is in this directory.
    Done(PathBuf),
    /// Stopped by Ctrl-C after saving this checkpoint.
    Interrupted(PathBuf),
}

/// Model, optimizer and trainer state, either fresh or restored from the newest checkpoint.
struct Trainer {
    weights: Checkpoint,
    model: DogeForCausalLM,
    opt: AdamW,
    state: TrainerState,
}

fn make_trainer(weights: Checkpoint, s: &StageSettings) -> Result<Trainer> {
    let decays: std::collections::HashMap<String, bool> = param_specs(&weights.config)
        .into_iter()
        .map(|p| (p.name.clone(), p.decays() || s.decay_all))
        .collect();
    let mut weights = weights;
    let mut params = Vec::new();
    for (name, t) in weights.tensors.iter_mut() {
        let var = Var::from_tensor(&t.to_dtype(DType::F32)?)?;
        *t = var.as_tensor().clone();
        params.push((name.clone(), var, decays.get(name).copied().unwrap_or(true)));
    }
    let model = weights.model()?;
    let opt = AdamW::new(s.adamw, params)?;
    let state = TrainerState {
        step: 0,
        total_steps: s.total_steps,
        rows_consumed: 0,
        optimizer_updates: 0,
        skipped_steps: 0,
        consecutive_bad_steps: 0,
        config_hash: s.config_hash.clone(),
    };
    Ok(Trainer {
        weights,
        model,
        opt,
        state,
    })
}

/// Reads `count` rows starting at row `start` (wrapping around the data: a new epoch): the
/// [count, row_len] u32 inputs and their i64 labels (padding after a row's real tokens is -100).
fn batch(
    rows: &dyn TokenRows,
    start: u64,
    count: usize,
    test: bool,
    dev: &candle_core::Device,
) -> Result<(Tensor, Tensor)> {
    let n = if test {
        rows.num_test_rows()
    } else {
        rows.num_train_rows()
    } as u64;
    let width = rows.row_len();
    let mut ids = Vec::with_capacity(count * width);
    let mut labels = Vec::with_capacity(count * width);
    for k in 0..count as u64 {
        let i = ((start + k) % n) as usize;
        let (row, len) = if test {
            (rows.test_row(i)?, rows.test_len(i))
        } else {
            (rows.train_row(i)?, rows.train_len(i))
        };
        if row.len() != width {
            bail!("row {i} has {} tokens, expected {width}", row.len());
        }
        labels.extend(
            row.iter()
                .enumerate()
                .map(|(j, &t)| if j < len { t as i64 } else { IGNORE_INDEX }),
        );
        ids.extend(row);
    }
    Ok((
        Tensor::from_vec(ids, (count, width), dev)?,
        Tensor::from_vec(labels, (count, width), dev)?,
    ))
}

/// Mean next-token loss over all held-out rows.
pub fn eval_loss(model: &DogeForCausalLM, rows: &dyn TokenRows, batch_size: usize) -> Result<f64> {
    let n = rows.num_test_rows();
    let (mut sum, mut count) = (0f64, 0usize);
    let mut start = 0;
    while start < n {
        let k = batch_size.min(n - start);
        let (ids, labels) = batch(rows, start as u64, k, true, model.device())?;
        let loss = causal_lm_loss(&model.forward(&ids, None)?, &labels)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        sum += loss * k as f64;
        count += k;
        start += k;
    }
    Ok(if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    })
}

fn due(step: u64, every: u64, total: u64) -> bool {
    step == total || (every > 0 && step.is_multiple_of(every))
}

/// Runs (or resumes) a pretrain stage in `stage_dir`, starting from `start` unless a checkpoint of
/// this stage exists there.
pub fn train(
    start: Checkpoint,
    rows: &dyn TokenRows,
    s: &StageSettings,
    stage_dir: &Path,
    observer: &mut dyn StageObserver,
    stop: &AtomicBool,
) -> Result<StageOutcome> {
    if rows.num_train_rows() == 0 {
        bail!("the stage has no training rows");
    }
    std::fs::create_dir_all(stage_dir)
        .with_context(|| format!("creating {}", stage_dir.display()))?;
    let dev = start
        .tensors
        .values()
        .next()
        .map(|t| t.device().clone())
        .unwrap_or(candle_core::Device::Cpu);

    // Restore from the newest complete checkpoint, if any.
    let mut t = match state::list(stage_dir).pop() {
        Some((_, dir)) => {
            let (weights, saved, moments) = state::load(&dir, &dev)?;
            if saved.config_hash != s.config_hash {
                bail!(
                    "{} was written under other stage settings; delete the stage directory to start over",
                    dir.display()
                );
            }
            let mut t = make_trainer(weights, s)?;
            state::restore_optimizer(&mut t.opt, &moments, saved.optimizer_updates)?;
            t.state = saved;
            observer.resumed(t.state.step)?;
            observer.println(&format!(
                "resumed from {} (step {})",
                dir.display(),
                t.state.step
            ));
            t
        }
        None => make_trainer(start, s)?,
    };
    if t.state.step >= s.total_steps {
        let dir = state::checkpoint_dir(stage_dir, t.state.step);
        return Ok(StageOutcome::Done(dir));
    }

    let tokens_per_step = (s.batch_size * s.grad_accum * (rows.row_len() - 1)) as f64;
    let mut window = (Instant::now(), 0u64);
    let mut last_saved = None;
    while t.state.step < s.total_steps {
        if stop.load(Ordering::SeqCst) {
            let dir = state::save(stage_dir, &t.weights, &t.opt, &t.state)?;
            observer.checkpoint(&dir, t.state.step)?;
            return Ok(StageOutcome::Interrupted(dir));
        }
        let lr = s.adamw.lr * s.schedule.multiplier(t.state.step, s.total_steps);

        // Forward and backward over the micro-batches; gradients add up.
        let mut grads: Vec<Option<Tensor>> = vec![None; t.opt.params.len()];
        let mut loss_sum = 0f64;
        for micro in 0..s.grad_accum {
            let first = t.state.rows_consumed + (micro * s.batch_size) as u64;
            let (ids, labels) = batch(rows, first, s.batch_size, false, &dev)?;
            let loss = causal_lm_loss(&t.model.forward(&ids, None)?, &labels)?;
            loss_sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let store = (loss / s.grad_accum as f64)?.backward()?;
            t.opt.accumulate(&mut grads, &store)?;
        }
        t.state.rows_consumed += (s.batch_size * s.grad_accum) as u64;
        let loss = loss_sum / s.grad_accum as f64;
        let norm = grad_norm(&grads)?;

        // A non-finite loss or gradient skips the update; too many in a row abort the run.
        if !loss.is_finite() || !norm.is_finite() {
            t.state.skipped_steps += 1;
            t.state.consecutive_bad_steps += 1;
            observer.println(&format!(
                "step {}: non-finite loss {loss} / grad norm {norm}; update skipped",
                t.state.step + 1
            ));
            if t.state.consecutive_bad_steps >= s.max_bad_steps {
                bail!(
                    "{} non-finite steps in a row (last at step {}); lower the learning rate or check the data",
                    t.state.consecutive_bad_steps,
                    t.state.step + 1
                );
            }
        } else {
            t.state.consecutive_bad_steps = 0;
            t.opt.step(&grads, lr, clip_scale(norm, s.grad_clip))?;
            t.state.optimizer_updates = t.opt.step;
        }
        t.state.step += 1;
        let step = t.state.step;

        window.1 += 1;
        let tokens_per_s =
            window.1 as f64 * tokens_per_step / window.0.elapsed().as_secs_f64().max(1e-9);
        observer.progress(
            step,
            s.total_steps,
            &format!("loss {loss:.4} lr {lr:.2e} {tokens_per_s:.0} tok/s"),
        );
        if due(step, s.log_every, s.total_steps) {
            observer.metrics(
                step,
                &[
                    ("loss", loss),
                    ("lr", lr),
                    ("grad_norm", norm),
                    ("tokens_per_s", tokens_per_s),
                ],
            )?;
            window = (Instant::now(), 0);
        }
        if due(step, s.eval_every, s.total_steps) && rows.num_test_rows() > 0 {
            let eval = eval_loss(&t.model, rows, s.batch_size)?;
            observer.metrics(step, &[("eval_loss", eval)])?;
            observer.println(&format!(
                "step {step}/{}: train loss {loss:.4}, eval loss {eval:.4}",
                s.total_steps
            ));
        }
        if due(step, s.save_every, s.total_steps) {
            let dir = state::save(stage_dir, &t.weights, &t.opt, &t.state)?;
            observer.checkpoint(&dir, step)?;
            // keep_last counts checkpoints besides the final one; 0 keeps all.
            let keep = if s.keep_last == 0 {
                0
            } else {
                s.keep_last + usize::from(step == s.total_steps)
            };
            state::prune(stage_dir, keep)?;
            last_saved = Some(dir);
        }
    }
    Ok(StageOutcome::Done(last_saved.unwrap_or_else(|| {
        state::checkpoint_dir(stage_dir, t.state.step)
    })))
}
