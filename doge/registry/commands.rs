//! `doge runs list|show|compare`: the text each prints, built from [`super::query`].

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::Result;

use super::filter;
use super::query::{flatten_config, load_runs, resolve_ids, sort_runs, sweep_ids, RunView};
use super::render::{local_time, num, render, table, Format};
use super::Registry;

/// What `doge runs list` was asked for.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<usize>,
    pub format: Format,
    /// Include archived runs (they are hidden unless the filter asks about `archived`).
    pub all: bool,
}

const BASE_COLUMNS: &[&str] = &["id", "experiment", "stage", "status"];

/// The runs matching the query, filtered, sorted and limited.
pub fn select(reg: &Registry, q: &ListQuery) -> Result<(Vec<RunView>, Vec<String>)> {
    let expr = q.filter.as_deref().map(filter::parse).transpose()?;
    let mut runs = load_runs(reg.db(), None)?;
    let mut asked = Vec::new();
    if let Some(e) = &expr {
        e.keys(&mut asked);
    }
    if !q.all && !asked.iter().any(|k| k == "archived") {
        runs.retain(|r| !r.archived);
    }
    if let Some(e) = &expr {
        runs.retain(|r| e.eval(&|k| r.get(k)));
    }
    if let Some(key) = &q.sort {
        sort_runs(&mut runs, key);
    }
    if let Some(n) = q.limit {
        runs.truncate(n);
    }
    // The keys the user asked about become columns, so the list shows why a run matched.
    let mut extra = Vec::new();
    if let Some(e) = &expr {
        e.keys(&mut extra);
    }
    if let Some(k) = &q.sort {
        let k = k.trim_start_matches('-').to_string();
        if !extra.contains(&k) {
            extra.push(k);
        }
    }
    for k in ["metric.loss", "metric.eval_loss"] {
        if !extra.iter().any(|e| e == k) {
            extra.push(k.into());
        }
    }
    extra.retain(|k| !BASE_COLUMNS.contains(&k.as_str()));
    Ok((runs, extra))
}

/// `doge runs list`.
pub fn list(reg: &Registry, q: &ListQuery) -> Result<String> {
    let (runs, extra) = select(reg, q)?;
    if q.format == Format::Json {
        return Ok(list_json(&runs, &extra));
    }
    let mut header: Vec<String> = BASE_COLUMNS.iter().map(|s| s.to_string()).collect();
    header.push("step".into());
    header.extend(extra.iter().cloned());
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let step = r.last_metrics.values().map(|m| m.0).max();
            let mut row = vec![
                r.id.clone(),
                r.experiment.clone(),
                r.stage.clone(),
                r.status.clone(),
                step.map_or_else(String::new, |s| s.to_string()),
            ];
            row.extend(extra.iter().map(|k| cell(&r.get(k))));
            row
        })
        .collect();
    Ok(render(q.format, &header, &rows))
}

/// `--format json`: values as recorded (full precision, integer steps, unix times, tag
/// arrays), for scripts; the table's rounding is for eyes only.
fn list_json(runs: &[RunView], extra: &[String]) -> String {
    use serde_json::{json, Map, Value as Json};
    let value = |v: filter::Value| match v {
        filter::Value::Num(x) => serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number),
        filter::Value::Str(s) => Json::String(s),
        filter::Value::Set(items) => json!(items),
        filter::Value::Null => Json::Null,
    };
    let items: Vec<Json> = runs
        .iter()
        .map(|r| {
            let mut o = Map::new();
            o.insert("id".into(), json!(r.id));
            o.insert("experiment".into(), json!(r.experiment));
            o.insert("sweep".into(), json!(r.sweep));
            o.insert("stage".into(), json!(r.stage));
            o.insert("status".into(), json!(r.status));
            o.insert(
                "step".into(),
                json!(r.last_metrics.values().map(|m| m.0).max()),
            );
            o.insert("created_at".into(), json!(r.created_at));
            o.insert("tags".into(), json!(r.tags));
            for k in extra {
                o.insert(k.clone(), value(r.get(k)));
            }
            Json::Object(o)
        })
        .collect();
    serde_json::to_string_pretty(&items).unwrap_or_default() + "\n"
}

fn cell(v: &filter::Value) -> String {
    match v {
        filter::Value::Num(x) => num(*x),
        other => other.to_string(),
    }
}

fn time_text(t: Option<f64>) -> String {
    t.map_or_else(|| "-".into(), local_time)
}

/// `doge runs show ID`: ID may be a run id, an experiment run id (every stage of it is shown) or
/// a unique prefix of a run id.
pub fn show(reg: &Registry, given: &str) -> Result<String> {
    let ids = resolve_ids(reg.db(), given)?;
    if ids.len() == 1 {
        return show_one(reg, &ids[0]);
    }
    let mut o = format!(
        "experiment run {given}: {} stages ({})\n",
        ids.len(),
        ids.join(", ")
    );
    for id in &ids {
        o += &format!("\n=== {id}\n");
        o += &show_one(reg, id)?;
    }
    Ok(o)
}

fn show_one(reg: &Registry, id: &str) -> Result<String> {
    let runs = load_runs(reg.db(), Some(&[id.to_string()]))?;
    let r = &runs[0];
    let mut o = String::new();
    writeln!(o, "run         {}", r.id)?;
    writeln!(o, "experiment  {}", r.experiment)?;
    writeln!(o, "sweep       {}", r.sweep.as_deref().unwrap_or("-"))?;
    writeln!(o, "stage       {}", r.stage)?;
    writeln!(o, "status      {}", r.status)?;
    if let Some(m) = &r.message {
        writeln!(o, "message     {m}")?;
    }
    if !r.tags.is_empty() {
        writeln!(o, "tags        {}", r.tags.join(", "))?;
    }
    if let Some(n) = &r.note {
        writeln!(o, "note        {n}")?;
    }
    if r.archived {
        writeln!(o, "archived    yes (hidden from `runs list` without --all)")?;
    }
    writeln!(o, "created     {}", time_text(Some(r.created_at)))?;
    writeln!(o, "started     {}", time_text(r.started_at))?;
    writeln!(o, "ended       {}", time_text(r.ended_at))?;
    writeln!(o, "heartbeat   {}", time_text(r.heartbeat_at))?;
    let dirty = if r.git_dirty == Some(true) {
        " (dirty)"
    } else {
        ""
    };
    writeln!(
        o,
        "git         {}{dirty}",
        r.git_commit.as_deref().unwrap_or("-")
    )?;
    writeln!(o, "version     {}", r.version)?;
    writeln!(o, "host        {}", r.host.as_deref().unwrap_or("-"))?;
    writeln!(o, "device      {}", r.device.as_deref().unwrap_or("-"))?;
    if let (Some(w), Some(b)) = (r.world_size, r.global_batch) {
        let ranks = if w == 1 { "rank" } else { "ranks" };
        writeln!(o, "parallel    {w} {ranks}, global batch {b} rows per step")?;
    }
    writeln!(o, "lineage     {}", lineage(reg, r)?.join(" -> "))?;
    let layout = r.config["model"]["layout"]
        .as_str()
        .and_then(crate::model::Layout::from_name)
        .unwrap_or_default();
    writeln!(o, "layout      {layout}")?;

    writeln!(o, "\nlast metrics")?;
    let rows: Vec<Vec<String>> = r
        .last_metrics
        .iter()
        .map(|(n, (s, v))| vec![n.clone(), s.to_string(), num(*v)])
        .collect();
    o += &table(&strings(&["metric", "step", "value"]), &rows);

    writeln!(o, "\nevals")?;
    o += &table(
        &strings(&["checkpoint", "task", "metric", "value", "stderr", "n", "fewshot"]),
        &query_rows(
            reg,
            "SELECT checkpoint, task, metric, value, stderr, n, fewshot FROM evals WHERE run_id = ?1 ORDER BY rowid",
            id,
        )?,
    );
    writeln!(o, "\nartifacts (sha256 of the weights, model.safetensors)")?;
    o += &table(
        &strings(&["kind", "path", "step", "size", "sha256"]),
        &query_rows(
            reg,
            "SELECT kind, path, step, size, sha256 FROM artifacts
             WHERE run_id = ?1 AND deleted_at IS NULL ORDER BY rowid",
            id,
        )?,
    );
    let deleted = reg.db().query_i64(
        "SELECT count(*) FROM artifacts WHERE run_id = ?1 AND deleted_at IS NOT NULL",
        &[super::db::Value::from(id)],
    )?;
    if deleted > 0 {
        writeln!(
            o,
            "({deleted} older checkpoint{} deleted by keep-last)",
            if deleted == 1 { "" } else { "s" }
        )?;
    }
    writeln!(o, "\nconfig")?;
    writeln!(o, "{}", serde_json::to_string_pretty(&r.config)?)?;
    Ok(o)
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

/// Every column of every row as text (NULL as `-`).
fn query_rows(reg: &Registry, sql: &str, id: &str) -> Result<Vec<Vec<String>>> {
    use super::db::Value;
    Ok(reg
        .db()
        .query(sql, &[Value::from(id)])?
        .into_iter()
        .map(|r| {
            r.0.into_iter()
                .map(|v| match v {
                    Value::Null => "-".into(),
                    Value::Int(x) => x.to_string(),
                    Value::Real(x) => num(x),
                    Value::Text(t) => t,
                })
                .collect()
        })
        .collect())
}

/// The chain of runs from the first ancestor to this run's children (`pretrain -> sft -> dpo`),
/// the run itself in brackets.
fn lineage(reg: &Registry, r: &RunView) -> Result<Vec<String>> {
    use super::db::Value;
    let db = reg.db();
    let first_text = |sql: &str, arg: &str| -> Result<Option<String>> {
        Ok(db
            .query(sql, &[Value::from(arg)])?
            .first()
            .and_then(|row| row.opt_text(0)))
    };
    let mut chain = vec![format!("[{}]", r.id)];
    let mut cur = r.parent_id.clone();
    // Bounded walk: a corrupted parent cycle must not hang `show`.
    for _ in 0..64 {
        let Some(p) = cur else { break };
        cur = first_text("SELECT parent_id FROM runs WHERE id = ?1", &p)?;
        chain.insert(0, p);
    }
    let mut id = r.id.clone();
    for _ in 0..64 {
        let child = first_text(
            "SELECT id FROM runs WHERE parent_id = ?1 ORDER BY created_at LIMIT 1",
            &id,
        )?;
        let Some(c) = child else { break };
        chain.push(c.clone());
        id = c;
    }
    Ok(chain)
}

/// `doge runs compare`: the ids given, or every run of `sweep`.
pub fn compare(reg: &Registry, ids: &[String], sweep: Option<&str>) -> Result<String> {
    let ids = match sweep {
        Some(s) => sweep_ids(reg.db(), s)?,
        None => resolve_all(reg, ids)?,
    };
    anyhow::ensure!(
        !ids.is_empty(),
        "give run ids or `--sweep NAME` (see `doge runs list`)"
    );
    let runs = load_runs(reg.db(), Some(&ids))?;
    let (header, rows) = compare_rows(&runs);
    Ok(table(&header, &rows))
}

/// What runs vary in, one column per run: the config keys whose values differ, then status,
/// last metrics and evals (± stderr). `runs compare` prints it; the report renders it.
pub fn compare_rows(runs: &[RunView]) -> (Vec<String>, Vec<Vec<String>>) {
    let configs: Vec<_> = runs.iter().map(|r| flatten_config(&r.config)).collect();
    let mut header = vec!["key".to_string()];
    header.extend(runs.iter().map(|r| r.id.clone()));
    let mut rows = Vec::new();

    // Only the config keys whose values differ: what the runs vary in.
    let keys: BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    for k in keys {
        let vals: Vec<String> = configs
            .iter()
            .map(|c| c.get(k).cloned().unwrap_or_else(|| "-".into()))
            .collect();
        if vals.iter().any(|v| v != &vals[0]) {
            rows.push(std::iter::once(k.clone()).chain(vals).collect());
        }
    }
    let push_all = |rows: &mut Vec<Vec<String>>,
                    prefix: &str,
                    names: BTreeSet<&String>,
                    f: &dyn Fn(&RunView, &str) -> String| {
        for n in names {
            let mut row = vec![format!("{prefix}.{n}")];
            row.extend(runs.iter().map(|r| f(r, n)));
            rows.push(row);
        }
    };
    rows.push(
        vec!["status".into()]
            .into_iter()
            .chain(runs.iter().map(|r| r.status.clone()))
            .collect(),
    );
    let metric_names: BTreeSet<&String> = runs.iter().flat_map(|r| r.last_metrics.keys()).collect();
    push_all(&mut rows, "metric", metric_names, &|r, n| {
        r.last_metrics.get(n).map_or("-".into(), |m| num(m.1))
    });
    let eval_names: BTreeSet<&String> = runs.iter().flat_map(|r| r.evals.keys()).collect();
    push_all(&mut rows, "eval", eval_names, &|r, n| {
        r.evals.get(n).map_or("-".into(), |e| match e.1 {
            Some(se) => format!("{} ±{}", num(e.0), num(se)),
            None => num(e.0),
        })
    });
    (header, rows)
}

/// Each id as [`resolve_ids`] reads it (an experiment run id brings all its stages), in order.
pub fn resolve_all(reg: &Registry, given: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for g in given {
        for id in resolve_ids(reg.db(), g)? {
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    Ok(out)
}
