//! Task files (lm-eval's YAML and doge's KDL) against lm-evaluation-harness itself:
//! tests/fixtures/eval/taskfiles/lm_eval_reference.json is what lm-eval 0.4.13 logged running the
//! same files (experiments/tasks/, tests/fixtures/eval/taskfiles/extra/) on the same rows with
//! the same tiny model (tests/python/eval_taskfiles_fixture.py). Prompts must be identical, every
//! log-likelihood within 1e-4, generations and accuracies equal. Also: a KDL translation scores as
//! its YAML, bad files and rows fail where they are wrong, a failed task records nothing, and
//! lm-eval's own task files load (when CI has unpacked them).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::reference_support::{fixtures, tiny_eval_model, tiny_eval_model_dir, tokenizer_256};
use doge::eval::{parse_tasks_with, EvalOptions, Evaluator, TaskResult};

const TOL: f64 = 1e-4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn include_paths() -> Vec<PathBuf> {
    vec![
        root().join("experiments/tasks"),
        fixtures().join("eval/taskfiles/extra"),
    ]
}

fn reference() -> Value {
    let p = fixtures().join("eval/taskfiles/lm_eval_reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn run(specs: &[&str], add_bos: Option<bool>) -> Vec<TaskResult> {
    let model = tiny_eval_model();
    let tok = tokenizer_256();
    let opts = EvalOptions {
        batch_size: 4,
        shots: Some(0),
        data_dir: Some(fixtures().join("eval/taskfiles/rows")),
        add_bos,
        ..EvalOptions::default()
    };
    let ev = Evaluator {
        model: &model,
        tok: &tok,
        opts: &opts,
    };
    let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
    ev.run(&parse_tasks_with(&specs, &root(), &include_paths()).unwrap())
        .unwrap()
}

fn metric(r: &TaskResult, name: &str) -> f64 {
    r.scores
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("{}: no {name}", r.task))
        .value
}

/// lm-eval's logged `(loglikelihood, is_greedy)` per request of one item.
fn resps(item: &Value) -> Vec<(f64, bool)> {
    item["filtered_resps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_f64().unwrap(), r[1].as_bool().unwrap()))
        .collect()
}

const MULTIPLE_CHOICE: [&str; 6] = [
    "sciq",
    "social_iqa",
    "commonsense_qa",
    "piqa",
    "arc_easy",
    "openbookqa",
];

fn check_multiple_choice(task: &str, got: &TaskResult, want: &Value) -> f64 {
    let items = want["items"].as_array().unwrap();
    assert_eq!(got.samples.len(), items.len(), "{task}");
    let mut worst = 0.0f64;
    for (s, w) in got.samples.iter().zip(items) {
        let args = w["arguments"].as_array().unwrap();
        let n = s["choices"].as_array().unwrap().len();
        // The prompt and every continuation, character for character.
        for (j, a) in args.iter().take(n).enumerate() {
            assert_eq!(s["context"], a[0], "{task} item {}: context", w["doc_id"]);
            assert_eq!(s["continuations"][j], a[1], "{task} item {}", w["doc_id"]);
        }
        let mut lls: Vec<f64> = s["loglikelihoods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        lls.extend(
            s["unconditional_loglikelihoods"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap()),
        );
        let greedy = s["is_greedy"].as_array().unwrap();
        let r = resps(w);
        assert_eq!(lls.len(), r.len(), "{task}: requests per item");
        for (k, (g, (l, gr))) in lls.iter().zip(&r).enumerate() {
            let d = (g - l).abs();
            worst = worst.max(d);
            assert!(
                d < TOL,
                "{task} item {} request {k}: doge {g} vs lm-eval {l}",
                w["doc_id"]
            );
            if k < n {
                assert_eq!(greedy[k].as_bool().unwrap(), *gr, "{task}");
            }
        }
        for m in ["acc", "acc_norm", "acc_mutual_info"] {
            if let Some(v) = w.get(m) {
                assert_eq!(
                    s["metrics"][m].as_f64().unwrap(),
                    v.as_f64().unwrap(),
                    "{task} {m}"
                );
            }
        }
    }
    for (k, v) in want["metrics"].as_object().unwrap() {
        if let Some(m) = k.strip_suffix(",none") {
            assert_eq!(metric(got, m), v.as_f64().unwrap(), "{task} {m}");
        }
    }
    worst
}

#[test]
fn multiple_choice_files_score_as_lm_eval() {
    let r = reference();
    let results = run(&MULTIPLE_CHOICE, None);
    let mut worst = 0.0f64;
    for task in MULTIPLE_CHOICE {
        let got = results.iter().find(|t| t.task == task).unwrap();
        assert_eq!(
            got.add_bos,
            Some(true),
            "the 256-id tokenizer puts bos first"
        );
        worst = worst.max(check_multiple_choice(
            task,
            got,
            &r["runs"]["default"][task],
        ));
    }
    eprintln!("max |doge - lm-eval| log-likelihood: {worst:.2e}");
}

#[test]
fn add_bos_false_scores_as_lm_eval_without_bos() {
    let r = reference();
    let results = run(&["piqa"], Some(false));
    assert_eq!(results[0].add_bos, Some(false));
    check_multiple_choice("piqa", &results[0], &r["runs"]["no_bos"]["piqa"]);
    // And it changes the scores: the default run differs.
    let with = run(&["piqa"], None);
    assert_ne!(
        results[0].samples[0]["loglikelihoods"],
        with[0].samples[0]["loglikelihoods"]
    );
}

#[test]
fn loglikelihood_rolling_and_generation_score_as_lm_eval() {
    let r = reference();
    let want = &r["runs"]["default"];
    let results = run(&["fill_word", "passages", "short_answer"], None);
    let by = |t: &str| results.iter().find(|x| x.task == t).unwrap();

    let fill = by("fill_word");
    for (s, w) in fill
        .samples
        .iter()
        .zip(want["fill_word"]["items"].as_array().unwrap())
    {
        let (l, g) = resps(w)[0];
        assert_eq!(s["context"], w["arguments"][0][0]);
        assert_eq!(s["target"], w["arguments"][0][1]);
        assert!(
            (s["loglikelihood"].as_f64().unwrap() - l).abs() < TOL,
            "{s} vs {w}"
        );
        assert_eq!(s["is_greedy"].as_bool().unwrap(), g);
    }
    let ppl = want["fill_word"]["metrics"]["perplexity,none"]
        .as_f64()
        .unwrap();
    assert!((metric(fill, "perplexity") / ppl - 1.0).abs() < 1e-4);

    let passages = by("passages");
    for (s, w) in passages
        .samples
        .iter()
        .zip(want["passages"]["items"].as_array().unwrap())
    {
        let l = w["filtered_resps"][0].as_f64().unwrap();
        let g = s["loglikelihood"].as_f64().unwrap();
        // A sum over hundreds of tokens: within 1e-4 per token on average.
        assert!(
            (g - l).abs() < TOL * s["bytes"].as_f64().unwrap(),
            "doge {g} vs lm-eval {l}"
        );
    }
    for m in ["word_perplexity", "byte_perplexity", "bits_per_byte"] {
        let w = want["passages"]["metrics"][format!("{m},none")]
            .as_f64()
            .unwrap();
        assert!(
            (metric(passages, m) / w - 1.0).abs() < 1e-4,
            "{m}: {} vs {w}",
            metric(passages, m)
        );
    }

    let gen = by("short_answer");
    let items = want["short_answer"]["items"].as_array().unwrap();
    for w in items {
        let i = w["doc_id"].as_u64().unwrap() as usize;
        let s = &gen.samples[i];
        assert_eq!(s["context"], w["arguments"][0][0]);
        assert_eq!(
            s["response"], w["resps"][0][0],
            "the greedy text, cut at `until`"
        );
        let filter = w["filter"].as_str().unwrap();
        assert_eq!(
            s["filtered"][filter], w["filtered_resps"][0],
            "filter {filter}"
        );
    }
    for f in ["first-word", "lowered"] {
        let key = format!("exact_match,{f}");
        assert_eq!(
            metric(gen, &key),
            want["short_answer"]["metrics"][&key].as_f64().unwrap()
        );
    }
}

#[test]
fn a_kdl_task_scores_as_its_yaml() {
    let kdl = fixtures().join("eval/taskfiles/social_iqa.kdl");
    let from_kdl = run(&[kdl.to_str().unwrap()], None);
    let from_yaml = run(&["social_iqa"], None);
    assert_eq!(from_kdl[0].task, "social_iqa");
    for (a, b) in from_kdl[0].samples.iter().zip(&from_yaml[0].samples) {
        assert_eq!(a["context"], b["context"]);
        assert_eq!(a["loglikelihoods"], b["loglikelihoods"]);
        assert_eq!(
            a["unconditional_loglikelihoods"],
            b["unconditional_loglikelihoods"]
        );
    }
    for (a, b) in from_kdl[0].scores.iter().zip(&from_yaml[0].scores) {
        assert_eq!((&a.metric, a.value), (&b.metric, b.value));
    }
}

#[test]
fn a_group_averages_its_tasks_by_size() {
    let results = run(&["mc6"], None);
    let group = results.iter().find(|r| r.task == "mc6").unwrap();
    let tasks: Vec<&TaskResult> = results.iter().filter(|r| r.task != "mc6").collect();
    assert_eq!(tasks.len(), 6);
    let n: usize = tasks.iter().map(|t| t.scores[0].n).sum();
    let mean = tasks
        .iter()
        .map(|t| metric(t, "acc") * t.scores[0].n as f64)
        .sum::<f64>()
        / n as f64;
    assert!((metric(group, "acc") - mean).abs() < 1e-12);
}

/// The error `doge eval` prints for a task file written into a fresh folder.
fn eval_error(file: &str, text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    std::fs::write(&path, text).unwrap();
    let specs = vec![path.display().to_string()];
    match parse_tasks_with(&specs, dir.path(), &[]) {
        Err(e) => format!("{e:#}"),
        Ok(tasks) => {
            let model = tiny_eval_model();
            let tok = tokenizer_256();
            let opts = EvalOptions {
                data_dir: Some(fixtures().join("eval/taskfiles/rows")),
                ..EvalOptions::default()
            };
            let ev = Evaluator {
                model: &model,
                tok: &tok,
                opts: &opts,
            };
            format!("{:#}", ev.run(&tasks).map(|_| ()).unwrap_err())
        }
    }
}

const PIQA_HEAD: &str = "task: piqa_copy\ndataset_path: ybisk/piqa\nvalidation_split: validation\noutput_type: multiple_choice\n";

#[test]
fn python_and_unknown_keys_are_refused_where_they_are_written() {
    let e = eval_error(
        "f.yaml",
        &format!("{PIQA_HEAD}process_docs: !function utils.process_docs\ndoc_to_text: goal\n"),
    );
    assert!(e.contains("f.yaml:5:"), "{e}");
    assert!(
        e.contains("`process_docs`") && e.contains("!function utils.process_docs"),
        "{e}"
    );
    assert!(e.contains("template"), "says what to write instead: {e}");

    let e = eval_error("k.yaml", &format!("{PIQA_HEAD}doc_to_txt: goal\n"));
    assert!(
        e.contains("k.yaml:5:1") && e.contains("`doc_to_txt`"),
        "{e}"
    );
    assert!(e.contains("did you mean `doc_to_text`"), "{e}");

    let e = eval_error(
        "t.yaml",
        &format!("{PIQA_HEAD}doc_to_text: \"{{{{ goal \"\n"),
    );
    assert!(
        e.contains("t.yaml:5:14") && e.contains("not a valid template"),
        "{e}"
    );
}

#[test]
fn a_template_that_fails_on_a_row_names_the_item() {
    // Row 1 of the fixture's piqa has no `sol3`... no row has; the first row fails, so index 0.
    let e = eval_error(
        "r.yaml",
        &format!("{PIQA_HEAD}doc_to_text: \"{{{{ goal }}}}\"\ndoc_to_choice: \"{{{{ [sol1, sol3] }}}}\"\ndoc_to_target: label\n"),
    );
    assert!(e.contains("task piqa_copy, item 0"), "{e}");
    assert!(
        e.contains("validation.jsonl:1"),
        "the row's file and line: {e}"
    );
    assert!(
        e.contains("`doc_to_choice`") && e.contains("undefined"),
        "{e}"
    );
    // A label outside the choices: the item is named too.
    let rows = tempfile::tempdir().unwrap();
    std::fs::write(
        rows.path().join("validation.jsonl"),
        "{\"goal\": \"a\", \"sol1\": \"b\", \"sol2\": \"c\", \"label\": 0}\n{\"goal\": \"a\", \"sol1\": \"b\", \"sol2\": \"c\", \"label\": 2}\n",
    )
    .unwrap();
    let e = eval_error(
        "g.yaml",
        &format!(
            "task: g\ndataset_path: {}\nvalidation_split: validation\noutput_type: multiple_choice\ndoc_to_text: goal\ndoc_to_choice: \"{{{{ [sol1, sol2] }}}}\"\ndoc_to_target: label\n",
            rows.path().display()
        ),
    );
    assert!(
        e.contains("validation.jsonl:2") && e.contains("not an index of the 2 choices"),
        "{e}"
    );
}

#[test]
fn a_failed_task_records_nothing_and_the_others_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    tiny_eval_model_dir(&dir.path().join("model"));
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!("{PIQA_HEAD}doc_to_text: \"{{{{ goal }}}}\"\ndoc_to_choice: \"{{{{ [sol1, nope] }}}}\"\ndoc_to_target: label\n"),
    )
    .unwrap();
    let good = root().join("experiments/tasks/piqa.yaml");
    let db = dir.path().join("reg.sqlite");
    let out = Command::new(env!("CARGO_BIN_EXE_doge"))
        .current_dir(root())
        .args(["eval", "--model"])
        .arg(dir.path().join("model"))
        .arg("--tasks")
        .arg(format!("{},{}", good.display(), bad.display()))
        .args(["--data-dir"])
        .arg(fixtures().join("eval/taskfiles/rows"))
        .args(["--shots", "0", "--quiet", "--registry"])
        .arg(&db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 of 2 tasks failed") && stderr.contains("piqa_copy"),
        "{stderr}"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let tasks: Vec<(String, Option<i64>, Option<String>)> = conn
        .prepare("SELECT DISTINCT task, add_bos, task_file FROM evals")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].0, "piqa");
    assert_eq!(tasks[0].1, Some(1), "bos recorded");
    assert!(tasks[0].2.as_deref().unwrap().ends_with("piqa.yaml"));
    let status: String = conn
        .query_row("SELECT status FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(status, "failed");
}

/// lm-eval's own task folder: `DOGE_LM_EVAL_TASKS`, else the installed `lm_eval` package's
/// (CI unpacks the lm_eval wheel and sets the variable).
fn lm_eval_tasks() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DOGE_LM_EVAL_TASKS") {
        return Some(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import lm_eval, os; print(os.path.dirname(lm_eval.__file__))",
        ])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("tasks");
    dir.is_dir().then_some(dir)
}

#[test]
fn lm_eval_own_task_files_load_or_say_why_not() {
    let Some(dir) = lm_eval_tasks() else {
        eprintln!("skipped: no lm_eval tasks folder (set DOGE_LM_EVAL_TASKS)");
        return;
    };
    let mut files = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                out.push(p);
            }
        }
    }
    walk(&dir, &mut files);
    let (mut ok, mut refused, mut yaml) = (0, 0, 0);
    let mut unexplained = Vec::new();
    for f in &files {
        match doge::eval::taskfile::files::load(f) {
            Ok(_) => ok += 1,
            Err(e) => {
                let msg = e.to_string();
                // Every refusal names its file and line and says why.
                // `file:line:col: ...`, the file being this one or one it includes.
                let located = msg
                    .split(": ")
                    .next()
                    .and_then(|loc| loc.rsplitn(3, ':').nth(2).map(|_| loc))
                    .is_some_and(|loc| loc.rsplit(':').take(2).all(|n| n.parse::<usize>().is_ok()));
                let known = located
                    && [
                        "!function",
                        "not supported",
                        "not a metric doge computes",
                        "not one doge runs",
                        "doge generates greedily",
                        "does not exist",
                        "doge aggregates",
                        "doge supports only",
                        "a task file needs",
                        "not an output type",
                        "doge reads `data_files`",
                        "unknown key",
                        "doge does not execute",
                        "repeats must be 1",
                        "unknown generation option",
                        "unknown metric option",
                        "an entry without",
                        "not valid YAML",
                    ]
                    .iter()
                    .any(|k| msg.contains(k));
                // yaml-rust2 is stricter than PyYAML about the indentation of a few multi-line
                // flow scalars; those files fail at their line, counted apart.
                yaml += msg.contains("not valid YAML") as usize;
                if known {
                    refused += 1;
                    if std::env::var_os("DOGE_SHOW_REFUSALS").is_some() {
                        let k: String = msg
                            .split(": ")
                            .skip(1)
                            .collect::<Vec<_>>()
                            .join(": ")
                            .chars()
                            .take(90)
                            .collect();
                        eprintln!("REFUSED {k}");
                    }
                } else {
                    unexplained.push(msg);
                }
            }
        }
    }
    eprintln!(
        "{} lm-eval task files: {ok} load, {refused} refused with a located reason ({yaml} of them YAML PyYAML accepts)",
        files.len()
    );
    assert!(yaml <= 30, "{yaml} files fail to parse");
    assert!(
        files.len() > 1000,
        "the lm_eval wheel holds thousands of task files"
    );
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for u in &unexplained {
        let k: String = u
            .split(": ")
            .skip(1)
            .collect::<Vec<_>>()
            .join(": ")
            .chars()
            .take(70)
            .collect();
        *kinds.entry(k).or_default() += 1;
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    let top: Vec<String> = kinds
        .iter()
        .take(40)
        .map(|(k, n)| format!("{n:5} {k}"))
        .collect();
    assert!(
        unexplained.is_empty(),
        "{} unexplained:\n{}\nfirst: {}",
        unexplained.len(),
        top.join("\n"),
        unexplained[0]
    );
    // Most refusals are `!function` (Python in the file); then metrics doge does not compute
    // (bleu, f1...) and sampling. At lm-eval 0.4.13: 4,145 of 13,986 files load.
    assert!(ok * 4 > files.len(), "{ok} of {} load", files.len());
}

/// lm-eval's own files for the same six tasks, run by doge unchanged: their prompts are the ones
/// of experiments/tasks/, so they must score what lm-eval scored for those. Their hub ids and
/// splits differ from ours (`lighteval/siqa`, `baber/piqa`, test splits), so the rows are laid out
/// under those names in a temporary data folder.
#[test]
fn lm_eval_own_files_for_the_six_tasks_score_as_lm_eval() {
    let Some(dir) = lm_eval_tasks() else {
        eprintln!("skipped: no lm_eval tasks folder (set DOGE_LM_EVAL_TASKS)");
        return;
    };
    let rows = fixtures().join("eval/taskfiles/rows");
    let data = tempfile::tempdir().unwrap();
    for (ours, theirs) in [
        ("allenai/sciq", "allenai/sciq"),
        ("allenai/social_i_qa", "lighteval/siqa"),
        ("tau/commonsense_qa", "tau/commonsense_qa"),
        ("ybisk/piqa", "baber/piqa"),
        ("allenai/ai2_arc/ARC-Easy", "allenai/ai2_arc/ARC-Easy"),
        ("allenai/openbookqa/main", "allenai/openbookqa/main"),
    ] {
        let to = data.path().join(theirs);
        std::fs::create_dir_all(&to).unwrap();
        for split in ["train", "validation", "test"] {
            let from = if split == "train" {
                "train"
            } else {
                "validation"
            };
            std::fs::copy(
                rows.join(ours).join(format!("{from}.jsonl")),
                to.join(format!("{split}.jsonl")),
            )
            .unwrap();
        }
    }
    let files = [
        ("sciq", "sciq/sciq.yaml"),
        ("social_iqa", "siqa/siqa.yaml"),
        ("commonsense_qa", "commonsense_qa/default.yaml"),
        ("piqa", "piqa/piqa.yaml"),
        ("arc_easy", "arc/arc_easy.yaml"),
        ("openbookqa", "openbookqa/openbookqa.yaml"),
    ];
    let model = tiny_eval_model();
    let tok = tokenizer_256();
    let opts = EvalOptions {
        batch_size: 4,
        shots: Some(0),
        data_dir: Some(data.path().to_path_buf()),
        ..EvalOptions::default()
    };
    let ev = Evaluator {
        model: &model,
        tok: &tok,
        opts: &opts,
    };
    let r = reference();
    for (task, file) in files {
        let specs = vec![dir.join(file).display().to_string()];
        let got = ev
            .run(&parse_tasks_with(&specs, &root(), &[]).unwrap())
            .unwrap();
        let want = &r["runs"]["default"][task]["items"];
        for (s, w) in got[0].samples.iter().zip(want.as_array().unwrap()) {
            assert_eq!(s["context"], w["arguments"][0][0], "{file}");
            let lls = s["loglikelihoods"].as_array().unwrap();
            for (g, (l, _)) in lls.iter().zip(resps(w)) {
                assert!((g.as_f64().unwrap() - l).abs() < TOL, "{file}: {g} vs {l}");
            }
        }
    }
}

/// A `task` block in an experiment's eval stage runs as its YAML does and records against the
/// stage's run; a wrong key in it is an error at its line, before anything runs.
#[test]
fn a_task_block_in_an_eval_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tiny_eval_model_dir(&dir.join("model"));
    let rows = fixtures().join("eval/taskfiles/rows/ybisk/piqa/validation.jsonl");
    let exp = |extra: &str| {
        format!(
            r#"name "taskblock"
seed 1
device "cpu"
registry "./registry"
model vocab=256 hidden=32 intermediate=64 layers=2 heads=2 kv-heads=1 keep-window-size=8
tokenizer "./model"
stage "eval" {{
    init "./model"
    task "piqa_kdl" {{
        dataset-path "json"
        data-files validation="{rows}"
        validation-split "validation"
        output-type "multiple_choice"
        doc-to-text "Question: {{{{ goal }}}}\nAnswer:"
        doc-to-choice "{{{{ [sol1, sol2] }}}}"
        doc-to-target "label"
        metric "acc"{extra}
    }}
}}
"#,
            rows = rows.display()
        )
    };
    std::fs::write(dir.join("bad.kdl"), exp("\n        doc-to-txt \"x\"")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_doge"))
        .current_dir(dir)
        .args(["exp", "check", "bad.kdl"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.kdl:18:") && stderr.contains("doc-to-txt"),
        "{stderr}"
    );

    std::fs::write(dir.join("exp.kdl"), exp("")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_doge"))
        .current_dir(dir)
        .args(["exp", "run", "exp.kdl", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conn = rusqlite::Connection::open(dir.join("registry/doge.sqlite")).unwrap();
    let (task, value): (String, f64) = conn
        .query_row(
            "SELECT task, value FROM evals WHERE metric = 'acc'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(task, "piqa_kdl");
    // The stage read its checkpoint, which holds the experiment's tokenizer: still whole.
    let tok = std::fs::read_to_string(dir.join("model/tokenizer.json")).unwrap();
    assert!(tok.len() > 1000, "tokenizer.json was emptied");
    // experiments/tasks/piqa.yaml through `doge eval` on the same model and rows: the same score.
    let out = Command::new(env!("CARGO_BIN_EXE_doge"))
        .current_dir(root())
        .args(["eval", "--model"])
        .arg(dir.join("model"))
        .args([
            "--tasks",
            "experiments/tasks/piqa.yaml",
            "--shots",
            "0",
            "--no-registry",
            "--quiet",
        ])
        .arg("--data-dir")
        .arg(fixtures().join("eval/taskfiles/rows"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let yaml_acc: f64 = table
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[0] == "piqa" && f[1] == "acc").then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{table}{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(format!("{value:.4}"), format!("{yaml_acc:.4}"));
}
