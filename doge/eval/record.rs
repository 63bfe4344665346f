//! Scores into the registry: one `evals` row per (task, metric), with its standard error, item
//! count and shots, against the run that owns the evaluated checkpoint.
//!
//! `doge eval --model DIR`: when DIR lies inside a registry (an ancestor folder holds
//! `doge.sqlite`, as `registry/<name>-<id>/<stage>/checkpoint-N/` does, or the
//! [`SERVER_MARKER`] file the runner writes beside run directories whose registry is a server),
//! the scores go to the run
//! whose artifacts list DIR, or else to the run named by the folders (`<id>-<stage>`). Otherwise
//! they go to an eval-only run in `--registry`, keyed by the checkpoint's path, so evaluating the
//! same checkpoint again adds to the same run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::TaskResult;
use crate::registry::db::{Location, Value};
use crate::registry::{EvalRow, NewRun, Registry, RunStatus};

/// Beside the run directories of a registry that lives on a server: its URL (written only when
/// the URL holds no password).
pub const SERVER_MARKER: &str = "doge-registry.url";

/// The registry a folder of run directories records into, if it is one.
fn registry_of(root: &Path) -> Option<Location> {
    if root.join("doge.sqlite").is_file() {
        return Some(Location::Sqlite(root.join("doge.sqlite")));
    }
    let url = std::fs::read_to_string(root.join(SERVER_MARKER)).ok()?;
    Some(Location::parse(url.trim()))
}

/// The registry and run id the scores of `model_dir` belong to, if a registry run owns it.
pub fn owning_run(model_dir: &Path) -> Result<Option<(Location, String)>> {
    let dir = std::fs::canonicalize(model_dir)
        .with_context(|| format!("{}: no such model directory", model_dir.display()))?;
    let Some((root, db)) = dir
        .ancestors()
        .skip(1)
        .find_map(|a| registry_of(a).map(|l| (a, l)))
    else {
        return Ok(None);
    };
    let reg = Registry::connect(&db)?;
    let rows = reg
        .db()
        .query("SELECT run_id, path FROM artifacts ORDER BY rowid", &[])?;
    for row in rows {
        let (run, path) = (row.text(0)?, row.text(1)?);
        // The first run to record the directory produced it (an eval stage lists it later).
        // Artifact paths are as the runner saw them (often relative to where it ran).
        let candidates = [PathBuf::from(&path), root.join(&path)];
        if candidates
            .iter()
            .any(|p| std::fs::canonicalize(p).is_ok_and(|c| c == dir))
        {
            return Ok(Some((db, run)));
        }
    }
    // registry/<name>-<id>/<stage>/checkpoint-N: the runner names the run `<id>-<stage>`.
    let rel = dir.strip_prefix(root).unwrap_or(&dir);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.len() >= 2 {
        let id = parts[0].rsplit('-').next().unwrap_or_default();
        let run = format!("{id}-{}", parts[1]);
        let exists = reg.db().query_i64(
            "SELECT COUNT(*) FROM runs WHERE id = ?1",
            &[Value::from(&run)],
        )? > 0;
        if exists {
            return Ok(Some((db, run)));
        }
    }
    Ok(None)
}

/// Records the results against `run`; `checkpoint` is the evaluated directory.
pub fn add_results(
    reg: &Registry,
    run: &str,
    checkpoint: &Path,
    results: &[TaskResult],
) -> Result<usize> {
    let mut n = 0;
    for r in results {
        let rows: Vec<EvalRow> = r
            .scores
            .iter()
            .map(|s| EvalRow {
                checkpoint: Some(checkpoint.display().to_string()),
                task: r.task.clone(),
                metric: s.metric.clone(),
                value: s.value,
                stderr: s.stderr,
                n: Some(s.n as u64),
                fewshot: Some(r.shots as u32),
                add_bos: r.add_bos,
                task_file: r.task_file.clone(),
            })
            .collect();
        // One transaction per task: a task's scores are recorded whole or not at all.
        reg.add_evals(run, &rows)?;
        n += rows.len();
    }
    Ok(n)
}

/// Creates (or reopens) the eval-only run of a checkpoint outside any registry run; returns its id.
pub fn eval_only_run(reg: &Registry, model_dir: &Path, device: &str) -> Result<String> {
    let abs = std::fs::canonicalize(model_dir).unwrap_or_else(|_| model_dir.to_path_buf());
    let hash = format!("{:x}", Sha256::digest(abs.display().to_string().as_bytes()));
    let id = format!("eval-{}", &hash[..10]);
    let config = serde_json::json!({"kind": "eval", "model": abs.display().to_string()});
    reg.start_run(&NewRun {
        id: id.clone(),
        experiment: "eval".into(),
        experiment_path: None,
        sweep: None,
        parent_id: None,
        stage: "eval".into(),
        config_json: serde_json::to_string_pretty(&config)?,
        config_hash: hash[..16].to_string(),
        device: device.into(),
        stage_key: None,
    })?;
    Ok(id)
}

/// Marks an eval-only run finished.
pub fn finish(reg: &Registry, run: &str, ok: bool, message: Option<&str>) -> Result<()> {
    let status = if ok {
        RunStatus::Done
    } else {
        RunStatus::Failed
    };
    reg.finish_run(run, status, message)
}
