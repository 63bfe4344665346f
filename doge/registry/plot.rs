//! Charts of `doge report`, drawn once per backend: SVG (with text) and PNG.
//!
//! plotters is built without font libraries (no system fontconfig/freetype needed), so PNGs carry
//! lines and bars only (no grid, no text); the SVGs have titles, axis labels and legends.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One curve: a run id and its (step, value) points.
pub type Series = (String, Vec<(u64, f64)>);

const SIZE: (u32, u32) = (900, 500);

pub fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// Writes `<stem>.svg` and `<stem>.png` of a line chart, one line per run.
pub fn line_chart(dir: &Path, stem: &str, title: &str, series: &[Series]) -> Result<()> {
    let svg = dir.join(format!("{stem}.svg"));
    draw_lines(
        SVGBackend::new(&svg, SIZE).into_drawing_area(),
        title,
        series,
        true,
    )?;
    let png = dir.join(format!("{stem}.png"));
    draw_lines(
        BitMapBackend::new(&png, SIZE).into_drawing_area(),
        title,
        series,
        false,
    )
}

/// Writes `<stem>.svg` and `<stem>.png` of grouped bars: one group per eval, one bar per run.
pub fn bar_chart(
    dir: &Path,
    stem: &str,
    title: &str,
    groups: &[String],
    runs: &[(String, Vec<Option<f64>>)],
) -> Result<()> {
    let svg = dir.join(format!("{stem}.svg"));
    draw_bars(
        SVGBackend::new(&svg, SIZE).into_drawing_area(),
        title,
        groups,
        runs,
        true,
    )?;
    let png = dir.join(format!("{stem}.png"));
    draw_bars(
        BitMapBackend::new(&png, SIZE).into_drawing_area(),
        title,
        groups,
        runs,
        false,
    )
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// The value range with a margin, never empty (a flat curve still gets a visible band).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1e-9) * 0.1
    };
    (lo - pad, hi + pad)
}

fn draw_lines<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    series: &[Series],
    text: bool,
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let max_step = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(1);
    let (lo, hi) = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15);
    if text {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(35)
            .y_label_area_size(70);
    }
    let mut chart = builder
        .build_cartesian_2d(0u64..max_step, lo..hi)
        .map_err(err)?;
    // No grid on PNGs: with no font, any tick label would panic inside plotters.
    if text {
        chart
            .configure_mesh()
            .x_desc("step")
            .y_label_formatter(&|v| format!("{v:.3e}"))
            .draw()
            .map_err(err)?;
    }
    for (i, (id, points)) in series.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied().filter(|p| p.1.is_finite()),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(id.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    if text {
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}

fn draw_bars<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    groups: &[String],
    runs: &[(String, Vec<Option<f64>>)],
    text: bool,
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let hi = runs
        .iter()
        .flat_map(|r| r.1.iter().flatten().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let n = groups.len().max(1) as f64;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15);
    if text {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(35)
            .y_label_area_size(50);
    }
    let mut chart = builder.build_cartesian_2d(0.0..n, 0.0..hi).map_err(err)?;
    let names = groups.to_vec();
    let label = |x: &f64| {
        // Label only group centres (x.5); the tick positions in between stay blank.
        let i = x.floor() as usize;
        if (x - x.floor() - 0.5).abs() < 1e-6 {
            names.get(i).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    if text {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len().max(1) * 2 + 1)
            .x_label_formatter(&label)
            .draw()
            .map_err(err)?;
    }
    let width = 0.8 / runs.len().max(1) as f64;
    for (r, (id, values)) in runs.iter().enumerate() {
        let c = color(r);
        let bars = values.iter().enumerate().filter_map(|(g, v)| {
            let x0 = g as f64 + 0.1 + r as f64 * width;
            v.map(|v| Rectangle::new([(x0, 0.0), (x0 + width, v)], c.filled()))
        });
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(id.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.filled()));
    }
    if text {
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}
