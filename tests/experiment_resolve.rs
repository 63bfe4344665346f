//! Resolution: `extends`, `--set`, local paths, stage data, the model config, sweeps and run ids.

use std::path::{Path, PathBuf};

use doge::experiment::cli::plan_text;
use doge::experiment::{self as exp, print, run_id, schema::Shape, Axis, Experiment, Schedule};
use serde_json::json;

fn load(file: &str, sets: &[&str]) -> Experiment {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    exp::load(Path::new(file), &sets).unwrap_or_else(|e| panic!("{file}:\n{e}"))
}

/// Writes `text` to `name` in a fresh directory; `BASE` in it becomes the fixture base's path.
fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let base = std::fs::canonicalize("tests/fixtures/experiments/base.kdl").unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text.replace("BASE", &base.display().to_string())).unwrap();
    path
}

#[test]
fn extends_merges_stages_by_name_and_keeps_the_rest() {
    let e = load("experiments/doge-60m.kdl", &[]);
    let kinds: Vec<&str> = e.stages.iter().map(|s| s.id()).collect();
    assert_eq!(kinds, ["pretrain", "sft", "dpo"]);
    let (pt, sft, dpo) = (&e.stages[0], &e.stages[1], &e.stages[2]);
    assert_eq!(
        (pt.lr, pt.grad_accum, pt.max_steps),
        (6e-3, 512, Some(16000))
    );
    assert_eq!(
        pt.optimizer.betas,
        [0.9, 0.95],
        "inherited from doge-20m.kdl"
    );
    assert_eq!(sft.lr, 6e-4);
    assert_eq!(
        sft.schedule,
        Schedule::Cosine {
            warmup: 0.1,
            min_lr_rate: 0.1
        }
    );
    assert_eq!(sft.epochs, Some(2.0));
    assert_eq!(dpo.lr, 6e-5);
    // A stage's data block is merged over the experiment's.
    let d = e.stage_data(dpo);
    assert_eq!((d.seq_len, d.packing, d.test_examples), (1024, false, 1000));
    assert_eq!(d.sources[0].from, "HuggingFaceH4/ultrafeedback_binarized");
    assert_eq!(e.stage_data(pt).sources.len(), 4);
    assert_eq!(e.model.hidden, Some(512), "dims are filled in");
}

#[test]
fn set_overrides_values_lists_and_nulls() {
    let e = load(
        "experiments/doge-tiny.kdl",
        &[
            "stage.pretrain.lr=6e-3",
            "stage.pretrain.optimizer.betas=0.8 0.9",
            "stage.pretrain.max-steps=#null",
            "stage.pretrain.max-tokens=1e6",
            "stage.pretrain.schedule.warmup=0.05",
            "model.layers=2",
            "data.source.0.weight=2",
            "seed=7",
        ],
    );
    let s = &e.stages[0];
    assert_eq!(
        (s.lr, s.optimizer.betas, s.max_steps, s.max_tokens),
        (6e-3, [0.8, 0.9], None, Some(1_000_000))
    );
    assert_eq!(
        s.schedule,
        Schedule::Wsd {
            warmup: 0.05,
            decay: 0.1,
            min_lr_rate: 0.0
        }
    );
    assert_eq!(
        (e.model.layers, e.data.sources[0].weight, e.seed),
        (Some(2), 2.0, 7)
    );
}

#[test]
fn local_paths_are_rebased_onto_the_top_file() {
    let e = load("tests/fixtures/experiments/nested/child.kdl", &[]);
    assert_eq!(
        e.data.sources[0].from, "../corpus.txt",
        "written ./corpus.txt in ../base.kdl"
    );
    assert_eq!(e.tokenizer, "./tokenizer.json");
    assert!(e.base_dir.ends_with("tests/fixtures/experiments/nested"));
    assert!(e
        .local_path(&e.tokenizer)
        .ends_with("nested/./tokenizer.json"));
    // --set paths are relative to the current directory.
    let e = load(
        "tests/fixtures/experiments/nested/child.kdl",
        &["tokenizer=./tok.json"],
    );
    assert_eq!(e.tokenizer, "../../../../tok.json");
    // Hub ids are left alone.
    assert_eq!(
        load("experiments/doge-20m.kdl", &[]).tokenizer,
        "SmallDoge/Doge-tokenizer"
    );
}

#[test]
fn resolved_kdl_parses_back_to_the_same_experiment() {
    for file in [
        "experiments/doge-20m.kdl",
        "experiments/doge-moe-80m.kdl",
        "experiments/doge-tiny-sweep.kdl",
    ] {
        let e = load(file, &[]);
        let text = print::to_kdl(&e, &Shape::default());
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "again.kdl", &text);
        let again = exp::load(&path, &[]).unwrap_or_else(|err| panic!("{file}:\n{err}\n{text}"));
        assert_eq!(
            exp::canonical_json(&again),
            exp::canonical_json(&e),
            "{file}"
        );
    }
}

#[test]
fn model_spec_to_config() {
    let e = load("experiments/doge-moe-80m.kdl", &[]);
    let c = e.model.to_config(&e.base_dir).unwrap().unwrap();
    assert!(
        c.is_moe && c.num_experts == 1024 && c.num_experts_per_tok == 8 && c.hidden_size == 512
    );
    assert_eq!(c.num_parameters(), 71_873_056);
    // Explicit dims, no preset.
    let dir = tempfile::tempdir().unwrap();
    let text = "extends \"BASE\"\nmodel { preset #null; vocab 1000; hidden 64; intermediate 128; layers 2; heads 2; kv-heads 1 }\n";
    let e = exp::load(&write(&dir, "dims.kdl", text), &[]).unwrap();
    let c = e.model.to_config(&e.base_dir).unwrap().unwrap();
    assert_eq!(
        (c.vocab_size, c.hidden_size, c.num_key_value_heads, c.is_moe),
        (1000, 64, 1, false)
    );
    // A local checkpoint: dims from its config.json, overrides on top.
    let ckpt = dir.path().join("ckpt");
    std::fs::create_dir(&ckpt).unwrap();
    std::fs::write(
        ckpt.join("config.json"),
        doge::model::preset("doge-20m")
            .unwrap()
            .config()
            .to_json()
            .to_string(),
    )
    .unwrap();
    let e = exp::load(
        &write(
            &dir,
            "init.kdl",
            "extends \"BASE\"\nmodel { preset #null; init \"./ckpt\"; layers 4 }\n",
        ),
        &[],
    )
    .unwrap();
    let c = e.model.to_config(&e.base_dir).unwrap().unwrap();
    assert_eq!((c.hidden_size, c.num_hidden_layers), (256, 4));
    assert_eq!(e.model.hidden, Some(256));
    // A hub checkpoint: dims unknown until downloaded.
    let e = exp::load(
        &write(
            &dir,
            "hub.kdl",
            "extends \"BASE\"\nmodel { preset #null; init \"SmallDoge/Doge-20M\" }\n",
        ),
        &[],
    )
    .unwrap();
    assert_eq!(e.model.to_config(&e.base_dir).unwrap(), None);
}

#[test]
fn missing_dims_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = exp::load(
        &write(
            &dir,
            "m.kdl",
            "extends \"BASE\"\nmodel { preset #null; hidden 64 }\n",
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("m.kdl:2:16: `model.preset`: the model needs a preset, an `init` checkpoint, or explicit dims; missing vocab, intermediate, layers, heads"), "{err}");
}

#[test]
fn run_ids_follow_the_config() {
    let a = load("experiments/doge-tiny.kdl", &[]);
    assert_eq!(run_id(&a), run_id(&load("experiments/doge-tiny.kdl", &[])));
    assert_eq!(run_id(&a).len(), 12);
    assert_eq!(
        run_id(&a),
        run_id(&load(
            "experiments/doge-tiny.kdl",
            &["description=other words"]
        ))
    );
    assert_eq!(
        run_id(&a),
        run_id(&load(
            "experiments/doge-tiny.kdl",
            &["registry=/tmp/elsewhere.sqlite"]
        ))
    );
    assert_ne!(
        run_id(&a),
        run_id(&load(
            "experiments/doge-tiny.kdl",
            &["stage.pretrain.lr=0.004"]
        ))
    );
    assert_ne!(
        run_id(&a),
        run_id(&load("experiments/doge-tiny.kdl", &["data.seq-len=128"]))
    );
}

const SWEEP: &str = r#"
extends "BASE"
sweep {
    grid {
        stage.pretrain.lr 1e-3 3e-3 1e-2
        seed 1 2
    }
    zip {
        model.layers 2 4
        model.hidden 64 128
    }
    random count=4 seed=1 {
        stage.pretrain.optimizer.weight-decay 0.0 0.01 0.1
        stage.pretrain.schedule.warmup min=0.01 max=0.1
        stage.pretrain.batch-size min=1 max=4
        data.seq-len min=16 max=64
        stage.pretrain.optimizer.eps min=1e-9 max=1e-6 log=#true
    }
}
"#;

#[test]
fn sweep_grid_zip_random_expand_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "sweep.kdl", SWEEP);
    let (e, runs) = exp::plan(&path, &[]).unwrap();
    assert_eq!(runs.len(), 3 * 2 * 2 * 4);
    let (_, again) = exp::plan(&path, &[]).unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, again.iter().map(|r| r.id.as_str()).collect::<Vec<_>>());
    assert_eq!(
        ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        runs.len(),
        "distinct ids"
    );
    for r in &runs {
        let s = &r.experiment.stages[0];
        assert!([0.0, 0.01, 0.1].contains(&s.optimizer.weight_decay));
        assert!((1e-9..=1e-6).contains(&s.optimizer.eps));
        assert!((1..=4).contains(&s.batch_size));
        assert!((16..=64).contains(&r.experiment.data.seq_len));
        let Schedule::Wsd { warmup, .. } = s.schedule else {
            panic!()
        };
        assert!((0.01..=0.1).contains(&warmup));
        let m = &r.experiment.model;
        assert!(
            m.layers == Some(2) && m.hidden == Some(64)
                || m.layers == Some(4) && m.hidden == Some(128)
        );
        assert!(r.experiment.sweep.is_none());
        assert_eq!(r.id, run_id(&r.experiment));
    }
    let keys: Vec<&str> = runs[0].values.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 2 + 2 + 5);
    assert!(plan_text(&e, &runs).lines().count() == runs.len() + 1);
}

#[test]
fn ranges() {
    let axis = |v: serde_json::Value| -> Axis { serde_json::from_value(v).unwrap() };
    let vals = doge::experiment::sweep::axis_values;
    assert_eq!(
        vals(&axis(
            json!({"from": 1e-4, "to": 1e-2, "count": 3, "log": true})
        )),
        [json!(1e-4), json!(1e-3), json!(1e-2)]
    );
    assert_eq!(
        vals(&axis(json!({"from": 1, "to": 9, "step": 2}))),
        [json!(1), json!(3), json!(5), json!(7), json!(9)]
    );
    assert_eq!(
        vals(&axis(json!({"from": 0.1, "to": 0.3, "step": 0.1}))),
        [json!(0.1), json!(0.2), json!(0.3)]
    );
    assert_eq!(
        vals(&axis(json!({"from": 0, "to": 1, "count": 3}))),
        [json!(0.0), json!(0.5), json!(1.0)]
    );
}

#[test]
fn range_axis_in_kdl() {
    let dir = tempfile::tempdir().unwrap();
    let text = "extends \"BASE\"\nsweep { grid { stage.pretrain.lr from=1e-4 to=1e-2 count=3 log=#true } }\n";
    let (_, runs) = exp::plan(&write(&dir, "r.kdl", text), &[]).unwrap();
    let lrs: Vec<f64> = runs.iter().map(|r| r.experiment.stages[0].lr).collect();
    assert_eq!(lrs, [1e-4, 1e-3, 1e-2]);
}

#[test]
fn a_bad_value_in_one_run_points_at_its_axis() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        "extends \"BASE\"\nsweep {\n    grid {\n        stage.pretrain.lr 1e-3 -1\n    }\n}\n";
    let err = exp::plan(&write(&dir, "bad.kdl", text), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.kdl:4:9: `stage.pretrain.lr`: in sweep run 2 (stage.pretrain.lr=-1): `lr` must be positive"), "{err}");
}

#[test]
fn plan_shows_what_the_registry_has_done() {
    let dir = tempfile::tempdir().unwrap();
    let set = [format!("registry={}", dir.path().display())];
    let (e, runs) = exp::plan(Path::new("experiments/doge-tiny-sweep.kdl"), &set).unwrap();
    assert!(!plan_text(&e, &runs).contains("done"));
    // What the training runner leaves behind: experiment.json on start, done.json at the end.
    let started = doge::experiment::registry::run_dir(&runs[1].experiment);
    let done = doge::experiment::registry::run_dir(&runs[2].experiment);
    assert_eq!(
        done,
        dir.path().join(format!("doge-tiny-sweep-{}", runs[2].id))
    );
    for d in [&started, &done] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("experiment.json"), "{}").unwrap();
    }
    std::fs::write(done.join("done.json"), "{}").unwrap();
    let text = plan_text(&e, &runs);
    let status: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        status,
        ["new", "started", "done", "new", "new", "new"],
        "{text}"
    );
}
