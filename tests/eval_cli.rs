//! `doge eval` end to end on the tiny reference model: scores printed and written per item, recorded
//! in the registry (an eval-only run, or the run that owns the checkpoint) and shown by
//! `doge runs show`; and an experiment's `eval` stage recording against its run.

use std::path::Path;
use std::process::Command;

use crate::reference_support::{fixtures, tiny_eval_model_dir};

fn doge(dir: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_doge"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "doge {args:?} failed:\n{so}\n{se}");
    (so, se)
}

fn evals(db: &Path) -> Vec<(String, String, String, f64, Option<f64>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT run_id, task, metric, value, stderr FROM evals ORDER BY rowid")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn eval_only_run_with_samples_and_runs_show() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tiny_eval_model_dir(&dir.join("model"));
    let rows = fixtures().join("eval/rows");
    let (table, _) = doge(
        dir,
        &[
            "eval",
            "--model",
            "model",
            "--tasks",
            "arc_easy,piqa",
            "--shots",
            "0",
            "--batch-size",
            "3",
            "--data-dir",
            rows.to_str().unwrap(),
            "--registry",
            "reg/doge.sqlite",
            "--log-samples",
            "samples.jsonl",
            "--quiet",
        ],
    );
    assert!(
        table.contains("arc_easy") && table.contains("acc_norm_nospace"),
        "{table}"
    );
    let samples = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = samples
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3 + 3);
    assert_eq!(lines[0]["loglikelihoods"].as_array().unwrap().len(), 4);
    assert!(lines[0]["context"]
        .as_str()
        .unwrap()
        .starts_with("Question: "));

    let rows = evals(&dir.join("reg/doge.sqlite"));
    assert_eq!(rows.len(), 2 * 3, "{rows:?}");
    let run = rows[0].0.clone();
    assert!(run.starts_with("eval-"), "{run}");
    assert!(rows.iter().all(|r| r.0 == run && r.4.is_some()));
    let (show, _) = doge(
        dir,
        &["runs", "show", &run, "--registry", "reg/doge.sqlite"],
    );
    assert!(show.contains("status      done"), "{show}");
    for needle in ["arc_easy", "piqa", "acc_norm_nospace"] {
        assert!(show.contains(needle), "{needle} missing from:\n{show}");
    }

    // The same checkpoint again: the same eval-only run, scores appended.
    doge(
        dir,
        &[
            "eval",
            "--model",
            "model",
            "--tasks",
            "piqa:0",
            "--data-dir",
            fixtures().join("eval/rows").to_str().unwrap(),
            "--registry",
            "reg/doge.sqlite",
            "--quiet",
        ],
    );
    let rows = evals(&dir.join("reg/doge.sqlite"));
    assert_eq!(rows.len(), 9);
    assert!(rows.iter().all(|r| r.0 == run));
}

#[test]
fn scores_go_to_the_run_that_owns_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ckpt = dir.join("registry/exp-abc123/pretrain/checkpoint-00000010");
    tiny_eval_model_dir(&ckpt);
    let reg = doge::registry::Registry::open(&dir.join("registry/doge.sqlite")).unwrap();
    reg.start_run(&doge::registry::NewRun {
        id: "abc123-pretrain".into(),
        experiment: "exp".into(),
        experiment_path: None,
        sweep: None,
        parent_id: None,
        stage: "pretrain".into(),
        config_json: "{}".into(),
        config_hash: "abc123".into(),
        device: "cpu".into(),
        stage_key: None,
    })
    .unwrap();
    reg.add_artifact(
        "abc123-pretrain",
        "checkpoint",
        Path::new("registry/exp-abc123/pretrain/checkpoint-00000010"),
        Some(10),
    )
    .unwrap();
    drop(reg);
    let rows = fixtures().join("eval/rows/piqa");
    let task = format!("piqa:0={}", rows.display());
    // Run from elsewhere: the default --registry (elsewhere/registry/doge.sqlite) must stay unused.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (_, err) = doge(
        &elsewhere,
        &[
            "eval",
            "--model",
            ckpt.to_str().unwrap(),
            "--tasks",
            &task,
            "--quiet",
        ],
    );
    assert!(err.contains("run abc123-pretrain"), "{err}");
    let rows = evals(&dir.join("registry/doge.sqlite"));
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.0 == "abc123-pretrain"), "{rows:?}");
    // Nothing went to the default registry.
    assert!(!dir
        .join("registry/doge.sqlite")
        .with_file_name("x")
        .exists());
}

#[test]
fn eval_stage_records_against_its_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tiny_eval_model_dir(&dir.join("model"));
    let rows = fixtures().join("eval/rows");
    let exp = format!(
        r#"
name "evalstage"
seed 1
device "cpu"
registry "./registry"
model vocab=256 hidden=32 intermediate=64 layers=2 heads=2 kv-heads=1 keep-window-size=8
tokenizer "./model"
stage "eval" {{
    init "./model"
    batch-size 4
    tasks "arc_easy:0={rows}/arc_easy" "winogrande:0={rows}/winogrande"
}}
"#,
        rows = rows.display()
    );
    std::fs::write(dir.join("exp.kdl"), exp).unwrap();
    doge(dir, &["exp", "run", "exp.kdl"]);
    let rows = evals(&dir.join("registry/doge.sqlite"));
    assert_eq!(rows.len(), 2 * 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.0.ends_with("-eval")), "{rows:?}");
    assert!(rows.iter().any(|r| r.1 == "winogrande" && r.2 == "acc"));
    let run = rows[0].0.clone();
    let (show, _) = doge(
        dir,
        &["runs", "show", &run, "--registry", "registry/doge.sqlite"],
    );
    assert!(
        show.contains("winogrande") && show.contains("status      done"),
        "{show}"
    );
}

#[test]
fn perplexity_of_a_text_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tiny_eval_model_dir(&dir.join("model"));
    // Two documents, one longer than the model's 128 positions (rolling windows).
    std::fs::create_dir_all(dir.join("texts")).unwrap();
    let long = "Question: Which plant part absorbs minerals?\nAnswer: root\n".repeat(12);
    std::fs::write(dir.join("texts/a.txt"), &long).unwrap();
    std::fs::write(
        dir.join("texts/b.jsonl"),
        "{\"text\": \"What creates a valley? water\"}\n{\"text\": \"\"}\n",
    )
    .unwrap();
    doge(
        dir,
        &[
            "eval",
            "--model",
            "model",
            "--tasks",
            "perplexity=texts",
            "--log-samples",
            "ppl.jsonl",
            "--no-registry",
            "--quiet",
        ],
    );
    let samples: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("ppl.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), 2, "the empty row is skipped");
    let tokens = samples[0]["tokens"].as_u64().unwrap();
    assert!(tokens > 128, "{tokens}");
    assert_eq!(samples[0]["bytes"].as_u64().unwrap(), long.len() as u64);
}

/// Issue 20 point 11: `doge eval` writes lm-eval's results.json (`--output`, else beside the
/// registry); its accuracies are the argmax-of-log-likelihood means of the logged samples, with
/// lm-eval's standard error (sample std / sqrt(n)).
#[test]
fn results_json_in_lm_eval_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tiny_eval_model_dir(&dir.join("model"));
    let rows = fixtures().join("eval/rows");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "eval",
            "--model",
            "model",
            "--tasks",
            "arc_easy,piqa",
            "--shots",
            "0",
            "--data-dir",
            rows.to_str().unwrap(),
            "--registry",
            "reg/doge.sqlite",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let a = args(&[
        "--log-samples",
        "samples.jsonl",
        "--output",
        "out/results.json",
    ]);
    doge(dir, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/results.json")).unwrap())
            .unwrap();
    let samples: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for task in ["arc_easy", "piqa"] {
        let hits: Vec<f64> = samples
            .iter()
            .filter(|s| s["task"] == task)
            .map(|s| {
                let ll: Vec<f64> = s["loglikelihoods"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect();
                let best = (0..ll.len())
                    .max_by(|&i, &j| ll[i].total_cmp(&ll[j]))
                    .unwrap();
                f64::from(best as u64 == s["gold"].as_u64().unwrap())
            })
            .collect();
        let n = hits.len() as f64;
        assert_eq!(n, 3.0, "{task}");
        let mean = hits.iter().sum::<f64>() / n;
        let var = hits.iter().map(|h| (h - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let r = &results["results"][task];
        assert!(
            (r["acc,none"].as_f64().unwrap() - mean).abs() < 1e-12,
            "{task}: {r}"
        );
        assert!(
            (r["acc_stderr,none"].as_f64().unwrap() - (var / n).sqrt()).abs() < 1e-12,
            "{task}: {r}"
        );
        assert!(r["acc_norm,none"].is_number(), "{task}: {r}");
        assert_eq!(results["n-shot"][task], 0, "{task}");
        assert_eq!(results["n-samples"][task]["effective"], 3, "{task}");
        assert_eq!(results["higher_is_better"][task]["acc"], true, "{task}");
    }
    assert_eq!(results["config"]["model_args"], "pretrained=model");
    assert!(results["doge_run"].as_str().unwrap().starts_with("eval-"));

    // No --output: `evals/<run>/results_<time>.json` beside the registry file.
    let a = args(&[]);
    doge(dir, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let run = results["doge_run"].as_str().unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.join("reg/evals").join(run))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with("results_") && files[0].ends_with(".json"),
        "{files:?}"
    );
}
