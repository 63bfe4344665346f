//! `doge runs show` and `doge runs compare`, through the library and the binary.

use std::process::Command;

use crate::registry_support::{add, doge_on, Seed, TestDb};
use doge::registry::commands::{compare, show};
use doge::registry::db::Location;
use doge::registry::Registry;

fn seeded(db: &TestDb) -> Registry {
    let mut reg = db.open();
    for (id, lr, seed, acc) in [
        ("s-1", 1e-3, 1, 0.3),
        ("s-2", 3e-3, 1, 0.35),
        ("s-3", 6e-3, 2, 0.32),
    ] {
        add(
            &mut reg,
            &Seed {
                id,
                sweep: Some("lr-sweep"),
                lr,
                seed,
                hellaswag: Some(acc),
                ..Default::default()
            },
        );
    }
    add(
        &mut reg,
        &Seed {
            id: "s-2-sft",
            stage: "sft",
            parent: Some("s-2"),
            ..Default::default()
        },
    );
    add(
        &mut reg,
        &Seed {
            id: "s-2-dpo",
            stage: "dpo",
            parent: Some("s-2-sft"),
            ..Default::default()
        },
    );
    reg
}

#[test]
fn show_prints_config_lineage_metrics_evals() {
    for db in TestDb::all() {
        let kind = db.kind();
        let reg = seeded(&db);
        let out = show(&reg, "s-2-sft").unwrap();
        assert!(
            out.contains("lineage     s-2 -> [s-2-sft] -> s-2-dpo"),
            "{kind}: {out}"
        );
        assert!(out.contains("\"hidden-size\": 256"), "{kind}: {out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("loss") && l.contains("10") && l.contains("3")),
            "{kind}: {out}"
        );
        let out = show(&reg, "s-1").unwrap();
        assert!(
            out.lines()
                .any(|l| l.contains("hellaswag") && l.contains("acc_norm") && l.contains("0.3")),
            "{kind}: {out}"
        );
        let e = show(&reg, "nope").unwrap_err().to_string();
        assert!(e.contains("no run `nope`"), "{kind}: {e}");
    }
}

#[test]
fn compare_shows_only_differing_config_keys() {
    for db in TestDb::all() {
        let kind = db.kind();
        let reg = seeded(&db);
        let out = compare(&reg, &[], Some("lr-sweep")).unwrap();
        let keys: Vec<&str> = out
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "seed",
                "stage.pretrain.lr",
                "status",
                "metric.loss",
                "metric.lr",
                "eval.hellaswag.acc_norm"
            ],
            "{kind}: {out}"
        );
        assert!(
            out.lines().next().unwrap().contains("s-1") && out.contains("0.35 ±0.01"),
            "{kind}: {out}"
        );
        let two = compare(&reg, &["s-3".into(), "s-1".into()], None).unwrap();
        let header: Vec<&str> = two.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["key", "s-3", "s-1"], "{kind}");
    }
}

#[test]
fn the_binary_lists_shows_and_explains_bad_input() {
    for db in TestDb::all() {
        let kind = db.kind();
        drop(seeded(&db));
        let doge = |args: &[&str]| doge_on(&db, args);
        let out = doge(&[
            "runs",
            "list",
            "--where",
            "sweep = lr-sweep and seed = 1",
            "--format",
            "csv",
        ]);
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 3, "{kind}: {text}");
        let out = doge(&["runs", "list", "--where", "seed = = 1"]);
        assert!(!out.status.success(), "{kind}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("column 8"),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = doge(&["runs", "compare", "--sweep", "lr-sweep"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("stage.pretrain.lr"),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = doge(&["runs", "show", "s-2-sft"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("s-2 -> [s-2-sft] -> s-2-dpo"),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = Command::new(env!("CARGO_BIN_EXE_doge"))
        .args(["runs", "list", "--registry"])
        .arg(dir.path().join("none.sqlite"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("pass --registry PATH"));
    // A server database that does not exist: the connection error, with advice.
    if let Some(db) = TestDb::postgres() {
        let Location::Postgres(url) = db.location() else {
            unreachable!()
        };
        let gone = format!("{}_missing", url);
        let out = Command::new(env!("CARGO_BIN_EXE_doge"))
            .args(["runs", "list", "--registry", &gone])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "postgres: {err}");
        assert!(
            err.contains("connecting to registry") && err.contains("check that the server runs"),
            "postgres: {err}"
        );
    }
}
