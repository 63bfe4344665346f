//! The training loop every stage shares, top to bottom: restore or start, then for every optimizer
//! step ask the stage's [`Objective`] for `grad_accum` micro-batch losses, backpropagate, clip,
//! update, and log / evaluate / checkpoint on their intervals. Stages differ only in their
//! objective: next-token loss (pretrain, SFT with a label mask) or the DPO loss.
//!
//! Data parallel (`mpirun -n W`, `crate::dist`): every rank holds the whole model and reads its
//! own `batch_size` rows of each micro-batch of `W x batch_size` consecutive rows; gradients are
//! averaged over the ranks before the update, so every rank makes the update one process would
//! make on the global batch. Rank 0 alone saves and reports; the data position is global.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};

use super::optimizer::{clip_scale, grad_norm, AdamW, AdamWConfig};
use super::schedule::Schedule;
use super::state::{self, TrainerState};
use crate::checkpoint::Checkpoint;
use crate::dist::{self, Wait, World};
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
    /// Called once after restoring from a checkpoint at `step`; the stage now ends at
    /// `total_steps` (other than planned when the checkpoint was written under another world size).
    fn resumed(&mut self, _step: u64, _total_steps: u64) -> Result<()> {
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

fn make_trainer(weights: Checkpoint, s: &StageSettings, world: World) -> Result<Trainer> {
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
        rows_per_step: Some(rows_per_step(s, world)),
    };
    Ok(Trainer {
        weights,
        model,
        opt,
        state,
    })
}

/// Rows every optimizer step consumes over all ranks (the global batch).
pub fn rows_per_step(s: &StageSettings, world: World) -> u64 {
    (world.size * s.batch_size * s.grad_accum) as u64
}

/// Every rank continues from rank 0's trainer (its restored or fresh weights, moments and
/// position), so that only rank 0 needs to read the stage directory.
fn share_root_trainer(t: &mut Trainer) -> Result<()> {
    if dist::world().size == 1 {
        return Ok(());
    }
    t.state = dist::from_root(dist::world().is_root().then_some(&t.state), Wait::Bounded)?;
    let vars: Vec<Tensor> = t
        .opt
        .params
        .iter()
        .map(|p| p.var.as_tensor().clone())
        .collect();
    for (p, v) in t
        .opt
        .params
        .iter()
        .zip(dist::tensors::broadcast_tensors(&vars)?)
    {
        p.var.set(&v)?;
    }
    let moments: Vec<Tensor> = t
        .opt
        .params
        .iter()
        .flat_map(|p| [p.exp_avg.clone(), p.exp_avg_sq.clone()])
        .collect();
    let shared = dist::tensors::broadcast_tensors(&moments)?;
    for (p, m) in t.opt.params.iter_mut().zip(shared.chunks(2)) {
        (p.exp_avg, p.exp_avg_sq) = (m[0].clone(), m[1].clone());
    }
    t.opt.step = t.state.optimizer_updates;
    Ok(())
}

/// The steps a resumed stage still takes at this world size: the rows left of what the
/// checkpoint's plan would have read, in steps of this run's global batch (rounded up). Equal to
/// the saved plan when the global batch did not change.
fn replanned_total(saved: &TrainerState, rows_per_step: u64) -> u64 {
    match saved.rows_per_step {
        Some(old) if old != rows_per_step => {
            let planned = saved.total_steps * old;
            saved.step
                + planned
                    .saturating_sub(saved.rows_consumed)
                    .div_ceil(rows_per_step)
        }
        _ => saved.total_steps,
    }
}

/// `DOGE_TRACE_ROWS=FILE`: every rank appends `rank step first count` for each micro-batch it
/// reads (which rows each step trained on; the resume tests check them).
struct RowTrace(Option<std::fs::File>);

impl RowTrace {
    fn from_env() -> Result<Self> {
        let Some(path) = std::env::var_os("DOGE_TRACE_ROWS") else {
            return Ok(Self(None));
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("DOGE_TRACE_ROWS: opening {}", Path::new(&path).display()))?;
        Ok(Self(Some(f)))
    }
    fn record(&mut self, rank: usize, step: u64, first: u64, count: usize) -> Result<()> {
        if let Some(f) = &mut self.0 {
            use std::io::Write;
            // One write per line: lines of ranks appending to the same file do not interleave.
            f.write_all(format!("{rank} {step} {first} {count}\n").as_bytes())?;
        }
        Ok(())
    }
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
    let world = dist::world();
    if world.is_root() {
        std::fs::create_dir_all(stage_dir)
            .with_context(|| format!("creating {}", stage_dir.display()))?;
    }
    let dev = start
        .tensors
        .values()
        .next()
        .map(|t| t.device().clone())
        .unwrap_or(candle_core::Device::Cpu);

    // Restore from the newest complete checkpoint, if any (rank 0 reads it; the others get it).
    let newest = world
        .is_root()
        .then(|| state::list(stage_dir).pop())
        .flatten();
    let mut t = match newest {
        Some((_, dir)) => {
            let (weights, saved, moments) = state::load(&dir, &dev)?;
            if saved.config_hash != s.config_hash {
                bail!(
                    "{} was written under other stage settings; delete the stage directory to start over",
                    dir.display()
                );
            }
            let mut t = make_trainer(weights, s, world)?;
            state::restore_optimizer(&mut t.opt, &moments, saved.optimizer_updates)?;
            t.state = saved;
            observer.println(&format!(
                "resumed from {} (step {})",
                dir.display(),
                t.state.step
            ));
            t
        }
        None => make_trainer(start, s, world)?,
    };
    share_root_trainer(&mut t)?;
    let rows_per_step = rows_per_step(s, world);
    let total = if t.state.step == 0 {
        s.total_steps
    } else {
        replanned_total(&t.state, rows_per_step)
    };
    if t.state.step > 0 {
        if total != t.state.total_steps {
            observer.println(&format!(
                "the global batch changed from {} to {rows_per_step} rows: the {} rows left take {} more steps (stage ends at step {total})",
                t.state.rows_per_step.unwrap_or(rows_per_step),
                (t.state.total_steps * t.state.rows_per_step.unwrap_or(rows_per_step))
                    .saturating_sub(t.state.rows_consumed),
                total - t.state.step
            ));
        }
        observer.resumed(t.state.step, total)?;
    }
    t.state.total_steps = total;
    t.state.rows_per_step = Some(rows_per_step);
    if t.state.step >= total {
        let dir = state::checkpoint_dir(stage_dir, t.state.step);
        return Ok(StageOutcome::Done(dir));
    }

    let mut window = (Instant::now(), 0usize);
    let mut last_saved = None;
    let mut trace = RowTrace::from_env()?;
    let like: Vec<Tensor> = t
        .opt
        .params
        .iter()
        .map(|p| p.var.as_tensor().clone())
        .collect();
    let like: Vec<&Tensor> = like.iter().collect();
    // Ranks stop together: the flag is combined over the ranks at the end of every step.
    let mut stop_all = world.size == 1 && stop.load(Ordering::SeqCst);
    while t.state.step < total {
        if stop_all || (world.size == 1 && stop.load(Ordering::SeqCst)) {
            let dir = match world.is_root() {
                true => state::save(stage_dir, &t.weights, &t.opt, &t.state)?,
                false => state::checkpoint_dir(stage_dir, t.state.step),
            };
            observer.checkpoint(&dir, t.state.step)?;
            return Ok(StageOutcome::Interrupted(dir));
        }
        let lr = s.adamw.lr * s.schedule.multiplier(t.state.step, total);

        // Forward and backward over the micro-batches; gradients add up.
        let mut grads: Vec<Option<Tensor>> = vec![None; t.opt.params.len()];
        let mut loss_sum = 0f64;
        let mut tokens = 0usize;
        let mut extra: Vec<(&'static str, f64)> = Vec::new();
        for micro in 0..s.grad_accum {
            // Micro-batch `micro` is rows `W x B` wide; this rank reads its B of them.
            let first =
                t.state.rows_consumed + ((micro * world.size + world.rank) * s.batch_size) as u64;
            trace.record(world.rank, t.state.step + 1, first, s.batch_size)?;
            let mb = objective.micro_batch(&t.model, first, s.batch_size)?;
            loss_sum += mb.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            tokens += mb.tokens;
            for (k, (name, v)) in mb.metrics.into_iter().enumerate() {
                match extra.get_mut(k) {
                    Some(slot) => slot.1 += v,
                    None => extra.push((name, v)),
                }
            }
            let store = (mb.loss / s.grad_accum as f64)?.backward()?;
            t.opt.accumulate(&mut grads, &store)?;
        }
        t.state.rows_consumed += rows_per_step;
        // The step's mean over the ranks: gradients, loss and the stage's metrics; tokens add up.
        dist::tensors::all_reduce_mean(&mut grads, &like)?;
        let mut sums = vec![
            loss_sum,
            tokens as f64,
            f64::from(u8::from(stop.load(Ordering::SeqCst))),
        ];
        sums.extend(extra.iter().map(|e| e.1));
        dist::all_reduce_sum_f64(&mut sums)?;
        let ranks = world.size as f64;
        let loss = sums[0] / (s.grad_accum as f64 * ranks);
        window.1 += sums[1] as usize;
        stop_all = world.size > 1 && sums[2] > 0.0;
        for (e, v) in extra.iter_mut().zip(&sums[3..]) {
            e.1 = v / ranks;
        }
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
            total,
            &format!("loss {loss:.4} lr {lr:.2e} {tokens_per_s:.0} tok/s"),
        );
        if due(step, s.log_every, total) {
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
        if due(step, s.eval_every, total) {
            let eval = objective.evaluate(&t.model, s.batch_size)?;
            if !eval.is_empty() {
                observer.metrics(step, &eval)?;
                let shown: Vec<String> = eval.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                observer.println(&format!(
                    "step {step}/{}: train loss {loss:.4}, {}",
                    total,
                    shown.join(", ")
                ));
            }
        }
        if step == total {
            let end = objective.final_metrics(&t.model, s.batch_size)?;
            if !end.is_empty() {
                observer.metrics(step, &end)?;
                let shown: Vec<String> = end.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                observer.println(&format!("step {step}: {}", shown.join(", ")));
            }
        }
        if due(step, s.save_every, total) && world.is_root() {
            let dir = state::save(stage_dir, &t.weights, &t.opt, &t.state)?;
            observer.checkpoint(&dir, step)?;
            // keep_last counts checkpoints besides the final one; 0 keeps all.
            let keep = if s.keep_last == 0 {
                0
            } else {
                s.keep_last + usize::from(step == total)
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
