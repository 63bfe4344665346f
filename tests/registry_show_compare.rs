//! `doge runs show` and `doge runs compare`, through the library and the binary.

use std::process::Command;

use crate::registry_support::{add, Seed};
use doge::registry::commands::{compare, show};
use doge::registry::Registry;

fn seeded(dir: &std::path::Path) -> Registry {
    let mut reg = Registry::open(&dir.join("r.sqlite")).unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let reg = seeded(dir.path());
    let out = show(&reg, "s-2-sft").unwrap();
    assert!(
        out.contains("lineage     s-2 -> [s-2-sft] -> s-2-dpo"),
        "{out}"
    );
    assert!(out.contains("\"hidden-size\": 256"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("loss") && l.contains("10") && l.contains("3")),
        "{out}"
    );
    let out = show(&reg, "s-1").unwrap();
    assert!(
        out.lines()
            .any(|l| l.contains("hellaswag") && l.contains("acc_norm") && l.contains("0.3")),
        "{out}"
    );
    let e = show(&reg, "nope").unwrap_err().to_string();
    assert!(e.contains("no run `nope`"), "{e}");
}

#[test]
fn compare_shows_only_differing_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let reg = seeded(dir.path());
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
        "{out}"
    );
    assert!(
        out.lines().next().unwrap().contains("s-1") && out.contains("0.35 ±0.01"),
        "{out}"
    );
    let two = compare(&reg, &["s-3".into(), "s-1".into()], None).unwrap();
    let header: Vec<&str> = two.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["key", "s-3", "s-1"]);
}

#[test]
fn the_binary_lists_shows_and_explains_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    drop(seeded(dir.path()));
    let reg = dir.path().join("r.sqlite");
    let doge = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_doge"))
            .args(args)
            .arg("--registry")
            .arg(&reg)
            .output()
            .unwrap()
    };
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
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    let out = doge(&["runs", "list", "--where", "seed = = 1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("column 8"));
    let out = doge(&["runs", "compare", "--sweep", "lr-sweep"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("stage.pretrain.lr"));
    let missing = Command::new(env!("CARGO_BIN_EXE_doge"))
        .args(["runs", "list", "--registry"])
        .arg(dir.path().join("none.sqlite"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("pass --registry PATH"));
}
