//! `doge runs list|show|compare`: the text each prints, built from [`super::query`].

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::Result;

use super::filter;
use super::query::{flatten_config, load_runs, sort_runs, sweep_ids, RunView};
use super::render::{num, render, table, Format};
use super::Registry;

/// What `doge runs list` was asked for.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<usize>,
    pub format: Format,
}

const BASE_COLUMNS: &[&str] = &["id", "experiment", "stage", "status"];

/// The runs matching the query, filtered, sorted and limited.
pub fn select(reg: &Registry, q: &ListQuery) -> Result<(Vec<RunView>, Vec<String>)> {
    let expr = q.filter.as_deref().map(filter::parse).transpose()?;
    let mut runs = load_runs(reg.db(), None)?;
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

fn cell(v: &filter::Value) -> String {
    match v {
        filter::Value::Num(x) => num(*x),
        other => other.to_string(),
    }
}

fn time_text(t: Option<f64>) -> String {
    t.map_or_else(|| "-".into(), |t| format!("{t:.0} (unix s)"))
}

/// `doge runs show ID`.
pub fn show(reg: &Registry, id: &str) -> Result<String> {
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
    writeln!(o, "\nartifacts")?;
    o += &table(
        &strings(&["kind", "path", "step", "size", "sha256"]),
        &query_rows(
            reg,
            "SELECT kind, path, step, size, sha256 FROM artifacts WHERE run_id = ?1 ORDER BY rowid",
            id,
        )?,
    );
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
        None => ids.to_vec(),
    };
    anyhow::ensure!(
        !ids.is_empty(),
        "give run ids or `--sweep NAME` (see `doge runs list`)"
    );
    let runs = load_runs(reg.db(), Some(&ids))?;
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
    Ok(table(&header, &rows))
}
