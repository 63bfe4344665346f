//! `doge report`: Markdown and self-contained HTML with run tables, loss/lr curves, eval bars and
//! a leaderboard beside the published Doge numbers.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::plot::{bar_chart, color_hex, line_chart, Bars, Series};
use super::query::{load_runs, sweep_ids, RunView};
use super::render::num;
use super::Registry;

/// Leaderboard columns: eval task names as the registry records them.
const TASKS: &[&str] = &[
    "mmlu",
    "triviaqa",
    "arc",
    "piqa",
    "hellaswag",
    "openbookqa",
    "winogrande",
];

/// Published base-model scores (%), small-doge README @f1468ea (spec section 8.2), in `TASKS` order.
const PUBLISHED: &[(&str, [f64; 7])] = &[
    (
        "Doge-20M (published)",
        [25.4, 0.03, 29.8, 58.4, 27.3, 25.6, 50.2],
    ),
    (
        "Doge-60M (published)",
        [26.4, 0.2, 37.9, 61.4, 31.5, 28.0, 50.8],
    ),
    (
        "Doge-160M (published)",
        [29.2, 4.8, 44.4, 70.1, 43.4, 34.4, 52.2],
    ),
    (
        "Doge-320M (published)",
        [33.8, 9.4, 52.1, 73.9, 52.7, 37.9, 55.0],
    ),
];

/// The files a report wrote.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub html: PathBuf,
    /// Every chart file: `<stem>.svg` and `<stem>.png` of each chart.
    pub charts: Vec<PathBuf>,
    /// The charts drawn, one name (file stem) per chart: `loss`, `eval_loss`, `lr`, `evals`.
    pub chart_names: Vec<String>,
}

/// Writes the report of the given runs (or a sweep's, or every run) into `out`.
pub fn write_report(
    reg: &Registry,
    ids: &[String],
    sweep: Option<&str>,
    out: &Path,
) -> Result<ReportFiles> {
    let ids = match sweep {
        Some(s) => Some(sweep_ids(reg.db(), s)?),
        None if ids.is_empty() => None,
        None => Some(ids.to_vec()),
    };
    let runs = load_runs(reg.db(), ids.as_deref())?;
    anyhow::ensure!(!runs.is_empty(), "the registry has no runs to report on");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;

    let mut charts = Vec::new();
    let mut sections = Vec::new(); // (title, stem)
                                   // Each run's colour is its index in `runs` (the runs table's order), in every chart.
    for (name, title) in [
        ("loss", "training loss"),
        ("eval_loss", "eval loss"),
        ("lr", "learning rate"),
    ] {
        let mut series = Vec::new();
        for (i, r) in runs.iter().enumerate() {
            let points = reg.metric(&r.id, name)?;
            if !points.is_empty() {
                series.push(Series {
                    run: i,
                    label: r.id.clone(),
                    points,
                });
            }
        }
        if series.is_empty() {
            continue;
        }
        line_chart(out, name, &format!("{title} by step"), name, &series)?;
        sections.push((title.to_string(), name.to_string()));
    }
    let eval_keys: Vec<String> = {
        let mut k: Vec<String> = runs.iter().flat_map(|r| r.evals.keys().cloned()).collect();
        k.sort();
        k.dedup();
        k
    };
    if !eval_keys.is_empty() {
        // Only runs with evals get bars and a legend row; colours stay those of the line charts.
        let bars: Vec<Bars> = runs
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.evals.is_empty())
            .map(|(i, r)| Bars {
                run: i,
                label: r.id.clone(),
                values: eval_keys.iter().map(|k| r.evals.get(k).copied()).collect(),
            })
            .collect();
        bar_chart(
            out,
            "evals",
            "eval scores (± stderr)",
            "score",
            &eval_keys,
            &bars,
        )?;
        sections.push(("eval scores".into(), "evals".into()));
    }
    for (_, stem) in &sections {
        charts.push(out.join(format!("{stem}.svg")));
        charts.push(out.join(format!("{stem}.png")));
    }

    let runs_table = runs_table(&runs);
    let board = leaderboard(&runs);
    let comparison = (runs.len() > 1).then(|| super::commands::compare_rows(&runs));
    let title = match sweep {
        Some(s) => format!("Doge report: sweep {s}"),
        None => format!("Doge report: {} runs", runs.len()),
    };

    let markdown = out.join("report.md");
    std::fs::write(
        &markdown,
        markdown_text(&title, &runs_table, &board, comparison.as_ref(), &sections),
    )
    .with_context(|| format!("writing {}", markdown.display()))?;
    let html = out.join("report.html");
    std::fs::write(
        &html,
        html_text(
            out,
            &title,
            &runs_table,
            &board,
            comparison.as_ref(),
            &sections,
        )?,
    )
    .with_context(|| format!("writing {}", html.display()))?;
    Ok(ReportFiles {
        markdown,
        html,
        charts,
        chart_names: sections.into_iter().map(|s| s.1).collect(),
    })
}

type Table = (Vec<String>, Vec<Vec<String>>);

fn runs_table(runs: &[RunView]) -> Table {
    let header = [
        "run",
        "stage",
        "status",
        "parent",
        "step",
        "loss",
        "eval_loss",
    ];
    let rows = runs
        .iter()
        .map(|r| {
            let m = |n: &str| r.last_metrics.get(n).map_or("-".into(), |m| num(m.1));
            vec![
                r.id.clone(),
                r.stage.clone(),
                r.status.clone(),
                r.parent_id.clone().unwrap_or_else(|| "-".into()),
                r.last_metrics
                    .values()
                    .map(|m| m.0)
                    .max()
                    .map_or("-".into(), |s| s.to_string()),
                m("loss"),
                m("eval_loss"),
            ]
        })
        .collect();
    (header.iter().map(|s| s.to_string()).collect(), rows)
}

/// A run's score (%) on a task: acc_norm if recorded, else acc, else the task's first metric.
fn task_score(r: &RunView, task: &str) -> Option<f64> {
    let prefix = format!("{task}.");
    ["acc_norm", "acc"]
        .iter()
        .find_map(|m| r.evals.get(&format!("{task}.{m}")))
        .or_else(|| {
            r.evals
                .iter()
                .find(|(k, _)| k.starts_with(&prefix))
                .map(|e| e.1)
        })
        // Harnesses record fractions; the published table is in percent.
        .map(|e| if e.0 <= 1.0 { e.0 * 100.0 } else { e.0 })
}

/// The mean of the scores present and how many there are.
fn mean(scores: &[Option<f64>]) -> (f64, usize) {
    let v: Vec<f64> = scores.iter().flatten().copied().collect();
    (v.iter().sum::<f64>() / v.len().max(1) as f64, v.len())
}

/// The avg cell: the mean over all 7 tasks, or, for a run that lacks some, the mean over those it
/// has marked with how many (`31.0 (1/7)`): not comparable with the full averages.
fn avg_cell(scores: &[Option<f64>]) -> String {
    let (m, n) = mean(scores);
    if n == TASKS.len() {
        format!("{m:.1}")
    } else {
        format!("{m:.1} ({n}/{})", TASKS.len())
    }
}

/// Runs with eval scores (those with every task first, best average first; then the others,
/// most tasks first), then the published rows.
fn leaderboard(runs: &[RunView]) -> Table {
    let mut header = vec!["model".to_string()];
    header.extend(TASKS.iter().map(|t| t.to_string()));
    header.push("avg".into());
    let mut scored: Vec<(String, Vec<Option<f64>>)> = runs
        .iter()
        .map(|r| {
            (
                r.id.clone(),
                TASKS.iter().map(|t| task_score(r, t)).collect::<Vec<_>>(),
            )
        })
        .filter(|(_, s)| s.iter().any(Option::is_some))
        .collect();
    scored.sort_by(|a, b| {
        let ((ma, na), (mb, nb)) = (mean(&a.1), mean(&b.1));
        nb.cmp(&na).then(mb.total_cmp(&ma))
    });
    scored.extend(
        PUBLISHED
            .iter()
            .map(|(n, s)| (n.to_string(), s.iter().map(|x| Some(*x)).collect())),
    );
    let rows = scored
        .iter()
        .map(|(n, s)| {
            let mut row = vec![n.clone()];
            row.extend(
                s.iter()
                    .map(|x| x.map_or("-".into(), |x| format!("{x:.1}"))),
            );
            row.push(avg_cell(s));
            row
        })
        .collect();
    (header, rows)
}

const BOARD_NOTE: &str =
    "avg: the mean over the 7 tasks. An avg marked (k/7) is the mean over the \
                          k tasks that run has: not comparable with the full averages.";

fn md_table((h, rows): &Table) -> String {
    super::render::markdown(h, rows)
}

fn markdown_text(
    title: &str,
    runs: &Table,
    board: &Table,
    comparison: Option<&Table>,
    sections: &[(String, String)],
) -> String {
    let mut o = format!("# {title}\n\n## Runs\n\n{}\n", md_table(runs));
    if let Some(c) = comparison {
        let _ = write!(o, "## What differs\n\n{}\n", md_table(c));
    }
    for (t, stem) in sections {
        let _ = write!(o, "## {t}\n\n![{t}]({stem}.svg)\n\n");
    }
    let _ = write!(
        o,
        "## Leaderboard (%, beside the published Doge base models, small-doge README @f1468ea)\n\n\
         {}\n{BOARD_NOTE}\n",
        md_table(board)
    );
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A table in a horizontally scrolling box; `swatches` puts each row's run colour before its
/// first cell.
fn html_table((h, rows): &Table, class: &str, swatches: Option<&[String]>) -> String {
    let mut o = format!("<div class=\"scroll\"><table class=\"{class}\"><tr>");
    for c in h {
        let _ = write!(o, "<th>{}</th>", esc(c));
    }
    o.push_str("</tr>\n");
    for (i, r) in rows.iter().enumerate() {
        o.push_str("<tr>");
        for (j, c) in r.iter().enumerate() {
            match swatches.and_then(|s| s.get(i)).filter(|_| j == 0) {
                Some(color) => {
                    let _ = write!(
                        o,
                        "<td><span class=\"swatch\" style=\"background:{color}\"></span>{}</td>",
                        esc(c)
                    );
                }
                None => {
                    let _ = write!(o, "<td>{}</td>", esc(c));
                }
            }
        }
        o.push_str("</tr>\n");
    }
    o + "</table></div>\n"
}

const CSS: &str = "body{font-family:sans-serif;margin:2em;max-width:1100px}\
    .scroll{overflow-x:auto;max-width:100%;margin:1em 0}\
    table{border-collapse:collapse}\
    td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;vertical-align:top;\
    max-width:28em;overflow-wrap:anywhere}\
    td:first-child,th:first-child{text-align:left}\
    table.differs td:first-child,table.differs th:first-child{position:sticky;left:0;background:#fff}\
    table.differs td{text-align:left}\
    .swatch{display:inline-block;width:.8em;height:.8em;margin-right:.4em;vertical-align:-1px}\
    svg{max-width:100%;height:auto}";

/// One file with everything inline (the SVGs embedded), so it can be mailed or archived alone.
fn html_text(
    dir: &Path,
    title: &str,
    runs: &Table,
    board: &Table,
    comparison: Option<&Table>,
    sections: &[(String, String)],
) -> Result<String> {
    // The runs table's rows are the report's runs in order: row i has chart colour i.
    let swatches: Vec<String> = (0..runs.1.len()).map(color_hex).collect();
    let mut o = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{CSS}</style></head><body>\n<h1>{t}</h1>\n<h2>Runs</h2>\n{}",
        html_table(runs, "runs", Some(&swatches)),
        t = esc(title)
    );
    if let Some(c) = comparison {
        let _ = write!(
            o,
            "<h2>What differs</h2>\n{}",
            html_table(c, "differs", None)
        );
    }
    for (t, stem) in sections {
        let p = dir.join(format!("{stem}.svg"));
        let svg =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let _ = write!(o, "<h2>{}</h2>\n{svg}\n", esc(t));
    }
    let _ = write!(
        o,
        "<h2>Leaderboard</h2>\n<p>Scores in %, beside the published Doge base models \
         (small-doge README @f1468ea).</p>\n{}<p>{}</p>\n</body></html>\n",
        html_table(board, "board", None),
        esc(BOARD_NOTE)
    );
    Ok(o)
}
