//! Bad experiment files: every error names file:line:column and the key, and says what to do.
//! Fixtures are in tests/fixtures/experiments/ (most extend the valid `base.kdl`).

use std::path::Path;

const DIR: &str = "tests/fixtures/experiments";

/// The rendered errors of a fixture (checked through `plan`, so sweeps are expanded too).
fn errors(file: &str, sets: &[&str]) -> String {
    let path = format!("{DIR}/{file}");
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    match doge::experiment::plan(Path::new(&path), &sets) {
        Ok(_) => panic!("{file} should not pass"),
        Err(e) => e.to_string(),
    }
}

/// `text` has an error at `location` (file:line:column) whose text contains every `part`.
fn assert_error(text: &str, location: &str, parts: &[&str]) {
    let head = format!("error: {location}: ");
    let block = text.split("\n\n").find(|b| b.starts_with(&head));
    let Some(block) = block else {
        panic!("no error at {location} in:\n{text}")
    };
    for p in parts {
        assert!(block.contains(p), "missing {p:?} in:\n{block}");
    }
}

fn at(file: &str, line_col: &str) -> String {
    format!("{DIR}/{file}:{line_col}")
}

#[test]
fn unknown_key() {
    let t = errors("unknown_key.kdl", &[]);
    assert_error(
        &t,
        &at("unknown_key.kdl", "2:1"),
        &[
            "`colour`: unknown key `colour` in the experiment",
            "known keys here: `data`",
        ],
    );
}

#[test]
fn misspelt_key_suggests_the_right_one() {
    let t = errors("misspelt_key.kdl", &[]);
    let want = [
        "`stage.pretrain.lrr`: unknown key `lrr` in `stage.pretrain`",
        "did you mean `lr`?",
    ];
    assert_error(&t, &at("misspelt_key.kdl", "3:5"), &want);
}

#[test]
fn wrong_type() {
    let t = errors("wrong_type.kdl", &[]);
    assert_error(
        &t,
        &at("wrong_type.kdl", "3:13"),
        &["`data.seq-len`: expected a whole number, found the string \"long\""],
    );
}

#[test]
fn bare_boolean_is_a_kdl_v2_syntax_error_with_a_hint() {
    let t = errors("bare_bool.kdl", &[]);
    assert_error(
        &t,
        &at("bare_bool.kdl", "3:13"),
        &["KDL syntax", "KDL v2 writes `#true`"],
    );
}

#[test]
fn negative_lr() {
    let t = errors("negative_lr.kdl", &[]);
    assert_error(
        &t,
        &at("negative_lr.kdl", "3:8"),
        &["`stage.pretrain.lr`: `lr` must be positive, found -0.001"],
    );
}

#[test]
fn warmup_plus_decay_over_one() {
    let t = errors("warmup_decay.kdl", &[]);
    let want = [
        "`stage.pretrain.schedule.decay`",
        "warmup 0.6 + decay 0.5 = 1.1 is more than the whole stage",
        "add up to at most 1",
    ];
    assert_error(&t, &at("warmup_decay.kdl", "3:37"), &want);
}

#[test]
fn heads_not_dividing_hidden() {
    let t = errors("heads_hidden.kdl", &[]);
    assert_error(
        &t,
        &at("heads_hidden.kdl", "3:11"),
        &["`model.heads`: 3 heads do not divide hidden size 128"],
    );
}

#[test]
fn kv_heads_not_dividing_heads() {
    let t = errors("kv_heads.kdl", &[]);
    assert_error(
        &t,
        &at("kv_heads.kdl", "4:14"),
        &["`model.kv-heads`: 3 kv heads do not divide 4 attention heads"],
    );
}

#[test]
fn unknown_preset() {
    let t = errors("unknown_preset.kdl", &[]);
    let want = [
        "`model.preset`: unknown preset `doge-30m`; known presets: `doge-tiny`, `doge-20m`",
        "did you mean",
    ];
    assert_error(&t, &at("unknown_preset.kdl", "2:7"), &want);
}

#[test]
fn missing_extends_file() {
    let t = errors("missing_extends.kdl", &[]);
    let want = [
        "`extends`: cannot read extended file",
        "no-such-base.kdl",
        "relative to the file that writes them",
    ];
    assert_error(&t, &at("missing_extends.kdl", "2:9"), &want);
}

#[test]
fn cyclic_extends() {
    let t = errors("cycle_a.kdl", &[]);
    let want = [
        "`extends` cycle: cycle_a.kdl -> cycle_b.kdl -> cycle_a.kdl",
        "cannot extend itself",
    ];
    assert_error(&t, &at("cycle_b.kdl", "2:9"), &want);
}

#[test]
fn empty_sweep_axis() {
    let t = errors("empty_axis.kdl", &[]);
    assert_error(
        &t,
        &at("empty_axis.kdl", "5:9"),
        &["`sweep.grid.seed`: empty sweep axis `seed`", "`seed 1 2 3`"],
    );
}

#[test]
fn unknown_stage_kind() {
    let t = errors("unknown_stage_kind.kdl", &[]);
    let want = ["unknown stage kind `finetune`; expected one of `pretrain`, `sft`, `dpo`, `eval`"];
    assert_error(&t, &at("unknown_stage_kind.kdl", "2:7"), &want);
}

#[test]
fn bad_override_path() {
    let t = errors("base.kdl", &["stage.pretrain.lrr=1"]);
    let want = [
        "`stage.pretrain.lrr`: unknown key `lrr` in `stage.pretrain`",
        "did you mean `lr`?",
    ];
    assert_error(&t, "<--set 1>:1:16", &want);
    // The second --set names a stage that does not exist.
    let t = errors("base.kdl", &["seed=1", "stage.sft.lr=1"]);
    assert_error(
        &t,
        "<--set 2>:1:7",
        &["no `stage` named `sft`", "these exist: `pretrain`"],
    );
    let t = errors("base.kdl", &["seed"]);
    assert_error(&t, "<--set 1>:1:1", &["`--set` needs KEY=VALUE"]);
}

#[test]
fn override_value_of_the_wrong_type() {
    let t = errors("base.kdl", &["stage.pretrain.max-steps=many"]);
    assert_error(&t, "<--set 1>:1:26", &["`stage.pretrain.max-steps`: expected a whole number or #null, found the string \"many\""]);
}

#[test]
fn unknown_schedule_kind_suggests() {
    let t = errors("bad_schedule.kdl", &[]);
    let want = [
        "unknown schedule kind `cosin`; expected one of `wsd`, `cosine`, `constant`",
        "did you mean `cosine`?",
    ];
    assert_error(&t, &at("bad_schedule.kdl", "3:14"), &want);
}

#[test]
fn key_of_another_schedule_kind() {
    let t = errors("schedule_key.kdl", &[]);
    assert_error(
        &t,
        &at("schedule_key.kdl", "3:36"),
        &[
            "unknown key `decay` in `stage.pretrain.schedule`",
            "`warmup`",
        ],
    );
}

#[test]
fn kdl_syntax_error() {
    let t = errors("syntax.kdl", &[]);
    assert_error(
        &t,
        &at("syntax.kdl", "3:8"),
        &["KDL syntax: Non-digit character found after the '.' of a float"],
    );
}

#[test]
fn key_set_twice() {
    let t = errors("set_twice.kdl", &[]);
    assert_error(
        &t,
        &at("set_twice.kdl", "4:8"),
        &["`lr` is set twice in this block (first at line 3, column 8)"],
    );
}

#[test]
fn two_stage_lengths() {
    let t = errors("two_lengths.kdl", &[]);
    let want = [
        "needs exactly one of `max-steps`, `max-tokens`, `epochs`; found 2",
        "`max-steps #null`",
    ];
    assert_error(&t, &at("two_lengths.kdl", "3:12"), &want);
}

#[test]
fn training_key_in_an_eval_stage() {
    let t = errors("eval_lr.kdl", &[]);
    assert_error(
        &t,
        &at("eval_lr.kdl", "3:8"),
        &["`stage.eval.lr`: `lr` has no meaning in `eval` stages"],
    );
}

#[test]
fn zip_axes_of_different_lengths() {
    let t = errors("zip_lengths.kdl", &[]);
    assert_error(
        &t,
        &at("zip_lengths.kdl", "4:9"),
        &["zip axes need the same length: `seed` has 2 values, `stage.pretrain.lr` has 3"],
    );
}

#[test]
fn bad_sweep_key_points_inside_the_key() {
    let t = errors("sweep_key.kdl", &[]);
    assert_error(
        &t,
        &at("sweep_key.kdl", "4:24"),
        &[
            "unknown key `lrr` in `stage.pretrain`",
            "did you mean `lr`?",
        ],
    );
}

#[test]
fn errors_render_a_snippet_with_carets() {
    let t = errors("negative_lr.kdl", &[]);
    assert!(t.contains("3 |     lr -1e-3\n  |        ^^^^^\n"), "{t}");
}

#[test]
fn data_memory_that_is_not_a_size() {
    let t = errors("bad_memory.kdl", &[]);
    assert_error(
        &t,
        &at("bad_memory.kdl", "3:12"),
        &["`data.memory`", "unknown unit `lots`", "256MiB"],
    );
}

#[test]
fn data_memory_does_not_change_the_run_id() {
    let load = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        doge::experiment::load(Path::new(&format!("{DIR}/base.kdl")), &sets).unwrap()
    };
    let a = doge::experiment::run_id(&load(&[]));
    let b = doge::experiment::run_id(&load(&["data.memory=\"64MiB\""]));
    assert_eq!(a, b);
    assert_eq!(
        load(&["data.memory=\"64MiB\""]).data.memory_bytes(),
        Some(64 << 20)
    );
}

/// Issue 20 point 6: a local path that does not exist fails `exp check` at its line, and
/// `exp run` stops before making a run directory or a registry row.
#[test]
fn missing_local_paths_fail_check_at_their_line_and_run_makes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), "some text\n").unwrap();
    std::fs::write(
        dir.join("exp.kdl"),
        r#"name "paths"
registry "./reg"
tokenizer "./no-such-tokenizer"
model "doge-tiny"
data {
    source "./corpus.txt"
    source "./missing-corpus"
    seq-len 64
}
stage "pretrain" {
    init "./no-such-checkpoint"
    lr 1e-3
    max-steps 10
}
"#,
    )
    .unwrap();
    let doge = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_doge"))
            .current_dir(dir)
            .args(args)
            .env_remove("DOGE_REGISTRY")
            .output()
            .unwrap()
    };
    for cmd in ["check", "run"] {
        let out = doge(&["exp", cmd, "exp.kdl"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "exp {cmd} passed:\n{err}");
        assert_error(
            &err,
            "exp.kdl:3:11",
            &[
                "`tokenizer`",
                "`./no-such-tokenizer` does not exist",
                "hub id",
            ],
        );
        assert_error(
            &err,
            "exp.kdl:7:5",
            &["`data.source.1`", "`./missing-corpus` does not exist"],
        );
        assert_error(
            &err,
            "exp.kdl:11:10",
            &[
                "`stage.pretrain.init`",
                "`./no-such-checkpoint` does not exist",
            ],
        );
        assert!(!err.contains("corpus.txt` does not exist"), "{err}");
    }
    assert!(
        !dir.join("reg").exists(),
        "exp run made a registry or run directory"
    );
}
