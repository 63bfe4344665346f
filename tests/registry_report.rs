//! `doge report`: the files exist, are self-contained and name every run; charts keep one colour
//! per run, mark short series, draw ±stderr whiskers, carry text in PNGs too; the leaderboard's
//! average is only unmarked for runs with all 7 tasks.

use std::collections::HashMap;
use std::path::Path;

use crate::registry_support::{add, doge_on, Seed, TestDb};
use doge::registry::plot::{self, color_hex, Series, MARKER_MAX};
use doge::registry::report::write_report;
use doge::registry::{EvalRow, NewRun, Registry};

fn seeded(db: &TestDb) -> Registry {
    let mut reg = db.open();
    for (id, lr, loss, acc) in [
        ("lr1e-3", 1e-3, 3.2, 0.28),
        ("lr3e-3", 3e-3, 2.7, 0.31),
        ("lr6e-3", 6e-3, 2.9, 0.30),
    ] {
        add(
            &mut reg,
            &Seed {
                id,
                sweep: Some("lr"),
                lr,
                final_loss: loss,
                steps: 40,
                hellaswag: Some(acc),
                ..Default::default()
            },
        );
    }
    add(
        &mut reg,
        &Seed {
            id: "other",
            final_loss: 9.0,
            ..Default::default()
        },
    );
    reg
}

/// Markdown table rows as trimmed cells (column padding is presentation), header first.
fn md_rows(section: &str) -> Vec<Vec<String>> {
    section
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The run ids of report.md's runs table, in order (the order chart colours follow).
fn run_order(md: &str) -> Vec<String> {
    let runs = md
        .split("## Runs")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    md_rows(runs)
        .into_iter()
        .skip(1)
        .map(|r| r[0].clone())
        .collect()
}

/// Every `<tag ...>` element of an SVG: its attributes, and its text up to the closing tag.
fn elements(svg: &str, tag: &str) -> Vec<(HashMap<String, String>, String)> {
    let open = format!("<{tag} ");
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let end = rest.find('>').unwrap();
        let mut attrs = HashMap::new();
        let mut a = &rest[..end];
        while let Some(eq) = a.find("=\"") {
            let name = a[..eq].trim().to_string();
            let v = &a[eq + 2..];
            let close = v.find('"').unwrap();
            attrs.insert(name, v[..close].to_string());
            a = &v[close + 1..];
        }
        let body = &rest[end + 1..];
        let text = if rest[..end].ends_with('/') {
            String::new()
        } else {
            body[..body.find('<').unwrap_or(0)].trim().to_string()
        };
        out.push((attrs, text));
    }
    out
}

fn num(attrs: &HashMap<String, String>, k: &str) -> f64 {
    attrs[k].parse().unwrap()
}

fn points(attrs: &HashMap<String, String>) -> Vec<(f64, f64)> {
    attrs["points"]
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// Elements of `tag` drawn in `color` (stroke or fill).
fn colored<'a>(
    els: &'a [(HashMap<String, String>, String)],
    color: &str,
) -> Vec<&'a HashMap<String, String>> {
    els.iter()
        .map(|e| &e.0)
        .filter(|a| {
            a.get("stroke").map(String::as_str) == Some(color)
                || a.get("fill").map(String::as_str) == Some(color)
        })
        .collect()
}

fn texts(svg: &str) -> Vec<String> {
    elements(svg, "text").into_iter().map(|e| e.1).collect()
}

/// A decoded PNG: width, height, RGB(A) bytes and bytes per pixel.
struct Png {
    w: usize,
    h: usize,
    px: Vec<u8>,
    bpp: usize,
}

fn decode(path: &Path) -> Png {
    let mut d = png::Decoder::new(std::fs::File::open(path).unwrap())
        .read_info()
        .unwrap();
    let mut px = vec![0; d.output_buffer_size()];
    let info = d.next_frame(&mut px).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{}", path.display());
    let bpp = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        c => panic!("{}: colour type {c:?}", path.display()),
    };
    px.truncate(info.buffer_size());
    Png {
        w: info.width as usize,
        h: info.height as usize,
        px,
        bpp,
    }
}

impl Png {
    /// Near-black pixels (text; the grid is light grey, curves are coloured) in a region.
    fn dark(&self, xs: std::ops::Range<usize>, ys: std::ops::Range<usize>) -> usize {
        let mut n = 0;
        for y in ys.start..ys.end.min(self.h) {
            for x in xs.start..xs.end.min(self.w) {
                let i = (y * self.w + x) * self.bpp;
                if self.px[i..i + 3].iter().all(|&c| c < 100) {
                    n += 1;
                }
            }
        }
        n
    }
}

#[test]
fn report_writes_markdown_html_and_charts_naming_every_run() {
    for db in TestDb::all() {
        let kind = db.kind();
        let dir = tempfile::tempdir().unwrap();
        let reg = seeded(&db);
        let out = dir.path().join("report");
        let files = write_report(&reg, &[], Some("lr"), &out).unwrap();
        let md = std::fs::read_to_string(&files.markdown).unwrap();
        let html = std::fs::read_to_string(&files.html).unwrap();
        for stem in ["loss", "lr", "evals"] {
            for ext in ["svg", "png"] {
                let p = out.join(format!("{stem}.{ext}"));
                assert!(
                    files.charts.contains(&p),
                    "{kind}: {} missing from {:?}",
                    p.display(),
                    files.charts
                );
                assert!(
                    std::fs::metadata(&p).unwrap().len() > 1000,
                    "{kind}: {} is nearly empty",
                    p.display()
                );
            }
        }
        // Three charts (no run logged eval_loss), each an SVG and a PNG.
        assert_eq!(files.chart_names, ["loss", "lr", "evals"], "{kind}");
        let png = std::fs::read(out.join("loss.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{kind}");
        let loss_svg = std::fs::read_to_string(out.join("loss.svg")).unwrap();
        for id in ["lr1e-3", "lr3e-3", "lr6e-3"] {
            assert!(md.contains(id), "{kind}: {id} not in report.md");
            assert!(html.contains(id), "{kind}: {id} not in report.html");
            assert!(loss_svg.contains(id), "{kind}: {id} not in the loss legend");
        }
        assert!(
            !md.contains("other") && !html.contains("| other"),
            "{kind}: a run outside the sweep was reported"
        );
        // Self-contained: charts are inline, nothing is fetched.
        assert!(html.matches("<svg").count() >= 3, "{kind}");
        assert!(!html.contains("src=") && !html.contains("href="), "{kind}");
        // Leaderboard: best run first, published numbers beside it.
        let board = md.split("## Leaderboard").nth(1).unwrap();
        let rows = md_rows(board);
        assert!(
            rows[1][0] == "lr3e-3" && rows[1][5] == "31.0",
            "{kind}: {board}"
        );
        assert!(
            rows.iter().any(|r| r[..8]
                == [
                    "Doge-60M (published)",
                    "26.4",
                    "0.2",
                    "37.9",
                    "61.4",
                    "31.5",
                    "28.0",
                    "50.8"
                ]),
            "{kind}: {board}"
        );
        // Only the differing key shows in the comparison.
        assert!(
            md.contains("stage.pretrain.lr") && !md.contains("\nseed "),
            "{kind}: {md}"
        );
    }
}

#[test]
fn the_binary_writes_a_report_of_named_runs_and_counts_charts_not_files() {
    for db in TestDb::all() {
        let kind = db.kind();
        let dir = tempfile::tempdir().unwrap();
        drop(seeded(&db));
        let out = dir.path().join("rep");
        let out_arg = out.display().to_string();
        let o = doge_on(&db, &["report", "lr1e-3", "other", "--out", &out_arg]);
        assert!(
            o.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(
            html.contains("lr1e-3") && html.contains("other") && !html.contains("lr6e-3"),
            "{kind}"
        );
        // Both runs log loss and lr, lr1e-3 has an eval: loss, lr and evals (6 files).
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("(3 charts)"), "{kind}: {stdout}");
        let bad = doge_on(&db, &["report", "nope", "--out", &out_arg]);
        assert!(!bad.status.success(), "{kind}");
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("no run `nope`"),
            "{kind}: {}",
            String::from_utf8_lossy(&bad.stderr)
        );
    }
}

/// One run of the 9-run sweep: id, steps of loss/lr, eval_loss points, hellaswag acc.
struct Nine {
    id: String,
    steps: u64,
    eval_points: u64,
    acc: Option<f64>,
}

/// A sweep of 9: one run with a single logged step, one longer than [`MARKER_MAX`], eval_loss
/// for only some runs (not the first), evals for only some (not the first).
fn seed_nine(reg: &mut Registry) -> Vec<Nine> {
    let steps = [1, 2, 5, 8, 10, 12, 15, 20, 60];
    let eval_points = [0, 0, 2, 0, 0, 3, 0, 4, 0];
    let accs = [
        None,
        Some(0.26),
        None,
        None,
        Some(0.31),
        None,
        Some(0.29),
        None,
        Some(0.34),
    ];
    let mut runs = Vec::new();
    for k in 0..9 {
        let id = format!("sweep9-run{k}-lr{}e-3", k + 1);
        let lr = (k + 1) as f64 * 1e-3;
        add(
            reg,
            &Seed {
                id: &id,
                sweep: Some("nine"),
                lr,
                seed: k as u64,
                final_loss: 2.5 + k as f64 * 0.1,
                steps: steps[k],
                hellaswag: accs[k],
                ..Default::default()
            },
        );
        let rows: Vec<(u64, &str, f64)> = (1..=eval_points[k])
            .map(|i| {
                let step = i * steps[k] / eval_points[k];
                (step, "eval_loss", 3.5 - i as f64 * 0.1 + k as f64 * 0.01)
            })
            .collect();
        reg.log_metrics(&id, &rows).unwrap();
        runs.push(Nine {
            id,
            steps: steps[k],
            eval_points: eval_points[k],
            acc: accs[k],
        });
    }
    runs
}

#[test]
fn a_sweep_of_nine_keeps_one_colour_per_run_in_every_chart_and_marks_short_series() {
    for db in TestDb::all() {
        let kind = db.kind();
        let dir = tempfile::tempdir().unwrap();
        let mut reg = db.open();
        let seeded = seed_nine(&mut reg);
        let out = dir.path().join("report");
        let files = write_report(&reg, &[], Some("nine"), &out).unwrap();
        assert_eq!(
            files.chart_names,
            ["loss", "eval_loss", "lr", "evals"],
            "{kind}"
        );
        let md = std::fs::read_to_string(&files.markdown).unwrap();
        let order = run_order(&md);
        assert_eq!(order.len(), 9, "{kind}: {md}");
        // A run's colour is the one of its index in the runs table, whatever the chart.
        let colour: HashMap<&str, String> = order
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), color_hex(i)))
            .collect();
        let distinct: std::collections::BTreeSet<&String> = colour.values().collect();
        assert_eq!(distinct.len(), 9, "{kind}: colours repeat: {colour:?}");

        for (stem, metric) in [("loss", "loss"), ("lr", "lr"), ("eval_loss", "eval_loss")] {
            let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
            let lines = elements(&svg, "polyline");
            let circles = elements(&svg, "circle");
            let text = texts(&svg);
            for r in &seeded {
                let c = &colour[r.id.as_str()];
                let n = if stem == "eval_loss" {
                    r.eval_points
                } else {
                    r.steps
                } as usize;
                let mine = colored(&lines, c);
                let dots = colored(&circles, c);
                let listed = text.iter().any(|t| t == &r.id);
                let what = format!("{kind}: {stem}.svg, run {} ({n} points, {c})", r.id);
                assert_eq!(listed, n > 0, "{what}: legend entry");
                match n {
                    0 => assert!(mine.is_empty() && dots.is_empty(), "{what}"),
                    1 => {
                        assert!(mine.is_empty(), "{what}: a 1-point line");
                        assert_eq!(dots.len(), 1, "{what}: no marker for the one point");
                    }
                    _ => {
                        assert_eq!(mine.len(), 1, "{what}: one line per run");
                        assert_eq!(points(mine[0]).len(), n, "{what}");
                        let want = if n <= MARKER_MAX { n } else { 0 };
                        assert_eq!(dots.len(), want, "{what}: markers");
                    }
                }
            }
            // Axis titles: x `step`, y the metric.
            assert!(
                text.iter().any(|t| t == "step") && text.iter().any(|t| t == metric),
                "{kind}: {stem}.svg axis titles: {text:?}"
            );
        }

        // Bars: only runs with evals, in their colours, heights in proportion to the scores,
        // ±stderr (0.01, the seed's) whiskers, and the legend right of every bar.
        let svg = std::fs::read_to_string(out.join("evals.svg")).unwrap();
        let rects = elements(&svg, "rect");
        let lines = elements(&svg, "polyline");
        let text_els = elements(&svg, "text");
        let mut bars = Vec::new();
        for r in &seeded {
            let c = &colour[r.id.as_str()];
            let listed: Vec<&HashMap<String, String>> = text_els
                .iter()
                .filter(|t| t.1 == r.id)
                .map(|t| &t.0)
                .collect();
            let mut mine = colored(&rects, c);
            mine.sort_by(|a, b| num(b, "height").total_cmp(&num(a, "height")));
            match r.acc {
                None => {
                    assert!(
                        listed.is_empty(),
                        "{kind}: {} has no evals but a legend entry",
                        r.id
                    );
                    assert!(mine.is_empty(), "{kind}: {} has no evals but bars", r.id);
                }
                Some(acc) => {
                    assert_eq!(listed.len(), 1, "{kind}: {} legend entries", r.id);
                    // Its bar (the tallest of its colour; the legend swatch is small).
                    bars.push((acc, mine[0].clone(), num(listed[0], "x")));
                }
            }
        }
        assert_eq!(bars.len(), 4, "{kind}");
        let ppu = num(&bars[0].1, "height") / bars[0].0; // pixels per score unit
        let legend_x = bars.iter().map(|b| b.2).fold(f64::INFINITY, f64::min);
        for (acc, rect, _) in &bars {
            let (x, y, w, h) = (
                num(rect, "x"),
                num(rect, "y"),
                num(rect, "width"),
                num(rect, "height"),
            );
            assert!((h - acc * ppu).abs() <= 2.0, "{kind}: bar of {acc}: {h} px");
            assert!(x + w < legend_x, "{kind}: the legend covers a bar");
            let xc = x + w / 2.0;
            let whisker = lines
                .iter()
                .map(|l| points(&l.0))
                .find(|p| p.len() == 2 && (p[0].0 - xc).abs() <= 1.5 && (p[1].0 - xc).abs() <= 1.5);
            let p = whisker.unwrap_or_else(|| panic!("{kind}: no whisker on the bar of {acc}"));
            let (top, bottom) = (p[0].1.min(p[1].1), p[0].1.max(p[1].1));
            assert!(
                (top - (y - 0.01 * ppu)).abs() <= 2.0 && (bottom - (y + 0.01 * ppu)).abs() <= 2.0,
                "{kind}: whisker {top}..{bottom} on a bar whose top is {y} ({ppu} px/unit)"
            );
        }
        let text = texts(&svg);
        assert!(text.iter().any(|t| t == "score"), "{kind}: {text:?}");

        // Every PNG has text in its title strip (the title is drawn in black).
        for name in &files.chart_names {
            let png = decode(&out.join(format!("{name}.png")));
            assert!(
                png.dark(0..png.w, 0..40) > 100,
                "{kind}: {name}.png has no title"
            );
        }
        // The HTML runs table shows each run's chart colour beside its id.
        let html = std::fs::read_to_string(&files.html).unwrap();
        for (i, id) in order.iter().enumerate() {
            let cell = format!("background:{}\"></span>{id}</td>", color_hex(i));
            assert!(html.contains(&cell), "{kind}: {cell}");
        }
    }
}

#[test]
fn tick_labels_are_plain_decimals_or_short_scientific() {
    for (v, want) in [
        (8.0, "8"),
        (0.0, "0"),
        (2.5, "2.5"),
        (1e-3, "0.001"),
        (0.0015, "0.0015"),
        (3e-5, "3e-5"),
        (-0.02, "-0.02"),
        (0.1 + 0.2, "0.3"),
        (12000.0, "12000"),
        (2.5e6, "2.5e6"),
        (1.5e-4, "1.5e-4"),
    ] {
        assert_eq!(plot::number(v), want, "{v}");
    }
    for db in TestDb::all() {
        let kind = db.kind();
        let dir = tempfile::tempdir().unwrap();
        let reg = seeded(&db);
        let out = dir.path().join("report");
        write_report(&reg, &[], Some("lr"), &out).unwrap();
        for stem in ["loss", "lr", "evals"] {
            let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
            let ticks: Vec<String> = texts(&svg)
                .into_iter()
                .filter(|t| t.parse::<f64>().is_ok())
                .collect();
            assert!(ticks.len() >= 4, "{kind}: {stem}.svg ticks {ticks:?}");
            for t in &ticks {
                let v: f64 = t.parse().unwrap();
                let sci = t.contains('e');
                // Scientific only outside [1e-3, 1e5), and never with a zero exponent.
                assert!(
                    !sci || v == 0.0 || !(1e-3..1e5).contains(&v.abs()),
                    "{kind}: {stem}.svg tick {t}"
                );
                assert!(!t.ends_with("e0"), "{kind}: {stem}.svg tick {t}");
            }
        }
    }
}

/// Renders one line chart into `dir` (as `<stem>.png`) with the given texts.
fn chart(dir: &Path, stem: &str, title: &str, y_desc: &str, label: &str) -> Png {
    let series = [Series {
        run: 0,
        label: label.into(),
        points: (1..=20).map(|s| (s, 4.0 - s as f64 * 0.1)).collect(),
    }];
    plot::line_chart(dir, stem, title, y_desc, &series).unwrap();
    decode(&dir.join(format!("{stem}.png")))
}

#[test]
fn png_charts_carry_titles_axis_labels_and_legends() {
    let dir = tempfile::tempdir().unwrap();
    let full = chart(dir.path(), "full", "training loss by step", "loss", "run-a");
    let bare = chart(dir.path(), "bare", "", "", "");
    assert_eq!((full.w, full.h), (bare.w, bare.h));
    let (w, h) = (full.w, full.h);
    // The title strip: black text with a title, nothing without.
    assert!(full.dark(0..w, 0..40) > 150, "no title pixels");
    assert_eq!(bare.dark(0..w, 0..40), 0);
    // The rotated y axis title left of the tick labels.
    assert!(full.dark(0..34, 0..h) > 30, "no y axis title pixels");
    assert_eq!(bare.dark(0..34, 0..h), 0);
    // The legend panel right of the plot (the label; the swatch is coloured, not dark).
    assert!(full.dark(w - 80..w, 0..h) > 30, "no legend text pixels");
    assert_eq!(bare.dark(w - 80..w, 0..h), 0);
    // Tick labels (numbers) left of the y axis, on both; the `step` title under the x axis.
    assert!(full.dark(34..95, 40..h - 60) > 50, "no tick label pixels");
    assert!(bare.dark(34..95, 40..h - 60) > 50, "no tick label pixels");
    assert!(full.dark(0..w, h - 25..h) > 20, "no x axis title pixels");
}

#[test]
fn the_leaderboard_averages_only_runs_with_all_seven_tasks() {
    // (task, metric, value): the 7 tasks, as fractions; the mean in % is 260 / 7.
    let all = [
        ("mmlu", "acc", 0.30),
        ("triviaqa", "qem", 0.05),
        ("arc", "acc_norm", 0.40),
        ("piqa", "acc_norm", 0.65),
        ("hellaswag", "acc_norm", 0.35),
        ("openbookqa", "acc_norm", 0.30),
        ("winogrande", "acc", 0.55),
    ];
    for db in TestDb::all() {
        let kind = db.kind();
        let dir = tempfile::tempdir().unwrap();
        let mut reg = db.open();
        let evals = [
            ("one-task", vec![("hellaswag", "acc_norm", 0.90)]),
            ("all-tasks", all.to_vec()),
            ("three-tasks", all[2..5].to_vec()),
        ];
        for (id, rows) in &evals {
            add(
                &mut reg,
                &Seed {
                    id,
                    sweep: Some("board"),
                    ..Default::default()
                },
            );
            for (task, metric, value) in rows {
                reg.add_eval(
                    id,
                    &EvalRow {
                        task: task.to_string(),
                        metric: metric.to_string(),
                        value: *value,
                        stderr: Some(0.01),
                        n: Some(100),
                        fewshot: Some(0),
                        ..Default::default()
                    },
                )
                .unwrap();
            }
        }
        let out = dir.path().join("report");
        let files = write_report(&reg, &[], Some("board"), &out).unwrap();
        let md = std::fs::read_to_string(&files.markdown).unwrap();
        let board = md.split("## Leaderboard").nth(1).unwrap();
        let rows = md_rows(board);
        let avg = rows[0].len() - 1;
        assert_eq!(rows[0][avg], "avg", "{kind}: {board}");
        // All 7 first, then the partial runs (most tasks first), then the published models.
        let names: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            names[..3],
            ["all-tasks", "three-tasks", "one-task"],
            "{kind}: {board}"
        );
        assert_eq!(
            rows[1][avg],
            format!("{:.1}", 260.0 / 7.0),
            "{kind}: {board}"
        );
        // arc 40, piqa 65, hellaswag 35.
        assert_eq!(rows[2][avg], format!("{:.1} (3/7)", 140.0 / 3.0), "{kind}");
        assert_eq!(rows[3][avg], "90.0 (1/7)", "{kind}: {board}");
        assert_eq!(rows[3][5], "90.0", "{kind}: {board}");
        // Published rows: all 7 tasks, the plain mean of their own cells.
        let published: Vec<&Vec<String>> = rows
            .iter()
            .filter(|r| r[0].ends_with("(published)"))
            .collect();
        assert_eq!(published.len(), 4, "{kind}: {board}");
        for r in published {
            let cells: Vec<f64> = r[1..avg].iter().map(|c| c.parse().unwrap()).collect();
            assert_eq!(cells.len(), 7);
            let mean = cells.iter().sum::<f64>() / 7.0;
            let shown: f64 = r[avg].parse().unwrap_or_else(|_| panic!("{kind}: {r:?}"));
            assert!((shown - mean).abs() <= 0.051, "{kind}: {r:?}");
        }
        assert!(
            md.contains("(k/7)"),
            "{kind}: the partial mark is not explained"
        );
    }
}

#[test]
fn what_differs_is_an_html_table_that_wraps_long_values() {
    let long = format!("/data/{}", "shard-0123456789abcdef".repeat(15));
    for db in TestDb::all() {
        let kind = db.kind();
        let dir = tempfile::tempdir().unwrap();
        let reg = db.open();
        for (id, lr, path) in [("a", 1e-3, long.as_str()), ("b", 3e-3, "/data/short")] {
            reg.start_run(&NewRun {
                id: id.into(),
                experiment: "exp".into(),
                experiment_path: None,
                sweep: Some("wide".into()),
                parent_id: None,
                stage: "pretrain".into(),
                config_json: format!(
                    r#"{{"seed":1,"data":{{"path":"{path}"}},"stage":[{{"kind":"pretrain","lr":{lr}}}]}}"#
                ),
                config_hash: id.into(),
                device: "cpu".into(),
                stage_key: None,
            })
            .unwrap();
        }
        let out = dir.path().join("report");
        let files = write_report(&reg, &[], Some("wide"), &out).unwrap();
        let html = std::fs::read_to_string(&files.html).unwrap();
        let section = html.split("<h2>What differs</h2>").nth(1).unwrap();
        let section = &section[..section.find("<h2>").unwrap_or(section.len())];
        assert!(!html.contains("<pre"), "{kind}: a <pre> block is back");
        assert!(
            section.starts_with("\n<div class=\"scroll\"><table class=\"differs\">"),
            "{kind}: {section}"
        );
        for row in [
            format!("<tr><td>data.path</td><td>{long}</td><td>/data/short</td></tr>"),
            "<tr><td>stage.pretrain.lr</td><td>0.001</td><td>0.003</td></tr>".to_string(),
        ] {
            assert!(section.contains(&row), "{kind}: {row} not in {section}");
        }
        // Cells wrap anywhere and the box scrolls, so a long value cannot widen the page.
        assert!(
            html.contains(".scroll{overflow-x:auto") && html.contains("overflow-wrap:anywhere"),
            "{kind}"
        );
        assert!(
            !section.contains("<tr><td>seed"),
            "{kind}: an equal key shown"
        );
    }
}
