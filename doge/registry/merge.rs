//! `doge registry merge OTHER.sqlite`: import runs recorded on another machine.
//!
//! Idempotent by run id: a run already present is left alone (with its metrics, evals and
//! artifacts), so merging the same file twice adds nothing the second time.

use std::path::Path;

use anyhow::{ensure, Context, Result};

use super::Registry;

/// What a merge added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeStats {
    pub runs: usize,
    pub skipped: usize,
    pub metrics: usize,
    pub evals: usize,
    pub artifacts: usize,
}

/// Copies every run of `other` that `reg` lacks, with its rows, in one transaction.
pub fn merge(reg: &mut Registry, other: &Path) -> Result<MergeStats> {
    ensure!(
        other.is_file(),
        "{}: no such registry file (give the path of the other machine's doge.sqlite)",
        other.display()
    );
    // Bring the other file to this schema first (an older doge may have written it).
    drop(Registry::open(other)?);
    let conn = reg.conn_mut();
    conn.execute("ATTACH DATABASE ?1 AS other", [other.display().to_string()])
        .with_context(|| format!("attaching {}", other.display()))?;
    let result = copy_new_runs(conn);
    conn.execute("DETACH DATABASE other", [])?;
    result.with_context(|| format!("merging {}", other.display()))
}

fn copy_new_runs(conn: &mut rusqlite::Connection) -> Result<MergeStats> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TEMP TABLE merge_new AS
             SELECT id FROM other.runs WHERE id NOT IN (SELECT id FROM main.runs);",
    )?;
    let total: i64 = tx.query_row("SELECT count(*) FROM other.runs", [], |r| r.get(0))?;
    tx.execute(
        "INSERT OR IGNORE INTO main.experiments (name, path, created_at)
         SELECT name, path, created_at FROM other.experiments",
        [],
    )?;
    const RUN_COLS: &str = "id, experiment, sweep, parent_id, stage, status, config_json, config_hash,
        created_at, started_at, ended_at, heartbeat_at, git_commit, git_dirty, version, host, device, message";
    let runs = tx.execute(
        &format!(
            "INSERT INTO main.runs ({RUN_COLS}) SELECT {RUN_COLS} FROM other.runs
             WHERE id IN (SELECT id FROM temp.merge_new)"
        ),
        [],
    )?;
    let copy = |table: &str, cols: &str| {
        tx.execute(
            &format!(
                "INSERT INTO main.{table} ({cols}) SELECT {cols} FROM other.{table}
                 WHERE run_id IN (SELECT id FROM temp.merge_new) ORDER BY rowid"
            ),
            [],
        )
    };
    let metrics = copy("metrics", "run_id, step, name, value, time")?;
    let evals = copy(
        "evals",
        "run_id, checkpoint, task, metric, value, stderr, n, fewshot, created_at",
    )?;
    let artifacts = copy(
        "artifacts",
        "run_id, kind, path, step, size, sha256, created_at",
    )?;
    tx.execute_batch("DROP TABLE temp.merge_new;")?;
    tx.commit()?;
    Ok(MergeStats {
        runs,
        skipped: total as usize - runs,
        metrics,
        evals,
        artifacts,
    })
}
