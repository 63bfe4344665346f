//! The experiment files of the repository, through the `doge` binary: every one passes
//! `doge exp check`, the dense presets print the spec's parameter counts, and `doge exp plan`
//! gives stable ids.

use std::process::Command;

fn doge(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_doge"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "doge {args:?} failed:\n{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn experiment_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir("experiments")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn every_experiment_file_passes_check() {
    let files = experiment_files();
    let names: Vec<&str> = files
        .iter()
        .map(|f| f.trim_start_matches("experiments/"))
        .collect();
    for row in [
        "doge-20m.kdl",
        "doge-moe-20m.kdl",
        "doge-60m.kdl",
        "doge-moe-80m.kdl",
        "doge-160m.kdl",
        "doge-moe-220m.kdl",
        "doge-320m.kdl",
        "doge-moe-500m.kdl",
        "doge-tiny.kdl",
    ] {
        assert!(names.contains(&row), "experiments/{row} is missing");
    }
    for f in &files {
        let out = doge(&["exp", "check", f]);
        assert!(out.starts_with(&format!("ok: {f} is valid")), "{out}");
    }
}

#[test]
fn dense_presets_print_the_spec_parameter_counts() {
    for (file, count) in [
        ("experiments/doge-20m.kdl", "13,118,728"),
        ("experiments/doge-60m.kdl", "54,571,552"),
        ("experiments/doge-160m.kdl", "152,676,168"),
        ("experiments/doge-320m.kdl", "335,750,272"),
    ] {
        let out = doge(&["exp", "check", file]);
        assert!(
            out.contains(&format!(": {count} parameters\n")),
            "{file}:\n{out}"
        );
    }
}

#[test]
fn moe_presets_print_total_and_active_parameters() {
    let out = doge(&["exp", "check", "experiments/doge-moe-20m.kdl"]);
    assert!(
        out.contains(
            "15,305,992 parameters, 13,217,032 active per token (MoE, 512 experts, 2 per token)"
        ),
        "{out}"
    );
}

#[test]
fn pretraining_table_values() {
    // (file, lr, max steps, grad accum, tokens) of spec 7.1; MoE rows share their dense row's.
    for (file, lr, steps, accum, tokens) in [
        ("doge-20m", 8e-3, 8000, 256, "4.19B"),
        ("doge-moe-20m", 8e-3, 8000, 256, "4.19B"),
        ("doge-60m", 6e-3, 16000, 512, "16.78B"),
        ("doge-moe-80m", 6e-3, 16000, 512, "16.78B"),
        ("doge-160m", 4e-3, 24000, 768, "37.75B"),
        ("doge-moe-220m", 4e-3, 24000, 768, "37.75B"),
        ("doge-320m", 2e-3, 32000, 1024, "67.11B"),
        ("doge-moe-500m", 2e-3, 32000, 1024, "67.11B"),
    ] {
        let path = format!("experiments/{file}.kdl");
        let exp = doge::experiment::load(std::path::Path::new(&path), &[]).unwrap();
        let p = &exp.stages[0];
        assert_eq!(
            (p.lr, p.max_steps, p.grad_accum),
            (lr, Some(steps), accum),
            "{file}"
        );
        assert_eq!(p.optimizer.betas, [0.9, 0.95]);
        assert_eq!(p.optimizer.weight_decay, 0.01);
        assert_eq!(
            p.schedule,
            doge::experiment::Schedule::Wsd {
                warmup: 0.1,
                decay: 0.1,
                min_lr_rate: 0.0
            }
        );
        assert_eq!(exp.data.seq_len, 2048);
        let sft_lr = lr / 10.0;
        assert!(
            (exp.stages[1].lr - sft_lr).abs() < 1e-12
                && (exp.stages[2].lr - sft_lr / 10.0).abs() < 1e-12,
            "{file}"
        );
        assert_eq!(exp.stages[2].beta, Some(0.1));
        let out = doge(&["exp", "check", &path]);
        assert!(out.contains(&format!("({tokens})")), "{file}: {out}");
    }
}

#[test]
fn plan_of_a_3x2_grid_prints_6_runs_with_stable_ids() {
    let a = doge(&["exp", "plan", "experiments/doge-tiny-sweep.kdl"]);
    let b = doge(&["exp", "plan", "experiments/doge-tiny-sweep.kdl"]);
    assert_eq!(a, b, "ids are stable across invocations");
    let lines: Vec<&str> = a.lines().collect();
    assert_eq!(lines[0], "doge-tiny-sweep: 6 runs");
    assert_eq!(lines.len(), 7, "{a}");
    let ids: std::collections::BTreeSet<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(ids.len(), 6, "every run has its own id");
    assert!(
        lines[1].ends_with("seed=1 stage.pretrain.lr=0.001"),
        "{}",
        lines[1]
    );
    assert!(
        lines[6].ends_with("seed=2 stage.pretrain.lr=0.01"),
        "{}",
        lines[6]
    );
}

#[test]
fn check_with_set_changes_the_run_id_and_prints_the_new_value() {
    let base = doge(&["exp", "check", "experiments/doge-tiny.kdl"]);
    let set = doge(&[
        "exp",
        "check",
        "experiments/doge-tiny.kdl",
        "--set",
        "stage.pretrain.lr=6e-3",
    ]);
    let id = |s: &str| {
        s.lines()
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(id(&base), id(&set));
    assert!(set.contains("\n    lr 0.006\n"), "{set}");
}

#[test]
fn check_json_is_the_canonical_json() {
    let out = doge(&["exp", "check", "--json", "experiments/doge-tiny.kdl"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["model"]["hidden"], 128);
    assert_eq!(v["stage"][0]["schedule"]["kind"], "wsd");
}

#[test]
fn failing_check_exits_non_zero_with_located_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_doge"))
        .args(["exp", "check", "tests/fixtures/experiments/negative_lr.kdl"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("negative_lr.kdl:3:8: `stage.pretrain.lr`: `lr` must be positive"),
        "{err}"
    );
    assert!(
        err.contains("1 error in the experiment; nothing was run"),
        "{err}"
    );
}
