//! Training checkpoints: the model in Hugging Face layout plus everything an exact resume needs
//! (optimizer moments, step, data position), written under a temporary name and renamed, so a crash
//! never leaves a half checkpoint.
//!
//! Layout of `checkpoint-NNNNNNNN/`: config.json, model.safetensors, optimizer.safetensors
//! (`exp_avg.NAME` / `exp_avg_sq.NAME`), trainer_state.json (written last).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::optimizer::AdamW;
use crate::checkpoint::Checkpoint;

pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done (skipped non-finite steps included).
    pub step: u64,
    pub total_steps: u64,
    /// Training rows consumed: the next row read is `rows_consumed % num_train_rows`.
    pub rows_consumed: u64,
    /// AdamW's own update count (skipped steps do not update).
    pub optimizer_updates: u64,
    pub skipped_steps: u64,
    pub consecutive_bad_steps: u32,
    /// Hash of the stage's resolved settings: resuming under other settings is refused.
    pub config_hash: String,
    /// Rows one step reads over all ranks (ranks x batch x grad-accum). A resume under another
    /// world size re-plans the rows left in steps of the new global batch. Absent in checkpoints
    /// written before data parallelism (one process: batch x grad-accum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_step: Option<u64>,
}

pub fn checkpoint_dir(stage_dir: &Path, step: u64) -> PathBuf {
    stage_dir.join(format!("checkpoint-{step:08}"))
}

/// Writes a checkpoint of the current weights and optimizer.
pub fn save(
    stage_dir: &Path,
    weights: &Checkpoint,
    opt: &AdamW,
    state: &TrainerState,
) -> Result<PathBuf> {
    let final_dir = checkpoint_dir(stage_dir, state.step);
    let tmp = stage_dir.join(format!(
        ".tmp-checkpoint-{:08}-{}",
        state.step,
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    weights.save(&tmp, DType::F32)?;
    let mut moments: HashMap<String, Tensor> = HashMap::new();
    for p in &opt.params {
        moments.insert(format!("exp_avg.{}", p.name), p.exp_avg.clone());
        moments.insert(format!("exp_avg_sq.{}", p.name), p.exp_avg_sq.clone());
    }
    candle_core::safetensors::save(&moments, tmp.join(OPTIMIZER_FILE))?;
    std::fs::write(
        tmp.join(TRAINER_STATE_FILE),
        serde_json::to_string_pretty(state)?,
    )?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)?;
    }
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("renaming into {}", final_dir.display()))?;
    Ok(final_dir)
}

/// Complete checkpoints of a stage, oldest first (half-written `.tmp-*` directories are ignored).
pub fn list(stage_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(stage_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    let step = name.strip_prefix("checkpoint-")?.parse().ok()?;
                    e.path()
                        .join(TRAINER_STATE_FILE)
                        .is_file()
                        .then(|| (step, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Deletes all but the newest `keep` checkpoints (0 keeps all); returns the deleted ones.
pub fn prune(stage_dir: &Path, keep: usize) -> Result<Vec<PathBuf>> {
    let all = list(stage_dir);
    if keep == 0 || all.len() <= keep {
        return Ok(Vec::new());
    }
    let mut removed = Vec::new();
    for (_, dir) in &all[..all.len() - keep] {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        removed.push(dir.clone());
    }
    Ok(removed)
}

/// Reads a checkpoint's weights, trainer state and optimizer moments.
pub fn load(
    dir: &Path,
    dev: &Device,
) -> Result<(Checkpoint, TrainerState, HashMap<String, Tensor>)> {
    let weights = Checkpoint::load(dir, DType::F32, dev)?;
    let state_path = dir.join(TRAINER_STATE_FILE);
    let state: TrainerState = serde_json::from_str(&std::fs::read_to_string(&state_path)?)
        .with_context(|| format!("{}: not a trainer state", state_path.display()))?;
    let moments = candle_core::safetensors::load(dir.join(OPTIMIZER_FILE), dev)
        .with_context(|| format!("{}: unreadable optimizer state", dir.display()))?;
    Ok((weights, state, moments))
}

/// Puts saved moments back into the optimizer.
pub fn restore_optimizer(
    opt: &mut AdamW,
    moments: &HashMap<String, Tensor>,
    updates: u64,
) -> Result<()> {
    for p in &mut opt.params {
        let (Some(m), Some(v)) = (
            moments.get(&format!("exp_avg.{}", p.name)),
            moments.get(&format!("exp_avg_sq.{}", p.name)),
        ) else {
            bail!("optimizer state has no moments for `{}`", p.name);
        };
        p.exp_avg = m.clone();
        p.exp_avg_sq = v.clone();
    }
    opt.step = updates;
    Ok(())
}
