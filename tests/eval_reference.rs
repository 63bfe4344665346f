//! doge's evaluation against transformers (tests/fixtures/eval/loglik_reference.json, written by
//! tests/python/eval_loglik_fixture.py with DogeForCausalLM on the tiny dense reference model):
//! per-choice log-likelihoods and greedy flags of the same token sequences within 1e-4, the whole
//! pipeline (rows -> prompt -> context/continuation split -> tokens -> scores -> predictions) on the
//! fixture rows, TriviaQA's greedy generation, and results that do not depend on the batch size.

use std::path::Path;

use serde_json::Value;

use doge::eval::encoding::encode_pair;
use doge::eval::scoring::{loglikelihoods, Request, ScoreOptions};
use doge::eval::{parse_tasks, EvalOptions, Evaluator, TaskResult};

const TOL: f64 = 1e-4;

use crate::reference_support::{fixtures, tiny_eval_model as model, tokenizer_256 as tokenizer};

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("eval/loglik_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

const TASKS: [&str; 8] = [
    "hellaswag",
    "arc_easy",
    "arc_challenge",
    "piqa",
    "openbookqa",
    "boolq",
    "mmlu",
    "winogrande",
];

/// Every (request, reference loglik, reference greedy) of the fixture.
fn reference_requests(r: &Value) -> Vec<(Request, f64, bool)> {
    let mut out = Vec::new();
    for task in TASKS {
        for item in r["tasks"][task].as_array().unwrap() {
            for c in item["choices"].as_array().unwrap() {
                out.push((
                    Request {
                        context: ids(&c["context_ids"]),
                        continuation: ids(&c["continuation_ids"]),
                    },
                    c["loglikelihood"].as_f64().unwrap(),
                    c["is_greedy"].as_bool().unwrap(),
                ));
            }
        }
    }
    for p in r["greedy_probes"].as_array().unwrap() {
        out.push((
            Request {
                context: ids(&p["context_ids"]),
                continuation: ids(&p["continuation_ids"]),
            },
            p["loglikelihood"].as_f64().unwrap(),
            p["is_greedy"].as_bool().unwrap(),
        ));
    }
    out
}

#[test]
fn per_choice_logliks_equal_transformers() {
    let r = reference();
    let cases = reference_requests(&r);
    assert!(
        cases.iter().any(|c| c.2),
        "the probes include greedy continuations"
    );
    assert!(cases.iter().any(|c| !c.2));
    let requests: Vec<Request> = cases.iter().map(|c| c.0.clone()).collect();
    let model = model();
    // One full sequence per request, and the choices of one context scored from one pass over
    // it (its KV cache extended by each continuation): both against transformers.
    for share_contexts in [false, true] {
        let opts = ScoreOptions {
            batch_size: 8,
            max_len: 128,
            share_contexts,
            shared_min_context: 1,
        };
        let got = loglikelihoods(&model, &requests, opts, None).unwrap();
        let mut worst = 0.0f64;
        for ((req, want, greedy), g) in cases.iter().zip(&got) {
            let diff = (g.logprob - want).abs();
            worst = worst.max(diff);
            assert!(
                diff < TOL,
                "{req:?} (shared contexts {share_contexts}): doge {} vs transformers {want}",
                g.logprob
            );
            assert_eq!(g.is_greedy, *greedy, "{req:?}");
            assert_eq!(g.tokens, req.continuation.len());
        }
        eprintln!(
            "{} requests, shared contexts {share_contexts}: max |doge - transformers| = {worst:.2e}",
            cases.len()
        );
    }
    let mut contexts: Vec<&[u32]> = requests.iter().map(|r| r.context.as_slice()).collect();
    contexts.sort();
    contexts.dedup();
    assert!(
        contexts.len() < requests.len(),
        "some requests share a context"
    );
}

fn run_tasks(tasks: &[&str], batch_size: usize) -> Vec<TaskResult> {
    let model = model();
    let tok = tokenizer();
    let opts = EvalOptions {
        batch_size,
        shots: Some(0),
        data_dir: Some(fixtures().join("eval/rows")),
        ..EvalOptions::default()
    };
    let ev = Evaluator {
        model: &model,
        tok: &tok,
        opts: &opts,
    };
    let specs: Vec<String> = tasks.iter().map(|s| s.to_string()).collect();
    ev.run(&parse_tasks(&specs, Path::new(".")).unwrap())
        .unwrap()
}

#[test]
fn pipeline_from_rows_matches_transformers() {
    let r = reference();
    let tok = tokenizer();
    let results = run_tasks(&TASKS, 8);
    for task in TASKS {
        let res = results.iter().find(|x| x.task == task).unwrap();
        let want = r["tasks"][task].as_array().unwrap();
        assert_eq!(res.samples.len(), want.len(), "{task}");
        for (s, w) in res.samples.iter().zip(want) {
            let choices = w["choices"].as_array().unwrap();
            for (j, c) in choices.iter().enumerate() {
                let context = match &s["context"] {
                    Value::Array(a) => a[j].as_str().unwrap(),
                    v => v.as_str().unwrap(),
                };
                // The prompt text and the scored continuation, as the Python harness code wrote them.
                assert_eq!(context, c["context"].as_str().unwrap(), "{task}");
                assert_eq!(
                    s["choices"][j].as_str().unwrap(),
                    c["continuation"].as_str().unwrap(),
                    "{task}"
                );
                // The context/continuation split in token ids.
                let req = encode_pair(&tok, context, s["choices"][j].as_str().unwrap()).unwrap();
                assert_eq!(req.context, ids(&c["context_ids"]), "{task}: {context:?}");
                assert_eq!(req.continuation, ids(&c["continuation_ids"]), "{task}");
                let got = s["loglikelihoods"][j].as_f64().unwrap();
                let reference = c["loglikelihood"].as_f64().unwrap();
                assert!(
                    (got - reference).abs() < TOL,
                    "{task}: {got} vs {reference}"
                );
            }
            assert_eq!(s["gold"], w["gold"], "{task}");
            for m in ["acc", "acc_norm", "acc_norm_nospace"] {
                assert_eq!(s["prediction"][m], w["prediction"][m], "{task} {m}");
            }
        }
    }
    // `arc` averages the two ARC sets.
    let arc = results.iter().find(|x| x.task == "arc").unwrap();
    let mean = |t: &str| results.iter().find(|x| x.task == t).unwrap().scores[0].value;
    assert_eq!(
        arc.scores[0].value,
        (mean("arc_easy") + mean("arc_challenge")) / 2.0
    );
}

#[test]
fn triviaqa_generation_matches_transformers() {
    let r = reference();
    let results = run_tasks(&["triviaqa"], 1);
    let res = &results[0];
    for (s, w) in res.samples.iter().zip(r["triviaqa"].as_array().unwrap()) {
        assert_eq!(s["context"], w["context"]);
        assert_eq!(s["prediction"], w["prediction"], "{s}");
    }
    // A random tiny model answers nothing right; the metric is there with its stderr.
    assert_eq!(res.scores[0].metric, "qem");
    assert_eq!(res.scores[0].n, 2);
}

#[test]
fn batch_size_changes_no_score() {
    let tasks = ["hellaswag", "arc_easy", "piqa", "mmlu", "winogrande"];
    let one = run_tasks(&tasks, 1);
    let eight = run_tasks(&tasks, 8);
    for (a, b) in one.iter().zip(&eight) {
        assert_eq!(a.task, b.task);
        for (x, y) in a.scores.iter().zip(&b.scores) {
            assert_eq!(x, y, "{}", a.task);
        }
        for (x, y) in a.samples.iter().zip(&b.samples) {
            let lx = x["loglikelihoods"].as_array().unwrap();
            let ly = y["loglikelihoods"].as_array().unwrap();
            for (p, q) in lx.iter().zip(ly) {
                let (p, q) = (p.as_f64().unwrap(), q.as_f64().unwrap());
                // Matmuls over other widths round differently in the last bits (about 1e-6 here);
                // the accuracies above must be identical.
                assert!((p - q).abs() < 1e-5, "{}: {p} vs {q}", a.task);
            }
        }
    }
}

/// Perplexity over rolling windows against lm-eval's definitions run with transformers
/// (tests/fixtures/eval/perplexity_reference.json, from tests/python/eval_perplexity_fixture.py):
/// one document needs four windows of the model's 128 positions, one has non-ASCII bytes and a
/// trailing newline (an empty last word for lm-eval), and a blank row is skipped.
#[test]
fn perplexity_matches_lm_eval_rolling_windows() {
    let text = std::fs::read_to_string(fixtures().join("eval/perplexity_reference.json")).unwrap();
    let want: Value = serde_json::from_str(&text).unwrap();
    let model = model();
    let tok = tokenizer();
    let opts = EvalOptions {
        batch_size: 3,
        ..EvalOptions::default()
    };
    let ev = Evaluator {
        model: &model,
        tok: &tok,
        opts: &opts,
    };
    let docs = fixtures().join("eval/texts/docs.jsonl");
    let spec = format!("perplexity={}", docs.display());
    let results = ev
        .run(&parse_tasks(&[spec], Path::new(".")).unwrap())
        .unwrap();
    let res = &results[0];
    let want_docs = want["docs"].as_array().unwrap();
    assert_eq!(
        res.samples.len(),
        want_docs.len(),
        "the blank row is skipped"
    );
    for (got, w) in res.samples.iter().zip(want_docs) {
        for key in ["tokens", "words", "bytes"] {
            assert_eq!(got[key], w[key], "{key}");
        }
        let (g, r) = (
            got["loglikelihood"].as_f64().unwrap(),
            w["loglikelihood"].as_f64().unwrap(),
        );
        // A sum over up to 400 tokens, each within about 1e-6 of transformers.
        assert!((g - r).abs() < 1e-3, "loglikelihood {g} vs {r}");
    }
    for metric in [
        "word_perplexity",
        "byte_perplexity",
        "bits_per_byte",
        "token_perplexity",
    ] {
        let got = res
            .scores
            .iter()
            .find(|s| s.metric == metric)
            .unwrap()
            .value;
        let reference = want[metric].as_f64().unwrap();
        assert!(
            ((got - reference) / reference).abs() < 1e-5,
            "{metric}: {got} vs {reference}"
        );
    }
}
