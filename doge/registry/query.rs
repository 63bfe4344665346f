//! Reading runs back: one [`RunView`] per run with its config, last metrics and evals, and the
//! key lookup the filter language, `--sort` and `compare` share.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Result};
use rusqlite::{params_from_iter, Connection};
use serde_json::Value as Json;

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
    /// Last value (highest step) of each metric.
    pub last_metrics: BTreeMap<String, (u64, f64)>,
    /// `task.metric` -> (value, stderr); the newest eval row wins.
    pub evals: BTreeMap<String, (f64, Option<f64>)>,
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
    started_at, ended_at, heartbeat_at, git_commit, git_dirty, version, host, device, message";

/// Loads runs (all, or those with the given ids, in that order) with their last metrics and evals.
pub fn load_runs(conn: &Connection, ids: Option<&[String]>) -> Result<Vec<RunView>> {
    let t = now();
    let mut runs = Vec::new();
    let sql = match ids {
        None => format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at, id"),
        Some(ids) => format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({})",
            vec!["?"; ids.len()].join(",")
        ),
    };
    let mut stmt = conn.prepare(&sql)?;
    let args = ids.unwrap_or(&[]);
    let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
        let config: String = r.get(6)?;
        Ok(RunView {
            id: r.get(0)?,
            experiment: r.get(1)?,
            sweep: r.get(2)?,
            parent_id: r.get(3)?,
            stage: r.get(4)?,
            status: display_status(&r.get::<_, String>(5)?, r.get(10)?, t),
            config: serde_json::from_str(&config).unwrap_or(Json::Null),
            created_at: r.get(7)?,
            started_at: r.get(8)?,
            ended_at: r.get(9)?,
            heartbeat_at: r.get(10)?,
            git_commit: r.get(11)?,
            git_dirty: r.get(12)?,
            version: r.get(13)?,
            host: r.get(14)?,
            device: r.get(15)?,
            message: r.get(16)?,
            last_metrics: BTreeMap::new(),
            evals: BTreeMap::new(),
        })
    })?;
    for r in rows {
        runs.push(r?);
    }
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
    attach_metrics_and_evals(conn, &mut runs, ids)?;
    Ok(runs)
}

fn attach_metrics_and_evals(
    conn: &Connection,
    runs: &mut [RunView],
    ids: Option<&[String]>,
) -> Result<()> {
    let index: HashMap<String, usize> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();
    let filter = match ids {
        None => String::new(),
        Some(ids) => format!("WHERE run_id IN ({})", vec!["?"; ids.len()].join(",")),
    };
    let args = ids.unwrap_or(&[]);
    // SQLite returns the bare columns of the row holding max(): the last step's value.
    let mut stmt = conn.prepare(&format!(
        "SELECT run_id, name, max(step), value FROM metrics {filter} GROUP BY run_id, name"
    ))?;
    let mut rows = stmt.query(params_from_iter(args.iter()))?;
    while let Some(r) = rows.next()? {
        if let Some(&i) = index.get(&r.get::<_, String>(0)?) {
            let step: i64 = r.get(2)?;
            runs[i]
                .last_metrics
                .insert(r.get(1)?, (step as u64, r.get(3)?));
        }
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT run_id, task, metric, value, stderr FROM evals {filter} ORDER BY rowid"
    ))?;
    let mut rows = stmt.query(params_from_iter(args.iter()))?;
    while let Some(r) = rows.next()? {
        if let Some(&i) = index.get(&r.get::<_, String>(0)?) {
            let key = format!("{}.{}", r.get::<_, String>(1)?, r.get::<_, String>(2)?);
            runs[i].evals.insert(key, (r.get(3)?, r.get(4)?));
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
pub fn sweep_ids(conn: &Connection, sweep: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT id FROM runs WHERE sweep = ?1 ORDER BY created_at, id")?;
    let ids = stmt
        .query_map([sweep], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    if ids.is_empty() {
        bail!("no runs in sweep `{sweep}` (the `sweep` column of `doge runs list`)");
    }
    Ok(ids)
}
