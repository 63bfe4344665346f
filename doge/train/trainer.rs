//! The training loop every stage shares, top to bottom: restore or start, then for every optimizer
//! step ask the stage's [`Objective`] for `grad_accum` micro-batch losses, backpropagate, clip,
//! update, and log / evaluate / checkpoint on their intervals. Stages differ only in their
//! objective: next-token loss (pretrain, SFT with a label mask) or the DPO loss.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};

use super::optimizer::{clip_scale, grad_norm, AdamW, AdamWConfig};
use super::schedule::Schedule;
use super::state::{self, TrainerState};
use crate::checkpoint::Checkpoint;
use crate::model::params::param_specs;
use crate::model::DogeForCausalLM;

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
    /// Checkpoints keep-last deleted.
    fn pruned(&mut self, _dirs: &[PathBuf]) -> Result<()> {
        Ok(())
    }
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

/// One micro-batch's contribution to a step.
pub struct MicroBatch {
    /// The mean loss of the micro-batch, to backpropagate.
    pub loss: Tensor,
    /// Tokens the forward pass processed (for tokens/s).
    pub tokens: usize,
    /// Stage-specific values (DPO rewards), averaged over the step's micro-batches and logged
    /// beside the loss.
    pub metrics: Vec<(&'static str, f64)>,
}

/// What a stage optimises. Training examples are addressed by index so that a resumed run
/// continues from the exact example it stopped at; index `i` past the end wraps (a new epoch).
pub trait Objective {
    /// Examples (rows, or preference pairs) in one pass over the training data.
    fn num_train(&self) -> usize;
    /// Tokens one example holds at most (turns `max-tokens` into steps).
    fn tokens_per_example(&self) -> usize;
    /// The loss of training examples `first .. first + count`.
    fn micro_batch(&self, model: &DogeForCausalLM, first: u64, count: usize) -> Result<MicroBatch>;
    /// Metrics on the held-out data (`eval_loss`, ...); empty when there is none.
    fn evaluate(
        &self,
        model: &DogeForCausalLM,
        batch_size: usize,
    ) -> Result<Vec<(&'static str, f64)>>;
    /// Metrics of the final weights, computed once when the last step is done (DPO: rewards over
    /// every training pair); none by default.
    fn final_metrics(
        &self,
        _model: &DogeForCausalLM,
        _batch_size: usize,
    ) -> Result<Vec<(&'static str, f64)>> {
        Ok(Vec::new())
    }
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

fn due(step: u64, every: u64, total: u64) -> bool {
    step == total || (every > 0 && step.is_multiple_of(every))
}

/// Runs (or resumes) a stage in `stage_dir`, starting from `start` unless a checkpoint of this
/// stage exists there.
pub fn train(
    start: Checkpoint,
    objective: &dyn Objective,
    s: &StageSettings,
    stage_dir: &Path,
    observer: &mut dyn StageObserver,
    stop: &AtomicBool,
) -> Result<StageOutcome> {
    if objective.num_train() == 0 {
        bail!("the stage has no training examples");
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

    let mut window = (Instant::now(), 0usize);
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
        let mut extra: Vec<(&'static str, f64)> = Vec::new();
        for micro in 0..s.grad_accum {
            let first = t.state.rows_consumed + (micro * s.batch_size) as u64;
            let mb = objective.micro_batch(&t.model, first, s.batch_size)?;
            loss_sum += mb.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            window.1 += mb.tokens;
            for (k, (name, v)) in mb.metrics.into_iter().enumerate() {
                match extra.get_mut(k) {
                    Some(slot) => slot.1 += v,
                    None => extra.push((name, v)),
                }
            }
            let store = (mb.loss / s.grad_accum as f64)?.backward()?;
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

        let tokens_per_s = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
        observer.progress(
            step,
            s.total_steps,
            &format!("loss {loss:.4} lr {lr:.2e} {tokens_per_s:.0} tok/s"),
        );
        if due(step, s.log_every, s.total_steps) {
            let mut values = vec![
                ("loss", loss),
                ("lr", lr),
                ("grad_norm", norm),
                ("tokens_per_s", tokens_per_s),
            ];
            values.extend(
                extra
                    .iter()
                    .map(|&(name, v)| (name, v / s.grad_accum as f64)),
            );
            observer.metrics(step, &values)?;
            window = (Instant::now(), 0);
        }
        if due(step, s.eval_every, s.total_steps) {
            let eval = objective.evaluate(&t.model, s.batch_size)?;
            if !eval.is_empty() {
                observer.metrics(step, &eval)?;
                let shown: Vec<String> = eval.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                observer.println(&format!(
                    "step {step}/{}: train loss {loss:.4}, {}",
                    s.total_steps,
                    shown.join(", ")
                ));
            }
        }
        if step == s.total_steps {
            let end = objective.final_metrics(&t.model, s.batch_size)?;
            if !end.is_empty() {
                observer.metrics(step, &end)?;
                let shown: Vec<String> = end.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                observer.println(&format!("step {step}: {}", shown.join(", ")));
            }
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
            let removed = state::prune(stage_dir, keep)?;
            observer.pruned(&removed)?;
            last_saved = Some(dir);
        }
    }
    Ok(StageOutcome::Done(last_saved.unwrap_or_else(|| {
        state::checkpoint_dir(stage_dir, t.state.step)
    })))
}
