//! Reading runs back: one [`RunView`] per run with its config, last metrics and evals, and the
//! key lookup the filter language, `--sort` and `compare` share.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Result};
use serde_json::Value as Json;

use super::db::{Conn, Row, Tx, Value as SqlValue};
use super::filter::Value;
use super::now;

/// A `running` run whose heartbeat is older than this is shown as `running (stale)`: its process
/// most likely died (the runner beats at least every logged step).
pub const STALE_AFTER_S: f64 = 300.0;

/// One run as the query commands see it.
#[derive(Debug, Clone)]
pub struct RunView {
    pub id: String,
    pub experiment: String,
    pub sweep: Option<String>,
    pub parent_id: Option<String>,
    pub stage: String,
    /// The stored status, with `running (stale)` for a run whose heartbeat stopped.
    pub status: String,
    pub config: Json,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
    pub heartbeat_at: Option<f64>,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub version: String,
    pub host: Option<String>,
    pub device: Option<String>,
    pub message: Option<String>,
    /// The steps the stage plans (None: not recorded, or an eval stage).
    pub total_steps: Option<u64>,
    /// Processes that trained the stage (data parallel), and the rows of one step over all.
    pub world_size: Option<u64>,
    pub global_batch: Option<u64>,
    /// How many metric rows the run has logged (key `metric_rows`).
    pub metric_rows: u64,
    /// Last value (highest step) of each metric.
    pub last_metrics: BTreeMap<String, (u64, f64)>,
    /// `task.metric` -> (value, stderr); the newest eval row wins.
    pub evals: BTreeMap<String, (f64, Option<f64>)>,
    /// Tags (`doge runs tag`), sorted.
    pub tags: Vec<String>,
    pub note: Option<String>,
    /// Hidden from lists and reports unless asked for (`doge runs archive`).
    pub archived: bool,
    /// The hash of what the stage computed (runs with the same key are the same result).
    pub stage_key: Option<String>,
    /// The experiment run this stage belongs to (the id `doge exp run` prints).
    pub config_hash: String,
}

/// The status to show: `running` turns `running (stale)` once the heartbeat is old.
pub fn display_status(status: &str, heartbeat_at: Option<f64>, now: f64) -> String {
    let stale = heartbeat_at.is_none_or(|h| now - h > STALE_AFTER_S);
    if status == "running" && stale {
        "running (stale)".into()
    } else {
        status.into()
    }
}

impl RunView {
    /// Resolves a filter/sort key: a run column, `metric.NAME`, `eval.TASK.METRIC`, or a dotted
    /// path into the config (`stage.NAME.key` picks the stage by name or kind).
    pub fn get(&self, key: &str) -> Value {
        let text = |s: &Option<String>| s.clone().map(Value::Str).unwrap_or(Value::Null);
        match key {
            "id" => return Value::Str(self.id.clone()),
            "experiment" => return Value::Str(self.experiment.clone()),
            "sweep" => return text(&self.sweep),
            "parent" | "parent_id" => return text(&self.parent_id),
            "stage" => return Value::Str(self.stage.clone()),
            "status" => return Value::Str(self.status.clone()),
            "host" => return text(&self.host),
            "device" => return text(&self.device),
            "version" => return Value::Str(self.version.clone()),
            "git_commit" => return text(&self.git_commit),
            "created" | "created_at" => return Value::Num(self.created_at),
            "metric_rows" => return Value::Num(self.metric_rows as f64),
            "world_size" => {
                return self
                    .world_size
                    .map_or(Value::Null, |n| Value::Num(n as f64))
            }
            "global_batch" => {
                return self
                    .global_batch
                    .map_or(Value::Null, |n| Value::Num(n as f64))
            }
            "tag" | "tags" => return Value::Set(self.tags.clone()),
            "note" => return text(&self.note),
            "archived" => return Value::Str(self.archived.to_string()),
            "run" | "experiment_run" => return Value::Str(self.config_hash.clone()),
            _ => {}
        }
        if let Some(name) = key.strip_prefix("metric.") {
            return self
                .last_metrics
                .get(name)
                .map_or(Value::Null, |m| Value::Num(m.1));
        }
        if let Some(te) = key.strip_prefix("eval.") {
            return self.evals.get(te).map_or(Value::Null, |e| Value::Num(e.0));
        }
        config_value(&self.config, key)
    }
}

/// A dotted path into the config JSON. Array elements are picked by index or, for the stage
/// list, by `name`/`kind`; `hidden_size` also finds the kebab-case `hidden-size`.
pub fn config_value(config: &Json, key: &str) -> Value {
    let mut cur = config;
    for part in key.split('.') {
        let next = match cur {
            Json::Object(map) => map.get(part).or_else(|| map.get(&part.replace('_', "-"))),
            Json::Array(items) => match part.parse::<usize>() {
                Ok(i) => items.get(i),
                Err(_) => items.iter().find(|it| {
                    it.get("name").and_then(Json::as_str) == Some(part)
                        || (it.get("name").is_none()
                            && it.get("kind").and_then(Json::as_str) == Some(part))
                }),
            },
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => return Value::Null,
        }
    }
    json_to_value(cur)
}

fn json_to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Number(n) => n.as_f64().map_or(Value::Null, Value::Num),
        Json::String(s) => Value::Str(s.clone()),
        Json::Bool(b) => Value::Str(b.to_string()),
        other => Value::Str(other.to_string()),
    }
}

/// Every leaf of the config as `path -> value text`, stages keyed by their name or kind (the
/// same paths the filter language accepts).
pub fn flatten_config(config: &Json) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &Json, out: &mut BTreeMap<String, String>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            Json::Object(map) => map.iter().for_each(|(k, v)| walk(&join(k), v, out)),
            Json::Array(items) if items.iter().all(Json::is_object) && !items.is_empty() => {
                for (i, it) in items.iter().enumerate() {
                    let label = it
                        .get("name")
                        .or_else(|| it.get("kind"))
                        .and_then(Json::as_str)
                        .map_or_else(|| i.to_string(), str::to_string);
                    walk(&join(&label), it, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), json_to_value(other).to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", config, &mut out);
    out
}

const RUN_COLUMNS: &str =
    "id, experiment, sweep, parent_id, stage, status, config_json, created_at,
    started_at, ended_at, heartbeat_at, git_commit, git_dirty, version, host, device, message,
    total_steps, note, archived, stage_key, config_hash, world_size, global_batch";

/// Loads runs (all, or those with the given ids, in that order) with their last metrics and evals,
/// all from one snapshot of the database: a sweep writing meanwhile never shows a run with fewer
/// metrics than a previous read did.
pub fn load_runs(db: &Conn, ids: Option<&[String]>) -> Result<Vec<RunView>> {
    db.transaction(Tx::Snapshot, |db| load_runs_now(db, ids))
}

fn run_from(r: &Row, t: f64) -> Result<RunView> {
    let config = r.text(6)?;
    Ok(RunView {
        id: r.text(0)?,
        experiment: r.text(1)?,
        sweep: r.opt_text(2),
        parent_id: r.opt_text(3),
        stage: r.text(4)?,
        status: display_status(&r.text(5)?, r.opt_f64(10), t),
        config: serde_json::from_str(&config).unwrap_or(Json::Null),
        created_at: r.f64(7)?,
        started_at: r.opt_f64(8),
        ended_at: r.opt_f64(9),
        heartbeat_at: r.opt_f64(10),
        git_commit: r.opt_text(11),
        git_dirty: r.opt_i64(12).map(|d| d != 0),
        version: r.text(13)?,
        host: r.opt_text(14),
        device: r.opt_text(15),
        message: r.opt_text(16),
        total_steps: r.opt_i64(17).map(|n| n as u64),
        metric_rows: 0,
        last_metrics: BTreeMap::new(),
        evals: BTreeMap::new(),
        tags: Vec::new(),
        note: r.opt_text(18),
        archived: r.opt_i64(19).unwrap_or(0) != 0,
        stage_key: r.opt_text(20),
        config_hash: r.text(21)?,
        world_size: r.opt_i64(22).map(|n| n as u64),
        global_batch: r.opt_i64(23).map(|n| n as u64),
    })
}

fn load_runs_now(db: &Conn, ids: Option<&[String]>) -> Result<Vec<RunView>> {
    let t = now();
    let sql = match ids {
        None => format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at, id"),
        Some(ids) => format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({})",
            vec!["?"; ids.len()].join(",")
        ),
    };
    let args: Vec<SqlValue> = ids.unwrap_or(&[]).iter().map(SqlValue::from).collect();
    let mut runs = db
        .query(&sql, &args)?
        .iter()
        .map(|r| run_from(r, t))
        .collect::<Result<Vec<_>>>()?;
    if let Some(ids) = ids {
        let order: HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect();
        if let Some(missing) = ids.iter().find(|id| !runs.iter().any(|r| &&r.id == id)) {
            bail!("no run `{missing}` in the registry (see `doge runs list`)");
        }
        runs.sort_by_key(|r| order[r.id.as_str()]);
    }
    attach_metrics_and_evals(db, &mut runs, &args)?;
    Ok(runs)
}

fn attach_metrics_and_evals(db: &Conn, runs: &mut [RunView], ids: &[SqlValue]) -> Result<()> {
    let index: HashMap<String, usize> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();
    let filter = |col: &str| match ids.len() {
        0 => String::new(),
        n => format!("WHERE {col} IN ({})", vec!["?"; n].join(",")),
    };
    // The value at each metric's highest step (the newest row of that step wins). SQLite would
    // return it as a bare column beside max(step); PostgreSQL refuses bare columns, so both join.
    let rows = db.query(
        &format!(
            "SELECT m.run_id, m.name, m.step, m.value FROM metrics m
             JOIN (SELECT run_id, name, max(step) AS step FROM metrics {} GROUP BY run_id, name) last
               ON m.run_id = last.run_id AND m.name = last.name AND m.step = last.step
             ORDER BY m.rowid",
            filter("run_id")
        ),
        ids,
    )?;
    for r in rows {
        if let Some(&i) = index.get(&r.text(0)?) {
            runs[i]
                .last_metrics
                .insert(r.text(1)?, (r.i64(2)? as u64, r.f64(3)?));
        }
    }
    let rows = db.query(
        &format!(
            "SELECT run_id, count(*) FROM metrics {} GROUP BY run_id",
            filter("run_id")
        ),
        ids,
    )?;
    for r in rows {
        if let Some(&i) = index.get(&r.text(0)?) {
            runs[i].metric_rows = r.i64(1)? as u64;
        }
    }
    let rows = db.query(
        &format!(
            "SELECT run_id, task, metric, value, stderr FROM evals {} ORDER BY rowid",
            filter("run_id")
        ),
        ids,
    )?;
    for r in rows {
        if let Some(&i) = index.get(&r.text(0)?) {
            let key = format!("{}.{}", r.text(1)?, r.text(2)?);
            runs[i].evals.insert(key, (r.f64(3)?, r.opt_f64(4)));
        }
    }
    let rows = db.query(
        &format!(
            "SELECT run_id, tag FROM tags {} ORDER BY run_id, tag",
            filter("run_id")
        ),
        ids,
    )?;
    for r in rows {
        if let Some(&i) = index.get(&r.text(0)?) {
            runs[i].tags.push(r.text(1)?);
        }
    }
    Ok(())
}

/// Sorts by a key; `-key` sorts descending. Runs without the key go last either way.
pub fn sort_runs(runs: &mut [RunView], key: &str) {
    let (key, desc) = match key.strip_prefix('-') {
        Some(k) => (k, true),
        None => (key, false),
    };
    runs.sort_by(|a, b| {
        let (va, vb) = (a.get(key), b.get(key));
        match (va == Value::Null, vb == Value::Null) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => {
                let o = va.compare(&vb).unwrap_or(std::cmp::Ordering::Equal);
                if desc {
                    o.reverse()
                } else {
                    o
                }
            }
        }
    });
}

/// Ids of the runs of a sweep, oldest first.
pub fn sweep_ids(db: &Conn, sweep: &str) -> Result<Vec<String>> {
    let ids = db
        .query(
            "SELECT id FROM runs WHERE sweep = ?1 ORDER BY created_at, id",
            &[SqlValue::from(sweep)],
        )?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<Vec<String>>>()?;
    if ids.is_empty() {
        bail!("no runs in sweep `{sweep}` (the `sweep` column of `doge runs list`)");
    }
    Ok(ids)
}

/// The runs an id given on the command line names: the run with exactly that id; else every
/// stage of the experiment run with that id (what `doge exp run` prints), in stage order; else
/// the one run whose id starts with it. Ambiguous prefixes list the candidates.
pub fn resolve_ids(db: &Conn, given: &str) -> Result<Vec<String>> {
    let ids = |sql: &str, arg: String| -> Result<Vec<String>> {
        db.query(sql, &[SqlValue::from(arg.as_str())])?
            .iter()
            .map(|r| r.text(0))
            .collect()
    };
    let exact = ids("SELECT id FROM runs WHERE id = ?1", given.to_string())?;
    if !exact.is_empty() {
        return Ok(exact);
    }
    let stages = ids(
        "SELECT id FROM runs WHERE config_hash = ?1 ORDER BY created_at, id",
        given.to_string(),
    )?;
    if !stages.is_empty() {
        return Ok(stages);
    }
    // A prefix compared as text (LIKE would read `_` as a pattern; its case rules differ).
    let prefixed = ids(
        &format!(
            "SELECT id FROM runs WHERE substr(id, 1, {}) = ?1 ORDER BY created_at, id",
            given.chars().count()
        ),
        given.to_string(),
    )?;
    match prefixed.len() {
        0 => bail!("no run `{given}` in the registry (see `doge runs list`)"),
        1 => Ok(prefixed),
        n => {
            let shown: Vec<&str> = prefixed.iter().take(8).map(String::as_str).collect();
            bail!(
                "`{given}` is the start of {n} run ids ({}{}); give more of one",
                shown.join(", "),
                if n > 8 { ", ..." } else { "" }
            )
        }
    }
}
