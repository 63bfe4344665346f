//! The SQLite registry: every run, its resolved config, status, metrics, evals and checkpoints.
//!
//! One file any tool can open (default `registry/doge.sqlite`). WAL mode and a busy timeout let the
//! processes of a sweep write at once; writes are short transactions, so a killed process leaves the
//! file consistent and its run visibly `running` with a stale heartbeat.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

pub mod cli;
pub mod commands;
pub mod filter;
pub mod merge;
pub mod plot;
pub mod query;
pub mod render;
pub mod report;

/// Migrations in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE experiments (
    name TEXT PRIMARY KEY,
    path TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL REFERENCES experiments(name),
    sweep TEXT,
    parent_id TEXT,
    stage TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
    config_json TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    heartbeat_at REAL,
    git_commit TEXT,
    git_dirty INTEGER,
    version TEXT NOT NULL,
    host TEXT,
    device TEXT,
    message TEXT
);
CREATE TABLE metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX metrics_by_run ON metrics(run_id, name, step);
CREATE TABLE evals (
    run_id TEXT NOT NULL REFERENCES runs(id),
    checkpoint TEXT,
    task TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    stderr REAL,
    n INTEGER,
    fewshot INTEGER
);
CREATE TABLE artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    step INTEGER,
    size INTEGER,
    sha256 TEXT,
    created_at REAL NOT NULL
);
"#,
    // v2: indexes for the query commands (sweeps, lineage, per-run evals/artifacts) and the time
    // an eval was recorded. Old files get it by migration; v1 SQL above stays as released.
    r#"
ALTER TABLE evals ADD COLUMN created_at REAL;
CREATE INDEX runs_by_sweep ON runs(sweep);
CREATE INDEX runs_by_parent ON runs(parent_id);
CREATE INDEX evals_by_run ON evals(run_id);
CREATE INDEX artifacts_by_run ON artifacts(run_id);
"#,
];

/// The schema version this doge writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// One eval score of a run (a row of `evals`).
#[derive(Debug, Clone, Default)]
pub struct EvalRow {
    pub checkpoint: Option<String>,
    pub task: String,
    pub metric: String,
    pub value: f64,
    pub stderr: Option<f64>,
    pub n: Option<u64>,
    pub fewshot: Option<u32>,
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Done,
    Failed,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Running, Self::Done, Self::Failed, Self::Interrupted]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// What a run records about itself when it starts.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub experiment: String,
    pub experiment_path: Option<String>,
    pub sweep: Option<String>,
    pub parent_id: Option<String>,
    pub stage: String,
    pub config_json: String,
    pub config_hash: String,
    pub device: String,
}

pub struct Registry {
    conn: Connection,
    path: PathBuf,
}

impl Registry {
    /// Opens (creating and migrating as needed) the registry at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("opening registry {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        // Switching a new file to WAL needs an exclusive lock, and SQLite answers BUSY there
        // without calling the busy handler while another process is doing the same (seen with 8
        // writers opening one new registry at once): retry it.
        retry_busy(|| Ok(conn.pragma_update(None, "journal_mode", "WAL")?))
            .with_context(|| format!("setting WAL mode on registry {}", path.display()))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut reg = Self {
            conn,
            path: path.to_path_buf(),
        };
        retry_busy(|| reg.migrate())
            .with_context(|| format!("migrating registry {}", path.display()))?;
        Ok(reg)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Records one eval score of a run.
    pub fn add_eval(&self, id: &str, e: &EvalRow) -> Result<()> {
        self.conn.execute(
            "INSERT INTO evals (run_id, checkpoint, task, metric, value, stderr, n, fewshot, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                id,
                e.checkpoint,
                e.task,
                e.metric,
                e.value,
                e.stderr,
                e.n.map(|n| n as i64),
                e.fewshot,
                now()
            ],
        )?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version = tx.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
        if version > MIGRATIONS.len() {
            anyhow::bail!(
                "schema version {version} is newer than this doge knows ({}); upgrade doge",
                MIGRATIONS.len()
            );
        }
        for sql in &MIGRATIONS[version..] {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        tx.commit()?;
        Ok(())
    }

    /// Records a run as running: a new row, or the existing row of a resumed run.
    pub fn start_run(&self, run: &NewRun) -> Result<()> {
        let t = now();
        let (commit, dirty) = git_state();
        self.conn.execute(
            "INSERT INTO experiments (name, path, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET path = COALESCE(excluded.path, path)",
            params![run.experiment, run.experiment_path, t],
        )?;
        self.conn.execute(
            "INSERT INTO runs (id, experiment, sweep, parent_id, stage, status, config_json, config_hash,
                               created_at, started_at, heartbeat_at, git_commit, git_dirty, version, host, device)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?8, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT(id) DO UPDATE SET status = 'running', started_at = ?8, heartbeat_at = ?8,
                 ended_at = NULL, message = NULL, git_commit = ?9, git_dirty = ?10, version = ?11,
                 host = ?12, device = ?13",
            params![
                run.id,
                run.experiment,
                run.sweep,
                run.parent_id,
                run.stage,
                run.config_json,
                run.config_hash,
                t,
                commit,
                dirty,
                env!("CARGO_PKG_VERSION"),
                hostname(),
                run.device
            ],
        )?;
        Ok(())
    }

    pub fn finish_run(&self, id: &str, status: RunStatus, message: Option<&str>) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET status = ?2, ended_at = ?3, heartbeat_at = ?3, message = ?4 WHERE id = ?1",
            params![id, status.as_str(), now(), message],
        )?;
        Ok(())
    }

    pub fn heartbeat(&self, id: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET heartbeat_at = ?2 WHERE id = ?1",
            params![id, now()],
        )?;
        Ok(())
    }

    /// Appends metric rows (step, name, value) in one transaction, and beats the heart.
    pub fn log_metrics(&mut self, id: &str, rows: &[(u64, &str, f64)]) -> Result<()> {
        let t = now();
        // IMMEDIATE takes the write lock at BEGIN, where the busy timeout applies. A deferred
        // transaction in WAL mode can find its read snapshot stale when it upgrades to write and
        // then fails at once with "database is locked" (seen with 8 writers on a loaded machine).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO metrics (run_id, step, name, value, time) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (step, name, value) in rows {
                stmt.execute(params![id, *step as i64, name, value, t])?;
            }
        }
        tx.execute(
            "UPDATE runs SET heartbeat_at = ?2 WHERE id = ?1",
            params![id, t],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Drops metrics logged after `step`: a resumed run redoes those steps from its checkpoint.
    pub fn truncate_metrics_after(&self, id: &str, step: u64) -> Result<()> {
        self.conn.execute(
            "DELETE FROM metrics WHERE run_id = ?1 AND step > ?2",
            params![id, step as i64],
        )?;
        Ok(())
    }

    pub fn add_artifact(&self, id: &str, kind: &str, path: &Path, step: Option<u64>) -> Result<()> {
        let size = dir_size(path);
        self.conn.execute(
            "INSERT INTO artifacts (run_id, kind, path, step, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, kind, path.display().to_string(), step.map(|s| s as i64), size as i64, now()],
        )?;
        Ok(())
    }

    /// (step, value) pairs of one metric of a run, in step order.
    pub fn metric(&self, id: &str, name: &str) -> Result<Vec<(u64, f64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT step, value FROM metrics WHERE run_id = ?1 AND name = ?2 ORDER BY step, rowid",
        )?;
        let rows = stmt.query_map(params![id, name], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

fn dir_size(path: &Path) -> u64 {
    if path.is_file() {
        return path.metadata().map(|m| m.len()).unwrap_or(0);
    }
    std::fs::read_dir(path)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The checkout's commit and whether it has uncommitted changes (None outside a git checkout).
fn git_state() -> (Option<String>, Option<bool>) {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = run(&["rev-parse", "HEAD"]);
    let dirty = commit
        .as_ref()
        .and_then(|_| run(&["status", "--porcelain"]))
        .map(|s| !s.is_empty());
    (commit, dirty)
}

/// Runs `f` again while SQLite answers BUSY or LOCKED where no busy handler waits, for up to
/// 30 s in total, backing off from 10 ms to 500 ms.
fn retry_busy<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let start = std::time::Instant::now();
    let mut wait = std::time::Duration::from_millis(10);
    loop {
        let result = f();
        let busy = match &result {
            Err(e) => matches!(
                e.downcast_ref::<rusqlite::Error>(),
                Some(rusqlite::Error::SqliteFailure(f, _))
                    if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            Ok(_) => false,
        };
        if !busy || start.elapsed() >= std::time::Duration::from_secs(30) {
            return result;
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(std::time::Duration::from_millis(500));
    }
}
