//! The dashboard's JSON: what each `/api/...` endpoint answers. Runs are read with the registry's
//! own query functions (the ones `doge runs list/show/compare` use), so the filter language,
//! the sort keys and the id prefixes mean the same here as on the command line.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::http::StatusCode;
use serde_json::{json, Map, Value as Json};

use crate::registry::commands::{self, ListQuery};
use crate::registry::db::Value as SqlValue;
use crate::registry::filter::{self, ParseError};
use crate::registry::query::{self, display_status, flatten_config, load_runs, RunView};
use crate::registry::render::{local_time, Format};
use crate::registry::{now, Registry};

/// An error answer: a status and a JSON body `{"error": message, ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// More fields of the body (the filter's error column, ambiguous ids' candidates).
    pub extra: Map<String, Json>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: String) -> Self {
        ApiError {
            status,
            message,
            extra: Map::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message.into())
    }

    pub fn internal(e: anyhow::Error) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }

    fn with(mut self, key: &str, v: Json) -> Self {
        self.extra.insert(key.into(), v);
        self
    }

    pub fn body(&self) -> Json {
        let mut o = self.extra.clone();
        o.insert("error".into(), json!(self.message));
        o.insert("status".into(), json!(self.status.as_u16()));
        Json::Object(o)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(e)
    }
}

type Params = HashMap<String, String>;
type Answer = Result<Json, ApiError>;

/// A non-empty query parameter.
fn param<'a>(p: &'a Params, key: &str) -> Option<&'a str> {
    p.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn number(p: &Params, key: &str, default: usize) -> Result<usize, ApiError> {
    match param(p, key) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| {
            ApiError::bad_request(format!("`{key}` must be a whole number, not `{s}`"))
        }),
    }
}

/// A comma-separated list parameter, without empty items or repeats.
fn list(p: &Params, key: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in param(p, key).unwrap_or("").split(',') {
        let s = s.trim();
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

/// The most runs one request may name (ids=...).
const MAX_IDS: usize = 64;

fn ids_param(p: &Params) -> Result<Vec<String>, ApiError> {
    let ids = list(p, "ids");
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "give run ids: `ids=RUN,RUN` (the first column of the runs table)",
        ));
    }
    if ids.len() > MAX_IDS {
        return Err(ApiError::bad_request(format!(
            "{} ids asked for; at most {MAX_IDS} at once",
            ids.len()
        )));
    }
    Ok(ids)
}

fn opt_time(t: Option<f64>) -> Json {
    t.map_or(Json::Null, |t| json!(local_time(t)))
}

fn filter_value(v: filter::Value) -> Json {
    match v {
        filter::Value::Num(x) => json!(x),
        filter::Value::Str(s) => json!(s),
        filter::Value::Set(items) => json!(items),
        filter::Value::Null => Json::Null,
    }
}

/// The columns the table always shows (so a filter key naming one adds no column).
const FIXED_COLUMNS: &[&str] = &[
    "id",
    "experiment",
    "stage",
    "status",
    "created",
    "created_at",
    "metric.loss",
    "metric.eval_loss",
];

/// One run as a table row and a curve legend need it.
fn summary(r: &RunView, columns: &[String]) -> Json {
    let metrics: Map<String, Json> = r
        .last_metrics
        .iter()
        .map(|(n, (s, v))| (n.clone(), json!([s, v])))
        .collect();
    let evals: Map<String, Json> = r
        .evals
        .iter()
        .map(|(k, (v, se))| (k.clone(), json!([v, se])))
        .collect();
    let values: Map<String, Json> = columns
        .iter()
        .map(|k| (k.clone(), filter_value(r.get(k))))
        .collect();
    json!({
        "id": r.id,
        "experiment": r.experiment,
        "sweep": r.sweep,
        "parent_id": r.parent_id,
        "stage": r.stage,
        "status": r.status,
        "step": r.last_metrics.values().map(|m| m.0).max(),
        "total_steps": r.total_steps,
        "world_size": r.world_size,
        "global_batch": r.global_batch,
        "metric_rows": r.metric_rows,
        "created_at": r.created_at,
        "created": local_time(r.created_at),
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "heartbeat_at": r.heartbeat_at,
        "host": r.host,
        "device": r.device,
        "tags": r.tags,
        "note": r.note,
        "archived": r.archived,
        "metrics": metrics,
        "evals": evals,
        "values": values,
    })
}

/// `GET /api/runs?where=EXPR&sort=KEY&limit=N&offset=N&all=1`: one page of the runs matching
/// the filter, sorted (default: newest first), with the total count. A filter that does not
/// parse is a 400 whose `error` is the parser's message (column and caret included).
pub fn runs(reg: &Registry, p: &Params) -> Answer {
    let limit = number(p, "limit", 50)?.clamp(1, 1000);
    let offset = number(p, "offset", 0)?;
    let all = matches!(param(p, "all"), Some("1" | "true" | "yes"));
    let sort = param(p, "sort").unwrap_or("-created").to_string();
    let q = ListQuery {
        filter: param(p, "where").map(str::to_string),
        sort: Some(sort.clone()),
        limit: None,
        format: Format::Json,
        all,
    };
    let (matched, extra) =
        commands::select(reg, &q).map_err(|e| match e.downcast_ref::<ParseError>() {
            Some(pe) => ApiError::bad_request(pe.to_string())
                .with("column", json!(pe.column))
                .with("expected", json!(pe.expected))
                .with("found", json!(pe.found)),
            None => ApiError::internal(e),
        })?;
    let columns: Vec<String> = extra
        .into_iter()
        .filter(|k| !FIXED_COLUMNS.contains(&k.as_str()))
        .collect();
    let page: Vec<&RunView> = matched.iter().skip(offset).take(limit).collect();
    let mut names = BTreeSet::new();
    for r in &page {
        names.extend(r.last_metrics.keys().cloned());
    }
    Ok(json!({
        "total": matched.len(),
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "columns": columns,
        "metric_names": names,
        "runs": page.iter().map(|r| summary(r, &columns)).collect::<Vec<_>>(),
        "now": now(),
    }))
}

fn node(id: String, stage: String, status: String, hb: Option<f64>, t: f64) -> Json {
    json!({"id": id, "stage": stage, "status": display_status(&status, hb, t)})
}

/// The run's ancestors (oldest first) and every descendant (breadth first, with its parent).
fn lineage(reg: &Registry, r: &RunView) -> anyhow::Result<Json> {
    let db = reg.db();
    let t = now();
    let mut ancestors = Vec::new();
    let mut cur = r.parent_id.clone();
    // Bounded walks: a corrupted parent cycle must not hang the request.
    for _ in 0..64 {
        let Some(p) = cur else { break };
        let rows = db.query(
            "SELECT id, parent_id, stage, status, heartbeat_at FROM runs WHERE id = ?1",
            &[SqlValue::from(p.as_str())],
        )?;
        match rows.first() {
            Some(row) => {
                cur = row.opt_text(1);
                ancestors.insert(
                    0,
                    node(row.text(0)?, row.text(2)?, row.text(3)?, row.opt_f64(4), t),
                );
            }
            None => {
                // The parent was deleted: keep its id, say so.
                ancestors.insert(0, json!({"id": p, "stage": "?", "status": "deleted"}));
                cur = None;
            }
        }
    }
    let mut descendants = Vec::new();
    let mut queue = vec![r.id.clone()];
    let mut seen: BTreeSet<String> = BTreeSet::from([r.id.clone()]);
    while let Some(parent) = queue.pop() {
        if descendants.len() >= 500 {
            break;
        }
        let rows = db.query(
            "SELECT id, stage, status, heartbeat_at FROM runs WHERE parent_id = ?1 ORDER BY created_at, id",
            &[SqlValue::from(parent.as_str())],
        )?;
        for row in rows {
            let id = row.text(0)?;
            if !seen.insert(id.clone()) {
                continue;
            }
            let mut n = node(id.clone(), row.text(1)?, row.text(2)?, row.opt_f64(3), t);
            n["parent_id"] = json!(parent);
            descendants.push(n);
            queue.insert(0, id);
        }
    }
    Ok(json!({"ancestors": ancestors, "descendants": descendants}))
}

/// `GET /api/runs/ID`: one run in full: config, times, host, device, git, lineage, every eval row
/// and the artifacts kept. ID may be a unique prefix; unknown ids are a 404, ids naming several
/// runs (an experiment run id, an ambiguous prefix) a 409 listing them.
pub fn run_detail(reg: &Registry, given: &str) -> Answer {
    let ids =
        query::resolve_ids(reg.db(), given).map_err(|e| ApiError::not_found(e.to_string()))?;
    if ids.len() != 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("`{given}` names {} runs; pick one", ids.len()),
        )
        .with("candidates", json!(ids)));
    }
    let runs = load_runs(reg.db(), Some(&ids))?;
    let r = &runs[0];
    let id = SqlValue::from(r.id.as_str());
    let evals: Vec<Json> = reg
        .db()
        .query(
            "SELECT checkpoint, task, metric, value, stderr, n, fewshot FROM evals WHERE run_id = ?1 ORDER BY rowid",
            std::slice::from_ref(&id),
        )?
        .iter()
        .map(|row| {
            json!({
                "checkpoint": row.opt_text(0),
                "task": row.opt_text(1),
                "metric": row.opt_text(2),
                "value": row.opt_f64(3),
                "stderr": row.opt_f64(4),
                "n": row.opt_i64(5),
                "fewshot": row.opt_i64(6),
            })
        })
        .collect();
    let artifacts: Vec<Json> = reg
        .db()
        .query(
            "SELECT kind, path, step, size, sha256, created_at FROM artifacts
             WHERE run_id = ?1 AND deleted_at IS NULL ORDER BY rowid",
            std::slice::from_ref(&id),
        )?
        .iter()
        .map(|row| {
            json!({
                "kind": row.opt_text(0),
                "path": row.opt_text(1),
                "step": row.opt_i64(2),
                "size": row.opt_i64(3),
                "sha256": row.opt_text(4),
                "created": opt_time(row.opt_f64(5)),
            })
        })
        .collect();
    let mut run = summary(r, &[]);
    let extra = json!({
        "message": r.message,
        "version": r.version,
        "git_commit": r.git_commit,
        "git_dirty": r.git_dirty,
        "config_hash": r.config_hash,
        "stage_key": r.stage_key,
        "config": r.config,
        "started": opt_time(r.started_at),
        "ended": opt_time(r.ended_at),
        "heartbeat": opt_time(r.heartbeat_at),
    });
    if let (Json::Object(run), Json::Object(extra)) = (&mut run, extra) {
        run.extend(extra);
    }
    Ok(json!({
        "run": run,
        "lineage": lineage(reg, r)?,
        "evals": evals,
        "artifacts": artifacts,
        "now": now(),
    }))
}

/// A curve's points thinned to about `max` by keeping, in each of `max / 2` equal slices, the
/// lowest and the highest value (spikes survive), plus the last point.
fn thin(points: Vec<(i64, f64)>, max: usize) -> Vec<(i64, f64)> {
    if points.len() <= max {
        return points;
    }
    let n = points.len();
    let buckets = (max / 2).max(1);
    let mut out = Vec::with_capacity(max + 1);
    for b in 0..buckets {
        let (lo, hi) = (
            b * n / buckets,
            ((b + 1) * n / buckets).max(b * n / buckets + 1),
        );
        let slice = &points[lo..hi.min(n)];
        let by = |f: fn(f64, f64) -> bool| {
            slice
                .iter()
                .enumerate()
                .filter(|(_, p)| p.1.is_finite())
                .fold(None, |best: Option<(usize, f64)>, (i, p)| match best {
                    Some((_, v)) if !f(p.1, v) => best,
                    _ => Some((i, p.1)),
                })
                .map(|(i, _)| i)
        };
        let (a, b) = match (by(|x, v| x < v), by(|x, v| x > v)) {
            (Some(a), Some(b)) => (a.min(b), a.max(b)),
            _ => (0, 0),
        };
        out.push(slice[a]);
        if b != a {
            out.push(slice[b]);
        }
    }
    if out.last() != points.last() {
        out.push(points[n - 1]);
    }
    out
}

/// `GET /api/metrics?ids=A,B&names=loss,lr&after_step=N&after=A:N,B:loss:M&max_points=2000`:
/// each run's curves. `names` defaults to every metric the runs logged. `after_step` (all runs),
/// `after` (per run, or per run and metric) return only the points past that step, for cheap
/// polling; `last_step` is
/// the series' highest step in the registry (below what a client holds: the run was resumed
/// and rewound, fetch it again). `runs` gives each run's status, so a client knows when to stop.
pub fn metrics(reg: &Registry, p: &Params) -> Answer {
    let ids = ids_param(p)?;
    let names = list(p, "names");
    let max_points = number(p, "max_points", 2000)?.clamp(10, 1_000_000);
    let parse_step = |s: &str, what: &str| {
        s.trim().parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("`{what}` must be a step number, not `{s}`"))
        })
    };
    let after_all = param(p, "after_step")
        .map(|s| parse_step(s, "after_step"))
        .transpose()?;
    // RUN:STEP (every curve of the run) or RUN:NAME:STEP (one curve: an eval curve logged
    // after the train step's loss must not be skipped).
    let mut after: HashMap<(String, Option<String>), i64> = HashMap::new();
    for item in list(p, "after") {
        let (head, step) = item.rsplit_once(':').ok_or_else(|| {
            ApiError::bad_request(format!(
                "`after` takes RUN:STEP or RUN:NAME:STEP items, not `{item}`"
            ))
        })?;
        let key = match head.split_once(':') {
            Some((run, name)) => (run.to_string(), Some(name.to_string())),
            None => (head.to_string(), None),
        };
        after.insert(key, parse_step(step, "after")?);
    }
    let db = reg.db();
    let t = now();
    let marks = vec!["?"; ids.len()].join(",");
    let args: Vec<SqlValue> = ids.iter().map(SqlValue::from).collect();
    let mut status = Map::new();
    for row in db.query(
        &format!("SELECT id, status, heartbeat_at FROM runs WHERE id IN ({marks})"),
        &args,
    )? {
        status.insert(
            row.text(0)?,
            json!(display_status(&row.text(1)?, row.opt_f64(2), t)),
        );
    }
    if let Some(missing) = ids.iter().find(|id| !status.contains_key(id.as_str())) {
        return Err(
            ApiError::not_found(format!("no run `{missing}` in the registry"))
                .with("missing", json!(missing)),
        );
    }
    let mut series = Vec::new();
    let mut all_names = BTreeSet::new();
    for id in &ids {
        let run_names: Vec<String> = if names.is_empty() {
            db.query(
                "SELECT DISTINCT name FROM metrics WHERE run_id = ?1 ORDER BY name",
                &[SqlValue::from(id)],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect::<anyhow::Result<_>>()?
        } else {
            names.clone()
        };
        for name in run_names {
            let from = after
                .get(&(id.clone(), Some(name.clone())))
                .or_else(|| after.get(&(id.clone(), None)))
                .copied()
                .or(after_all)
                .unwrap_or(i64::MIN);
            let rows = db.query(
                "SELECT step, value FROM metrics WHERE run_id = ?1 AND name = ?2 AND step > ?3
                 ORDER BY step, rowid",
                &[
                    SqlValue::from(id),
                    SqlValue::from(name.as_str()),
                    SqlValue::Int(from),
                ],
            )?;
            // One point per step: the newest row of a step wins, as in the runs table.
            let mut points: Vec<(i64, f64)> = Vec::with_capacity(rows.len());
            for r in &rows {
                let (s, v) = (r.i64(0)?, r.opt_f64(1).unwrap_or(f64::NAN));
                match points.last_mut() {
                    Some(last) if last.0 == s => last.1 = v,
                    _ => points.push((s, v)),
                }
            }
            let last_step = match points.last() {
                Some(p) => Some(p.0),
                None => db
                    .query(
                        "SELECT max(step) FROM metrics WHERE run_id = ?1 AND name = ?2",
                        &[SqlValue::from(id), SqlValue::from(name.as_str())],
                    )?
                    .first()
                    .and_then(|r| r.opt_i64(0)),
            };
            if last_step.is_none() && !names.is_empty() {
                continue; // asked for a metric this run never logged
            }
            let n = points.len();
            let points: Vec<Json> = thin(points, max_points)
                .into_iter()
                .map(|(s, v)| json!([s, v]))
                .collect();
            all_names.insert(name.clone());
            series.push(json!({
                "run": id,
                "name": name,
                "points": points,
                "rows": n,
                "last_step": last_step,
            }));
        }
    }
    Ok(json!({"runs": status, "names": all_names, "series": series, "now": t}))
}

/// `GET /api/compare?ids=A,B,C`: the runs side by side: the config keys whose values differ (as
/// `doge runs compare` lists them), each run's last metrics and eval scores with stderr.
pub fn compare(reg: &Registry, p: &Params) -> Answer {
    let given = ids_param(p)?;
    let ids = commands::resolve_all(reg, &given).map_err(|e| ApiError::not_found(e.to_string()))?;
    let runs = load_runs(reg.db(), Some(&ids))?;
    let configs: Vec<BTreeMap<String, String>> =
        runs.iter().map(|r| flatten_config(&r.config)).collect();
    let keys: BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    let mut diff = Vec::new();
    let mut same = 0usize;
    for k in keys {
        let vals: Vec<Option<&String>> = configs.iter().map(|c| c.get(k)).collect();
        if vals.iter().all(|v| *v == vals[0]) {
            same += 1;
        } else {
            diff.push(json!({"key": k, "values": vals}));
        }
    }
    let metric_names: BTreeSet<&String> = runs.iter().flat_map(|r| r.last_metrics.keys()).collect();
    let metrics: Vec<Json> = metric_names
        .iter()
        .map(|n| {
            let vals: Vec<Json> = runs
                .iter()
                .map(|r| {
                    r.last_metrics
                        .get(*n)
                        .map_or(Json::Null, |m| json!([m.0, m.1]))
                })
                .collect();
            json!({"name": n, "values": vals})
        })
        .collect();
    let eval_keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.evals.keys()).collect();
    let evals: Vec<Json> = eval_keys
        .iter()
        .map(|k| {
            let vals: Vec<Json> = runs
                .iter()
                .map(|r| r.evals.get(*k).map_or(Json::Null, |e| json!([e.0, e.1])))
                .collect();
            json!({"key": k, "values": vals})
        })
        .collect();
    Ok(json!({
        "ids": ids,
        "runs": runs.iter().map(|r| summary(r, &[])).collect::<Vec<_>>(),
        "config_diff": diff,
        "identical_keys": same,
        "metrics": metrics,
        "evals": evals,
    }))
}

/// `GET /api/info`: where the registry is, this doge's version, when a run counts as stale.
pub fn info(reg: &Registry, location: &str) -> Answer {
    let runs = reg.db().query_i64("SELECT count(*) FROM runs", &[])?;
    Ok(json!({
        "registry": location,
        "version": env!("CARGO_PKG_VERSION"),
        "runs": runs,
        "stale_after_s": query::STALE_AFTER_S,
        "now": now(),
    }))
}

#[cfg(test)]
mod tests {
    use super::thin;

    #[test]
    fn thinning_keeps_extremes_and_the_last_point() {
        let pts: Vec<(i64, f64)> = (0..10_000)
            .map(|i| (i, if i == 5_000 { 99.0 } else { (i % 7) as f64 }))
            .collect();
        let out = thin(pts.clone(), 200);
        assert!(out.len() <= 202, "{}", out.len());
        assert!(out.contains(&(5_000, 99.0)), "the spike survives");
        assert_eq!(out.last(), pts.last());
        assert!(
            out.windows(2).all(|w| w[0].0 < w[1].0),
            "steps stay in order"
        );
        assert_eq!(thin(pts[..50].to_vec(), 200).len(), 50);
    }
}
