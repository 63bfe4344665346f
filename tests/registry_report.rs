//! `doge report`: the files exist, are self-contained, and name every run.

use crate::registry_support::{add, doge_on, Seed, TestDb};
use doge::registry::report::write_report;
use doge::registry::Registry;

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
        // Markdown rows as their trimmed cells (column padding is presentation).
        let rows: Vec<Vec<&str>> = board
            .lines()
            .filter(|l| l.starts_with("| "))
            .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
            .collect();
        assert!(
            rows[1][0] == "lr3e-3" && rows[1].contains(&"31.0"),
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
fn the_binary_writes_a_report_of_named_runs() {
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
        let bad = doge_on(&db, &["report", "nope", "--out", &out_arg]);
        assert!(!bad.status.success(), "{kind}");
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("no run `nope`"),
            "{kind}: {}",
            String::from_utf8_lossy(&bad.stderr)
        );
    }
}
