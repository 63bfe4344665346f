//! `doge exp status FILE`: each run of the plan with its claim (state, worker), the stage it is
//! in, its step, last loss and the time left in that stage, read from the registry.

use anyhow::Result;

use super::registry::{status as files_status, RunStatus};
use super::Run;
use crate::registry::claims::{self, Claim};
use crate::registry::db::Value;
use crate::registry::query::{load_runs, RunView};
use crate::registry::render::{num, table};
use crate::registry::{now, Registry};

/// The stale limit `doge exp status` assumes (the launchers' default).
pub const STALE_AFTER_S: f64 = crate::train::launcher::DEFAULT_STALE_AFTER_S;

/// "1:02:03", or "-" for unknown.
fn duration(s: Option<f64>) -> String {
    match s {
        Some(s) if s.is_finite() && s >= 0.0 => {
            let s = s.round() as u64;
            format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        }
        _ => "-".into(),
    }
}

/// Steps per second of a stage since it last started, from its logged losses.
fn step_rate(reg: &Registry, stage_run: &RunView) -> Result<Option<f64>> {
    let since = stage_run.started_at.unwrap_or(0.0);
    let rows = reg.db().query(
        "SELECT min(step), max(step), min(time), max(time) FROM metrics
         WHERE run_id = ?1 AND name = 'loss' AND time >= ?2",
        &[Value::from(&stage_run.id), Value::from(since)],
    )?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let (s0, s1, t0, t1) = (r.opt_i64(0), r.opt_i64(1), r.opt_f64(2), r.opt_f64(3));
    Ok(match (s0, s1, t0, t1) {
        (Some(s0), Some(s1), Some(t0), Some(t1)) if s1 > s0 && t1 > t0 => {
            Some((s1 - s0) as f64 / (t1 - t0))
        }
        _ => None,
    })
}

/// The state shown for a run: its claim's, `stale` when the claim's worker looks dead, else
/// what its directory says.
fn state(claim: Option<&Claim>, run: &Run, t: f64) -> String {
    match claim {
        Some(c) if c.worker_dead(STALE_AFTER_S, t) => format!("{} (stale)", c.status.as_str()),
        Some(c) => c.status.as_str().into(),
        None => match files_status(&run.experiment) {
            RunStatus::Done => "done".into(),
            RunStatus::Started => "started".into(),
            RunStatus::New => "new".into(),
        },
    }
}

/// The table `doge exp status` prints.
pub fn status_text(reg: &Registry, runs: &[Run]) -> Result<String> {
    let t = now();
    let Some(first) = runs.first() else {
        return Ok("no runs\n".into());
    };
    let claims = claims::list(reg.db(), &first.experiment.name)?;
    let header: Vec<String> = [
        "#", "run", "state", "worker", "stage", "step", "loss", "eta",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = Vec::new();
    let (mut done, mut live) = (0, 0);
    for (i, run) in runs.iter().enumerate() {
        let name = format!("{}-{}", run.experiment.name, run.id);
        let claim = claims.iter().find(|c| c.run == name);
        let state = state(claim, run, t);
        done += (state == "done") as usize;
        live += (state == "running" || state == "claimed") as usize;
        let stage_ids: Vec<String> = run
            .experiment
            .stages
            .iter()
            .map(|s| format!("{}-{}", run.id, s.id()))
            .collect();
        // The stages recorded so far; the newest started one is where the run is.
        let present: Vec<String> = stage_ids
            .iter()
            .filter(|id| {
                reg.db()
                    .query_i64(
                        "SELECT count(*) FROM runs WHERE id = ?1",
                        &[Value::from(*id)],
                    )
                    .is_ok_and(|n| n > 0)
            })
            .cloned()
            .collect();
        let views = if present.is_empty() {
            Vec::new()
        } else {
            load_runs(reg.db(), Some(&present))?
        };
        let current = views.iter().max_by(|a, b| {
            a.started_at
                .partial_cmp(&b.started_at)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let (stage, step, loss, eta) = match current {
            None => (
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
            ),
            Some(v) => {
                let step = v.last_metrics.values().map(|m| m.0).max();
                let step_text = match (step, v.total_steps) {
                    (Some(s), Some(n)) => format!("{s}/{n}"),
                    (Some(s), None) => s.to_string(),
                    (None, Some(n)) => format!("0/{n}"),
                    (None, None) => "-".into(),
                };
                let loss = v.last_metrics.get("loss").map_or("-".into(), |m| num(m.1));
                let eta = if state == "running" {
                    let rate = step_rate(reg, v)?;
                    match (rate, step, v.total_steps) {
                        (Some(r), Some(s), Some(n)) => {
                            duration(Some(n.saturating_sub(s) as f64 / r))
                        }
                        _ => "-".into(),
                    }
                } else {
                    "-".into()
                };
                (v.stage.clone(), step_text, loss, eta)
            }
        };
        let worker = claim.map_or("-".into(), |c| format!("{}:{}", c.host, c.pid));
        rows.push(vec![
            i.to_string(),
            name,
            state,
            worker,
            stage,
            step,
            loss,
            eta,
        ]);
    }
    let mut o = format!(
        "{}: {} runs, {done} done, {live} running (registry {})\n",
        first.experiment.name,
        runs.len(),
        reg.location()
    );
    o += &table(&header, &rows);
    Ok(o)
}
