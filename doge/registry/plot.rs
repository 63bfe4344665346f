//! Charts of `doge report`, drawn once per backend from the same code: SVG and PNG.
//!
//! No system font library is needed: plotters' `ab_glyph` feature draws PNG text from DejaVu Sans,
//! embedded below (doge/registry/fonts/, with its licence). Every chart has a title, axis titles,
//! readable tick labels and a legend beside the plot (never over it), on both backends.
//!
//! A run keeps one colour everywhere: callers pass each run's index in the report's run list and
//! [`color`] maps it, so a run that lacks a metric does not shift the others' colours.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// DejaVu Sans 2.37 (Bitstream Vera licence, see fonts/LICENSE): the PNG charts' text.
const FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Series with at most this many points get a marker on every point (a 1-point run is a dot).
pub const MARKER_MAX: usize = 30;

/// One curve: the run's index in the report (its colour), its legend label, its points.
#[derive(Debug, Clone)]
pub struct Series {
    pub run: usize,
    pub label: String,
    pub points: Vec<(u64, f64)>,
}

/// One run's bars: its index in the report (its colour), its legend label, and per group the
/// value and its standard error (drawn as a ±stderr whisker), or None where the run has none.
#[derive(Debug, Clone)]
pub struct Bars {
    pub run: usize,
    pub label: String,
    pub values: Vec<Option<(f64, Option<f64>)>>,
}

const WIDTH: u32 = 960;
const HEIGHT: u32 = 500;
const MARGIN: u32 = 15;
const TITLE_SIZE: f64 = 22.0;
const LABEL_SIZE: f64 = 14.0;
const LEGEND_ROW: i32 = 20;
/// Longer legend labels are shortened with an ellipsis (the report's tables keep the full id).
const LEGEND_CHARS: usize = 36;

/// Tableau's categorical colours (matplotlib's `tab10`): distinct for a sweep of up to 10.
const PALETTE: [(u8, u8, u8); 10] = [
    (0x1f, 0x77, 0xb4),
    (0xff, 0x7f, 0x0e),
    (0x2c, 0xa0, 0x2c),
    (0xd6, 0x27, 0x28),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0x7f, 0x7f, 0x7f),
    (0xbc, 0xbd, 0x22),
    (0x17, 0xbe, 0xcf),
];

/// Runs 11 to 20: the light partners of [`PALETTE`] (`tab20`'s odd entries).
const LIGHT: [(u8, u8, u8); 10] = [
    (0xae, 0xc7, 0xe8),
    (0xff, 0xbb, 0x78),
    (0x98, 0xdf, 0x8a),
    (0xff, 0x98, 0x96),
    (0xc5, 0xb0, 0xd5),
    (0xc4, 0x9c, 0x94),
    (0xf7, 0xb6, 0xd2),
    (0xc7, 0xc7, 0xc7),
    (0xdb, 0xdb, 0x8d),
    (0x9e, 0xda, 0xe5),
];

/// The colour of the run at index `i` of the report's run list (the same in every chart).
pub fn color(i: usize) -> RGBColor {
    match PALETTE.iter().chain(&LIGHT).nth(i) {
        Some(&(r, g, b)) => RGBColor(r, g, b),
        None => {
            // Past 20 runs: hues a golden angle apart.
            let h = (i as f64 * 0.618_033_988_75) % 1.0;
            let c = HSLColor(h, 0.65, 0.4).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// [`color`] as CSS `#RRGGBB` (the same spelling the SVGs use), for the report's HTML.
pub fn color_hex(i: usize) -> String {
    let c = color(i);
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// A tick label: plain decimals for ordinary magnitudes (`0.001`, `2.5`, `12000`), short
/// scientific notation below 1e-3 and from 1e5 up (`3e-5`, `1.5e6`); six significant digits at
/// most, trailing zeros dropped.
pub fn number(v: f64) -> String {
    fn trim(s: String) -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let decimals = (5 - a.log10().floor() as i32).clamp(0, 8) as usize;
        trim(format!("{v:.decimals$}"))
    } else {
        let s = format!("{v:.5e}");
        match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", trim(m.to_string())),
            None => s,
        }
    }
}

/// Registers the embedded font under the family the charts name (once per process).
fn fonts() -> Result<()> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    anyhow::ensure!(ok, "the embedded chart font (DejaVu Sans) did not load");
    Ok(())
}

/// Tick labels of an axis spanning `span`: [`number`], with a tick at zero computed as 1e-19
/// still reading 0.
fn tick_formatter(span: f64) -> impl Fn(&f64) -> String {
    move |v: &f64| {
        if v.abs() < span * 1e-9 {
            "0".to_string()
        } else {
            number(*v)
        }
    }
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// A canvas tall enough for a legend of `entries` rows beside the plot.
fn canvas(width: u32, entries: usize) -> (u32, u32) {
    let legend = 70 + entries as u32 * LEGEND_ROW as u32 + 20;
    (width, HEIGHT.max(legend))
}

/// Writes `<stem>.svg` and `<stem>.png` of a line chart, one line per run (markers on short
/// series, a dot for a 1-point run), with axis titles `step` and `y_desc`.
pub fn line_chart(
    dir: &Path,
    stem: &str,
    title: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<()> {
    fonts()?;
    let size = canvas(WIDTH, series.len());
    let svg = dir.join(format!("{stem}.svg"));
    draw_lines(
        SVGBackend::new(&svg, size).into_drawing_area(),
        title,
        y_desc,
        series,
    )?;
    let png = dir.join(format!("{stem}.png"));
    draw_lines(
        BitMapBackend::new(&png, size).into_drawing_area(),
        title,
        y_desc,
        series,
    )
}

/// Writes `<stem>.svg` and `<stem>.png` of grouped bars: one group per eval (`task.metric`), one
/// bar per run that has evals, each with a ±stderr whisker where the stderr is recorded.
pub fn bar_chart(
    dir: &Path,
    stem: &str,
    title: &str,
    y_desc: &str,
    groups: &[String],
    runs: &[Bars],
) -> Result<()> {
    fonts()?;
    // Wide enough for ~10 px a bar whatever the number of groups and runs.
    let plot_w = groups.len().max(1) as u32 * (runs.len().max(1) as u32 * 10 + 30);
    let size = canvas(WIDTH.max(plot_w + 360), runs.len());
    let svg = dir.join(format!("{stem}.svg"));
    draw_bars(
        SVGBackend::new(&svg, size).into_drawing_area(),
        title,
        y_desc,
        groups,
        runs,
    )?;
    let png = dir.join(format!("{stem}.png"));
    draw_bars(
        BitMapBackend::new(&png, size).into_drawing_area(),
        title,
        y_desc,
        groups,
        runs,
    )
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

fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font()).color(&BLACK)
}

/// A legend label no longer than [`LEGEND_CHARS`]: a long one keeps its start and its end (where
/// a sweep's run ids differ), with an ellipsis between.
fn short(label: &str) -> String {
    let chars: Vec<char> = label.chars().collect();
    if chars.len() <= LEGEND_CHARS {
        return label.to_string();
    }
    let head = 10;
    let tail = LEGEND_CHARS - head - 1;
    let mut s: String = chars[..head].iter().collect();
    s.push('…');
    s.extend(&chars[chars.len() - tail..]);
    s
}

#[derive(Clone, Copy)]
enum Swatch {
    Line,
    Bar,
}

/// Splits `root` into the plot (left) and a legend panel (right) as wide as the longest label.
fn split_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    labels: &[String],
) -> Result<(DrawingArea<DB, Shift>, DrawingArea<DB, Shift>)> {
    let style = font(LABEL_SIZE);
    let mut text_w = 0;
    for l in labels {
        text_w = text_w.max(root.estimate_text_size(l, &style).map_err(err)?.0);
    }
    let legend_w = (text_w + 60).clamp(120, 360) as i32;
    let (w, _) = root.dim_in_pixel();
    Ok(root.split_horizontally(w as i32 - legend_w))
}

/// One row per run: its colour swatch and its label, from `top` down.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    top: i32,
    entries: &[(usize, String)],
    swatch: Swatch,
) -> Result<()> {
    let style = font(LABEL_SIZE).pos(Pos::new(HPos::Left, VPos::Center));
    for (k, (run, label)) in entries.iter().enumerate() {
        let y = top + k as i32 * LEGEND_ROW;
        let c = color(*run);
        let shape = match swatch {
            Swatch::Line => Rectangle::new([(8, y - 1), (32, y + 2)], c.filled()),
            Swatch::Bar => Rectangle::new([(13, y - 6), (27, y + 7)], c.filled()),
        };
        area.draw(&shape).map_err(err)?;
        area.draw(&Text::new(label.clone(), (40, y), style.clone()))
            .map_err(err)?;
    }
    Ok(())
}

/// Where the plot's top edge is: below the margin and the title.
fn plot_top<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> Result<i32> {
    let (_, h) = area
        .estimate_text_size("Tg", &font(TITLE_SIZE))
        .map_err(err)?;
    Ok((MARGIN + h) as i32 + 12)
}

fn draw_lines<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let entries: Vec<(usize, String)> = series.iter().map(|s| (s.run, short(&s.label))).collect();
    let labels: Vec<String> = entries.iter().map(|e| e.1.clone()).collect();
    let (plot, side) = split_legend(&root, &labels)?;
    let max_step = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(1);
    // A little room right of the last step, so its marker is not cut by the frame.
    let x_hi = max_step + (max_step / 40).max(1);
    let (lo, hi) = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(&plot)
        .margin(MARGIN)
        .caption(title, font(TITLE_SIZE))
        .x_label_area_size(45)
        .y_label_area_size(85)
        .build_cartesian_2d(0u64..x_hi, lo..hi)
        .map_err(err)?;
    let y_fmt = tick_formatter(hi - lo);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_desc)
        .x_label_formatter(&|x| x.to_string())
        .y_label_formatter(&y_fmt)
        .label_style(font(13.0))
        .axis_desc_style(font(15.0))
        .light_line_style(BLACK.mix(0.03))
        .bold_line_style(BLACK.mix(0.12))
        .draw()
        .map_err(err)?;
    for s in series {
        let c = color(s.run);
        let points: Vec<(u64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.1.is_finite())
            .collect();
        if points.len() >= 2 {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                .map_err(err)?;
        }
        if points.len() <= MARKER_MAX {
            let r = if points.len() == 1 { 5 } else { 3 };
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, r, c.filled())))
                .map_err(err)?;
        }
    }
    draw_legend(&side, plot_top(&root)?, &entries, Swatch::Line)?;
    root.present().map_err(err)
}

fn draw_bars<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    groups: &[String],
    runs: &[Bars],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let entries: Vec<(usize, String)> = runs.iter().map(|r| (r.run, short(&r.label))).collect();
    let labels: Vec<String> = entries.iter().map(|e| e.1.clone()).collect();
    let (plot, side) = split_legend(&root, &labels)?;
    let cells = || runs.iter().flat_map(|r| r.values.iter().flatten().copied());
    let se = |e: Option<f64>| e.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(0.0);
    let hi = cells()
        .map(|(v, e)| v + se(e))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let lo = cells()
        .map(|(v, e)| v - se(e))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::min)
        * 1.1;
    let n = groups.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&plot)
        .margin(MARGIN)
        .caption(title, font(TITLE_SIZE))
        .x_label_area_size(50)
        .y_label_area_size(85)
        .build_cartesian_2d(0.0..n, lo..hi)
        .map_err(err)?;
    let y_fmt = tick_formatter(hi - lo);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .y_label_formatter(&y_fmt)
        .label_style(font(13.0))
        .axis_desc_style(font(15.0))
        .light_line_style(BLACK.mix(0.03))
        .bold_line_style(BLACK.mix(0.12))
        .draw()
        .map_err(err)?;
    // Group names under each group, `task` over `metric`, so long names do not run together.
    let name_style = font(13.0).pos(Pos::new(HPos::Center, VPos::Top));
    for (g, name) in groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, lo));
        let (task, metric) = name.split_once('.').unwrap_or((name.as_str(), ""));
        for (k, line) in [task, metric].into_iter().enumerate() {
            if !line.is_empty() {
                plot.draw(&Text::new(
                    line.to_string(),
                    (x, y + 8 + k as i32 * 16),
                    name_style.clone(),
                ))
                .map_err(err)?;
            }
        }
    }
    let width = 0.8 / runs.len().max(1) as f64;
    let whisker = RGBColor(0x22, 0x22, 0x22).stroke_width(1);
    for (r, b) in runs.iter().enumerate() {
        let c = color(b.run);
        for (g, cell) in b.values.iter().enumerate() {
            let Some((v, e)) = *cell else { continue };
            if !v.is_finite() {
                continue;
            }
            let x0 = g as f64 + 0.1 + r as f64 * width;
            let gap = width * 0.06;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0 + gap, 0.0), (x0 + width - gap, v)],
                    c.filled(),
                )))
                .map_err(err)?;
            let e = se(e);
            if e > 0.0 {
                let xc = x0 + width / 2.0;
                let cap = width * 0.25;
                let lines = [
                    vec![(xc, v - e), (xc, v + e)],
                    vec![(xc - cap, v + e), (xc + cap, v + e)],
                    vec![(xc - cap, v - e), (xc + cap, v - e)],
                ];
                chart
                    .draw_series(lines.into_iter().map(|l| PathElement::new(l, whisker)))
                    .map_err(err)?;
            }
        }
    }
    draw_legend(&side, plot_top(&root)?, &entries, Swatch::Bar)?;
    root.present().map_err(err)
}
