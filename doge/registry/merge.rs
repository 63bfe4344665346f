//! `doge registry merge OTHER`: import the runs of another registry (a file from another machine,
//! or a server: SQLite -> PostgreSQL and back are the same code).
//!
//! Idempotent by run id: a run already present is left alone (with its metrics, evals and
//! artifacts), so merging the same registry twice adds nothing the second time. The copy is read
//! from one snapshot of the other registry and written in one transaction. Claims are not copied:
//! they coordinate the workers of one registry and mean nothing in another.

use std::collections::HashSet;

use anyhow::{ensure, Context, Result};

use super::db::{Location, Row, Tx, Value};
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

const RUN_COLS: &[&str] = &[
    "id",
    "experiment",
    "sweep",
    "parent_id",
    "stage",
    "status",
    "config_json",
    "config_hash",
    "created_at",
    "started_at",
    "ended_at",
    "heartbeat_at",
    "git_commit",
    "git_dirty",
    "version",
    "host",
    "device",
    "message",
    "total_steps",
    "note",
    "archived",
    "stage_key",
    "world_size",
    "global_batch",
];
const METRIC_COLS: &[&str] = &["run_id", "step", "name", "value", "time"];
const EVAL_COLS: &[&str] = &[
    "run_id",
    "checkpoint",
    "task",
    "metric",
    "value",
    "stderr",
    "n",
    "fewshot",
    "created_at",
    "add_bos",
    "task_file",
];
const ARTIFACT_COLS: &[&str] = &[
    "run_id",
    "kind",
    "path",
    "step",
    "size",
    "sha256",
    "created_at",
    "deleted_at",
];
const TAG_COLS: &[&str] = &["run_id", "tag"];

/// Everything of `other` that a merge may copy, read at one moment.
struct Source {
    experiments: Vec<Row>,
    runs: Vec<Row>,
    metrics: Vec<Row>,
    evals: Vec<Row>,
    artifacts: Vec<Row>,
    tags: Vec<Row>,
}

/// Copies every run of `other` that `reg` lacks, with its rows.
pub fn merge(reg: &Registry, other: &Location) -> Result<MergeStats> {
    if let Location::Sqlite(p) = other {
        ensure!(
            p.is_file(),
            "{}: no such registry file (give the path of the other machine's doge.sqlite, or a postgres:// URL)",
            p.display()
        );
    }
    ensure!(
        !same_place(reg.location(), other),
        "{other}: that is this registry; merge another one into it"
    );
    // Opening brings the other registry to this schema first (an older doge may have written it).
    let src = Registry::connect(other)?;
    let source = read_all(&src).with_context(|| format!("reading {other}"))?;
    copy_new_runs(reg, &source).with_context(|| format!("merging {other} into {}", reg.location()))
}

fn same_place(a: &Location, b: &Location) -> bool {
    match (a, b) {
        (Location::Sqlite(x), Location::Sqlite(y)) => {
            x == y || std::fs::canonicalize(x).ok() == std::fs::canonicalize(y).ok() && x.exists()
        }
        (Location::Postgres(x), Location::Postgres(y)) => x == y,
        _ => false,
    }
}

fn read_all(src: &Registry) -> Result<Source> {
    src.db().transaction(Tx::Snapshot, |db| {
        let all = |table: &str, cols: &[&str], order: &str| {
            db.query(
                &format!("SELECT {} FROM {table} ORDER BY {order}", cols.join(", ")),
                &[],
            )
        };
        Ok(Source {
            experiments: all("experiments", &["name", "path", "created_at"], "name")?,
            runs: all("runs", RUN_COLS, "created_at, id")?,
            metrics: all("metrics", METRIC_COLS, "rowid")?,
            evals: all("evals", EVAL_COLS, "rowid")?,
            artifacts: all("artifacts", ARTIFACT_COLS, "rowid")?,
            tags: all("tags", TAG_COLS, "run_id, tag")?,
        })
    })
}

fn copy_new_runs(reg: &Registry, src: &Source) -> Result<MergeStats> {
    reg.db().transaction(Tx::Write, |db| {
        let present: HashSet<String> = db
            .query("SELECT id FROM runs", &[])?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<_>>()?;
        let new_runs: Vec<&Row> = src
            .runs
            .iter()
            .filter(|r| !present.contains(&r.opt_text(0).unwrap_or_default()))
            .collect();
        let new_ids: HashSet<String> = new_runs.iter().filter_map(|r| r.opt_text(0)).collect();
        for e in &src.experiments {
            db.execute(
                "INSERT INTO experiments (name, path, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                &e.0,
            )?;
        }
        let rows_of = |rows: &[Row]| -> Vec<Vec<Value>> {
            rows.iter()
                .filter(|r| new_ids.contains(&r.opt_text(0).unwrap_or_default()))
                .map(|r| r.0.clone())
                .collect()
        };
        let runs: Vec<Vec<Value>> = new_runs.iter().map(|r| r.0.clone()).collect();
        db.insert_rows("runs", RUN_COLS, &runs)?;
        let metrics = db.insert_rows("metrics", METRIC_COLS, &rows_of(&src.metrics))?;
        let evals = db.insert_rows("evals", EVAL_COLS, &rows_of(&src.evals))?;
        let artifacts = db.insert_rows("artifacts", ARTIFACT_COLS, &rows_of(&src.artifacts))?;
        db.insert_rows("tags", TAG_COLS, &rows_of(&src.tags))?;
        Ok(MergeStats {
            runs: runs.len(),
            skipped: src.runs.len() - runs.len(),
            metrics: metrics as usize,
            evals: evals as usize,
            artifacts: artifacts as usize,
        })
    })
}
