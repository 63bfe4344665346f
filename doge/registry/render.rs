//! Text output of the query commands: aligned tables, CSV and JSON.

use serde_json::{Map, Value as Json};
use tabled::builder::Builder;
use tabled::settings::style::{HorizontalLine, Style};
use tabled::settings::Padding;

/// `--format` of `doge runs list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Renders a header and rows in the chosen format.
pub fn render(format: Format, header: &[String], rows: &[Vec<String>]) -> String {
    match format {
        Format::Table => table(header, rows),
        Format::Csv => csv(header, rows),
        Format::Json => json(header, rows),
    }
}

/// Columns padded to their widest cell, two spaces apart, a rule under the header.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut builder = Builder::default();
    builder.push_record(header.iter().cloned());
    for row in rows {
        builder.push_record(row.iter().cloned());
    }
    let mut t = builder.build();
    t.with(Style::empty().horizontals([(1, HorizontalLine::new('-'))]))
        .with(Padding::new(0, 2, 0, 0));
    // Lines end where their text ends (the padding would leave trailing spaces).
    let mut out: String = t
        .to_string()
        .lines()
        .map(|l| l.trim_end().to_string() + "\n")
        .collect();
    if rows.is_empty() && out.is_empty() {
        out.push('\n');
    }
    out
}

/// The same table as Markdown (`| a | b |`, `|---|---|`), for reports.
pub fn markdown(header: &[String], rows: &[Vec<String>]) -> String {
    let mut builder = Builder::default();
    builder.push_record(header.iter().cloned());
    for row in rows {
        builder.push_record(row.iter().map(|c| c.replace('|', "\\|")));
    }
    builder.build().with(Style::markdown()).to_string() + "\n"
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv(header: &[String], rows: &[Vec<String>]) -> String {
    std::iter::once(header)
        .chain(rows.iter().map(Vec::as_slice))
        .map(|r| r.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",") + "\n")
        .collect()
}

/// One object per row; cells that parse as numbers stay numbers, empty cells become null.
fn json(header: &[String], rows: &[Vec<String>]) -> String {
    let items: Vec<Json> = rows
        .iter()
        .map(|row| {
            let obj: Map<String, Json> = header
                .iter()
                .zip(row)
                .map(|(h, c)| {
                    let v = if c.is_empty() {
                        Json::Null
                    } else {
                        c.parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                            .map_or_else(|| Json::String(c.clone()), Json::Number)
                    };
                    (h.clone(), v)
                })
                .collect();
            Json::Object(obj)
        })
        .collect();
    serde_json::to_string_pretty(&items).unwrap_or_default() + "\n"
}

/// A number short enough for a table cell.
pub fn num(x: f64) -> String {
    if x == 0.0 || (1e-3..1e6).contains(&x.abs()) {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{x:.3e}")
    }
}

/// A unix time as local ISO 8601 with the offset (`2026-12-03T14:05:09+01:00`).
pub fn local_time(t: f64) -> String {
    use chrono::TimeZone;
    let secs = t.floor() as i64;
    let nanos = ((t - t.floor()) * 1e9) as u32;
    match chrono::Local.timestamp_opt(secs, nanos) {
        chrono::LocalResult::Single(d) | chrono::LocalResult::Ambiguous(d, _) => {
            d.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
        }
        chrono::LocalResult::None => format!("{t:.0} (unix s)"),
    }
}
