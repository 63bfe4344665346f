//! What `doge exp run` records, end to end (issue 20 points 1, 5, 7 and 12): the sweep's name on
//! every run, up to `report --sweep`; progress lines when stderr is not a terminal; checkpoints
//! keep-last deleted left out of `runs show`, the kept ones with the SHA-256 of their weights;
//! and a stage identical to one already done reused rather than trained again.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::sweep_support::{doge, experiment, finish, spawn, workdir};
use doge::registry::Registry;

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = doge(dir, args).output().unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "doge {args:?}:\n{so}\n{se}");
    so
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `step 7/10 loss 5.1234 lr 3.00e-3 1234 tok/s ETA 0:00:01` -> 7.
fn progress_step(line: &str) -> Option<u64> {
    let line = line.split_once("] ").map_or(line, |(_, rest)| rest);
    let rest = line.strip_prefix("step ")?;
    let (step, rest) = rest.split_once("/10 loss ")?;
    let words: Vec<&str> = rest.split(' ').collect();
    let ok = words.len() >= 5
        && words[0].parse::<f64>().is_ok()
        && words[1] == "lr"
        && words[2].parse::<f64>().is_ok()
        && words[3].parse::<f64>().is_ok()
        && words[4] == "tok/s";
    ok.then(|| step.parse().ok()).flatten()
}

#[test]
fn a_sweep_records_its_name_progress_and_kept_checkpoints() {
    let dir = workdir("./reg", "");
    let d = dir.path();
    // Saves at steps 2, 4, 6, 8 and 10; keep-last 1 (+ the final) deletes 2, 4 and 6.
    let child = spawn({
        let mut c = doge(
            d,
            &[
                "exp",
                "run",
                "sweep.kdl",
                "--set",
                "stage.pretrain.save-every=2",
                "--set",
                "stage.pretrain.keep-last=1",
            ],
        );
        c.env("TERM", "dumb");
        c
    });
    let log = finish(child, "the sweep");

    // Point 5: stderr is a pipe here, so no bar: every log-every row is a line, 6 runs x 10.
    let mut steps: Vec<u64> = log.lines().filter_map(progress_step).collect();
    steps.sort();
    let want: Vec<u64> = (1..=10).flat_map(|s| [s; 6]).collect();
    assert_eq!(steps, want, "progress lines in:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("step 10/10 loss") || l.contains("ETA 0:00:00")),
        "{log}"
    );
    assert!(log.contains(" ETA "), "{log}");

    // Point 1: the sweep's name is the experiment's, on all six runs, to `report --sweep`.
    let reg = "reg/doge.sqlite";
    let listed: serde_json::Value = serde_json::from_str(&run_ok(
        d,
        &[
            "runs",
            "list",
            "--registry",
            reg,
            "--where",
            "sweep = sweep-test",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let ids: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 6, "{listed}");
    let compared = run_ok(
        d,
        &[
            "runs",
            "compare",
            "--registry",
            reg,
            "--sweep",
            "sweep-test",
        ],
    );
    let header = compared.lines().next().unwrap();
    assert!(
        ids.iter().all(|id| header.contains(id.as_str())),
        "{compared}"
    );
    run_ok(
        d,
        &[
            "report",
            "--registry",
            reg,
            "--sweep",
            "sweep-test",
            "--out",
            "rep",
        ],
    );
    let md = std::fs::read_to_string(d.join("rep/report.md")).unwrap();
    assert!(md.contains("sweep sweep-test"), "{md}");
    assert!(ids.iter().all(|id| md.contains(id.as_str())), "{md}");

    // Point 7: only checkpoints still on disk are listed, each with its weights' SHA-256.
    let registry = Registry::open(&d.join(reg)).unwrap();
    for id in &ids {
        let show = run_ok(d, &["runs", "show", "--registry", reg, id]);
        let section = show
            .split("\nartifacts")
            .nth(1)
            .unwrap()
            .split("\nconfig")
            .next()
            .unwrap();
        let rows: Vec<Vec<&str>> = section
            .lines()
            .skip(3)
            .filter(|l| !l.trim().is_empty() && !l.starts_with('('))
            .map(|l| l.split_whitespace().collect())
            .collect();
        let kinds: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[2])).collect();
        assert_eq!(
            kinds,
            vec![("checkpoint", "8"), ("checkpoint", "10"), ("final", "-")],
            "{id}:\n{show}"
        );
        for r in &rows {
            let path = d.join(r[1]);
            let path = if path.exists() { path } else { r[1].into() };
            assert!(path.exists(), "{id}: {} listed but gone", r[1]);
            assert_eq!(
                r[4],
                sha256_hex(&path.join("model.safetensors")),
                "{id}: {}",
                r[1]
            );
        }
        assert!(
            show.contains("(3 older checkpoints deleted by keep-last)"),
            "{id}:\n{show}"
        );
        let rows_in_db = registry
            .db()
            .query_i64(
                "SELECT count(*) FROM artifacts WHERE run_id = ?1 AND kind = 'checkpoint'",
                &[id.as_str().into()],
            )
            .unwrap();
        assert_eq!(
            rows_in_db, 5,
            "{id}: the history of saves stays in the registry"
        );
    }
}

/// The sweep's experiment as one run (no sweep block), lr 3e-3, seed 7.
fn single(registry: &str) -> String {
    let text = experiment(registry, "");
    text[..text.find("sweep {").unwrap()].to_string()
}

#[test]
fn an_identical_stage_done_before_is_reused_not_rerun() {
    let dir = workdir("./reg", "");
    let d = dir.path();
    std::fs::write(d.join("base.kdl"), single("./reg")).unwrap();
    // Extends the base with one more stage, as doge-tiny-instruct extends doge-tiny.
    std::fs::write(
        d.join("longer.kdl"),
        r#"extends "base.kdl"
name "longer"
stage "pretrain" name="more" {
    lr 1e-3
    batch-size 4
    max-steps 3
    log-every 1
    eval-every 3
    save-every 3
}
"#,
    )
    .unwrap();
    let base_log = finish(spawn(doge(d, &["exp", "run", "base.kdl"])), "base");
    let base_id = base_log
        .lines()
        .find_map(|l| l.strip_prefix("run sweep-test-"))
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_string();
    let pre = format!("{base_id}-pretrain");

    let log = finish(spawn(doge(d, &["exp", "run", "longer.kdl"])), "longer");
    assert!(
        log.contains(&format!("stage pretrain: reused run {pre}")),
        "{log}"
    );
    let reg = Registry::open(&d.join("reg/doge.sqlite")).unwrap();
    let runs = reg
        .db()
        .query(
            "SELECT id, experiment, parent_id FROM runs ORDER BY created_at",
            &[],
        )
        .unwrap();
    let runs: Vec<(String, String, Option<String>)> = runs
        .iter()
        .map(|r| (r.text(0).unwrap(), r.text(1).unwrap(), r.opt_text(2)))
        .collect();
    assert_eq!(runs.len(), 2, "pretrain trained twice: {runs:?}");
    assert_eq!(runs[1].1, "longer");
    assert!(runs[1].0.ends_with("-more"), "{runs:?}");
    assert_eq!(runs[1].2.as_deref(), Some(pre.as_str()), "lineage");
    // Pre-training logged its 10 steps once.
    assert_eq!(
        reg.db()
            .query_i64("SELECT count(*) FROM metrics WHERE name = 'loss'", &[])
            .unwrap(),
        10 + 3
    );

    // Running it again does nothing; another pre-training lr is another stage: trained.
    let again = finish(spawn(doge(d, &["exp", "run", "longer.kdl"])), "again");
    assert!(!again.contains("stage more: 3 steps"), "{again}");
    let other = finish(
        spawn(doge(
            d,
            &[
                "exp",
                "run",
                "longer.kdl",
                "--set",
                "stage.pretrain.lr=2e-3",
            ],
        )),
        "other lr",
    );
    assert!(!other.contains("reused"), "{other}");
    assert!(other.contains("stage pretrain: 10 steps"), "{other}");
}
