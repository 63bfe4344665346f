//! Claims: which worker runs which run of an experiment, so that any number of `doge exp run`
//! processes (threads of one, or processes on many machines) share one sweep, each run trained
//! exactly once.
//!
//! A claim is one row per run of the experiment (`<name>-<id>`, all of its stages), taken by one
//! atomic upsert: `INSERT ... ON CONFLICT DO UPDATE ... WHERE <the old claim may be taken>`. Both
//! SQLite and PostgreSQL apply that as one step, so of two workers racing for a run exactly one
//! changes the row; the other sees zero rows changed and moves on. A claim may be taken when:
//! - there is none;
//! - its worker is dead: its heartbeat is older than the stale limit, or (same host) its process
//!   is gone, which needs no waiting after a `kill -9`;
//! - it failed or was interrupted before this launcher started (a new launch retries those, a
//!   running one does not loop on a run that fails);
//! - it says `done` but the run directory lacks `done.json` (the user deleted it to rerun).

use anyhow::Result;

use super::db::{Conn, Row};
use super::{hostname, now, Registry};
use crate::sql_params;

/// A worker found that the run it trains is no longer its own: another worker took the claim
/// over (after this one's heartbeats stopped reaching the registry for the stale limit).
#[derive(Debug, thiserror::Error)]
#[error("the claim of {run} was taken over by another worker (this worker's heartbeats stopped reaching the registry); stopped without writing more")]
pub struct ClaimLost {
    pub run: String,
}

/// Fails with [`ClaimLost`] unless `worker` holds a live claim of `run`. Inside a write
/// transaction it also keeps the claim from changing hands until the transaction ends: SQLite's
/// write transaction excludes every other writer already; PostgreSQL needs the row locked
/// (`FOR UPDATE`, which SQLite does not have, hence two texts).
pub fn check_held(db: &Conn, run: &str, worker: &str) -> Result<()> {
    let sql = match db.backend() {
        super::db::Backend::Sqlite => {
            "SELECT run FROM claims WHERE run = ?1 AND worker = ?2 AND status IN ('claimed', 'running')"
        }
        super::db::Backend::Postgres => {
            "SELECT run FROM claims WHERE run = ?1 AND worker = ?2 AND status IN ('claimed', 'running') FOR UPDATE"
        }
    };
    if db.query(sql, &sql_params![run, worker])?.is_empty() {
        return Err(ClaimLost { run: run.into() }.into());
    }
    Ok(())
}

/// A claim's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimStatus {
    Claimed,
    Running,
    Done,
    Failed,
    Interrupted,
}

impl ClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Claimed => "claimed",
            ClaimStatus::Running => "running",
            ClaimStatus::Done => "done",
            ClaimStatus::Failed => "failed",
            ClaimStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        use ClaimStatus::*;
        [Claimed, Running, Done, Failed, Interrupted]
            .into_iter()
            .find(|x| x.as_str() == s)
    }

    /// A worker holds it (unless the worker is dead).
    pub fn is_live(self) -> bool {
        matches!(self, ClaimStatus::Claimed | ClaimStatus::Running)
    }
}

/// This process as a worker: `host:pid:start`, where `start` is the process's start time (so a
/// reused pid is not mistaken for the worker that died).
#[derive(Debug, Clone)]
pub struct Worker {
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// When this launcher started: failures before it are retried, failures during it are not.
    pub launched_at: f64,
}

impl Worker {
    pub fn this_process() -> Worker {
        let host = hostname();
        let pid = std::process::id();
        let start = process_start(pid).unwrap_or(0);
        Worker {
            id: format!("{host}:{pid}:{start}"),
            host,
            pid,
            launched_at: now(),
        }
    }
}

/// Field 22 of `/proc/PID/stat`: the process's start time in clock ticks since boot.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    // A zombie (state Z) has exited; only its parent has not reaped it yet (e.g. a rank whose
    // launcher ended first, left to an init that reaps late).
    if rest.starts_with('Z') {
        return None;
    }
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether the worker `id` on this host is gone. `None`: cannot tell (another host, or no
/// /proc), so only the heartbeat decides.
fn worker_dead_here(id: &str, host: &str) -> Option<bool> {
    let mut parts = id.rsplitn(3, ':');
    let start: u64 = parts.next()?.parse().ok()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    let claim_host = parts.next()?;
    if claim_host != host || start == 0 || !std::path::Path::new("/proc/self/stat").exists() {
        return None;
    }
    Some(process_start(pid) != Some(start))
}

/// One row of `claims`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub run: String,
    pub experiment: String,
    pub plan_index: Option<i64>,
    pub status: ClaimStatus,
    pub worker: String,
    pub host: String,
    pub pid: i64,
    pub claimed_at: f64,
    pub heartbeat_at: f64,
    pub ended_at: Option<f64>,
    pub attempts: i64,
    pub message: Option<String>,
}

const CLAIM_COLUMNS: &str = "run, experiment, plan_index, status, worker, host, pid, claimed_at,
    heartbeat_at, ended_at, attempts, message";

fn claim_from(r: &Row) -> Result<Claim> {
    Ok(Claim {
        run: r.text(0)?,
        experiment: r.text(1)?,
        plan_index: r.opt_i64(2),
        status: ClaimStatus::parse(&r.text(3)?).unwrap_or(ClaimStatus::Failed),
        worker: r.text(4)?,
        host: r.text(5)?,
        pid: r.i64(6)?,
        claimed_at: r.f64(7)?,
        heartbeat_at: r.f64(8)?,
        ended_at: r.opt_f64(9),
        attempts: r.i64(10)?,
        message: r.opt_text(11),
    })
}

impl Claim {
    /// Whether the worker holding this claim looks dead: heartbeat older than `stale_after`
    /// seconds, or its process gone from this host.
    pub fn worker_dead(&self, stale_after: f64, t: f64) -> bool {
        self.status.is_live()
            && (t - self.heartbeat_at > stale_after
                || worker_dead_here(&self.worker, &hostname()) == Some(true))
    }
}

/// The claims of an experiment's runs.
pub fn list(db: &Conn, experiment: &str) -> Result<Vec<Claim>> {
    db.query(
        &format!(
            "SELECT {CLAIM_COLUMNS} FROM claims WHERE experiment = ?1 ORDER BY plan_index, run"
        ),
        &sql_params![experiment],
    )?
    .iter()
    .map(claim_from)
    .collect()
}

pub fn get(db: &Conn, run: &str) -> Result<Option<Claim>> {
    db.query(
        &format!("SELECT {CLAIM_COLUMNS} FROM claims WHERE run = ?1"),
        &sql_params![run],
    )?
    .first()
    .map(claim_from)
    .transpose()
}

/// What [`try_claim`] found.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// This worker holds the run now; `from` is the dead or failed claim it replaced.
    Claimed { from: Option<Claim> },
    /// Another worker holds it, or it is done, or it failed during this launch.
    Taken(Claim),
}

/// Claims `run` for `worker` if nobody else may hold it (see the module text). The caller has
/// seen that the run directory lacks `done.json`, so a `done` claim may be retaken.
pub fn try_claim(
    reg: &Registry,
    worker: &Worker,
    run: &str,
    experiment: &str,
    plan_index: usize,
    stale_after: f64,
) -> Result<Outcome> {
    let db = reg.db();
    let t = now();
    let before = get(db, run)?;
    // A dead worker on this host is known at once; the SQL below only lets this exact worker
    // id be replaced, so two launchers seeing it dead cannot both take it over.
    let dead = before
        .as_ref()
        .filter(|c| c.status.is_live() && worker_dead_here(&c.worker, &worker.host) == Some(true))
        .map(|c| c.worker.clone());
    let changed = db.execute(
        "INSERT INTO claims (run, experiment, plan_index, status, worker, host, pid, claimed_at,
                             heartbeat_at, attempts)
         VALUES (?1, ?2, ?3, 'claimed', ?4, ?5, ?6, ?7, ?7, 1)
         ON CONFLICT (run) DO UPDATE SET status = 'claimed', plan_index = excluded.plan_index,
             worker = excluded.worker, host = excluded.host, pid = excluded.pid,
             claimed_at = excluded.claimed_at, heartbeat_at = excluded.heartbeat_at,
             ended_at = NULL, message = NULL, attempts = claims.attempts + 1
         WHERE (claims.status IN ('claimed', 'running')
                AND (claims.heartbeat_at < ?8 OR claims.worker = ?9))
            OR (claims.status IN ('failed', 'interrupted') AND claims.ended_at < ?10)
            OR claims.status = 'done'",
        &sql_params![
            run,
            experiment,
            plan_index as i64,
            worker.id.as_str(),
            worker.host.as_str(),
            worker.pid,
            t,
            t - stale_after,
            dead.unwrap_or_default(),
            worker.launched_at
        ],
    )?;
    if changed == 1 {
        return Ok(Outcome::Claimed { from: before });
    }
    let now_held = get(db, run)?.ok_or_else(|| anyhow::anyhow!("claim of {run} vanished"))?;
    Ok(Outcome::Taken(now_held))
}

/// Records that the run is done when its files say so: done before claims existed, or by a
/// process that died between writing `done.json` and updating its claim. The claim keeps its
/// worker, so a live one still finishing up changes nothing by it.
pub fn mark_done(
    reg: &Registry,
    worker: &Worker,
    run: &str,
    experiment: &str,
    plan_index: usize,
) -> Result<()> {
    let t = now();
    reg.db().execute(
        "INSERT INTO claims (run, experiment, plan_index, status, worker, host, pid, claimed_at,
                             heartbeat_at, ended_at, attempts)
         VALUES (?1, ?2, ?3, 'done', ?4, ?5, ?6, ?7, ?7, ?7, 0)
         ON CONFLICT (run) DO UPDATE SET status = 'done',
             ended_at = COALESCE(claims.ended_at, excluded.ended_at)
         WHERE claims.status <> 'done'",
        &sql_params![
            run,
            experiment,
            plan_index as i64,
            worker.id.as_str(),
            worker.host.as_str(),
            worker.pid,
            t
        ],
    )?;
    Ok(())
}

/// Moves this worker's claim of `run` to `status` (a claim taken over by another worker is left
/// alone: it is theirs now).
pub fn set_status(
    reg: &Registry,
    worker: &Worker,
    run: &str,
    status: ClaimStatus,
    message: Option<&str>,
) -> Result<bool> {
    let t = now();
    let ended = (!status.is_live()).then_some(t);
    let n = reg.db().execute(
        "UPDATE claims SET status = ?3, heartbeat_at = ?4, ended_at = ?5, message = ?6
         WHERE run = ?1 AND worker = ?2",
        &sql_params![run, worker.id.as_str(), status.as_str(), t, ended, message],
    )?;
    Ok(n == 1)
}

/// Beats the heart of every live claim of this worker; returns how many it holds.
pub fn heartbeat(reg: &Registry, worker: &Worker) -> Result<u64> {
    reg.db().execute(
        "UPDATE claims SET heartbeat_at = ?2 WHERE worker = ?1 AND status IN ('claimed', 'running')",
        &sql_params![worker.id.as_str(), now()],
    )
}

/// A thread that beats this worker's heart every `every` seconds on its own connection, until
/// dropped.
pub struct Heartbeat {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(location: super::db::Location, worker: Worker, every: f64) -> Heartbeat {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut reg: Option<Registry> = None;
            let tick = std::time::Duration::from_millis(100);
            let mut next = std::time::Instant::now();
            while !flag.load(Ordering::SeqCst) {
                if std::time::Instant::now() >= next {
                    next += std::time::Duration::from_secs_f64(every);
                    if reg.is_none() {
                        reg = Registry::connect(&location).ok();
                    }
                    if let Some(r) = &reg {
                        if let Err(e) = heartbeat(r, &worker) {
                            eprintln!("warning: claim heartbeat: {e:#}; reconnecting");
                            reg = None;
                        }
                    }
                }
                std::thread::sleep(tick);
            }
        });
        Heartbeat {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
