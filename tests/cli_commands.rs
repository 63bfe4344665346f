//! The `doge` binary's model commands, end to end on the transformers reference fixtures.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/doge-tiny")
        .join(name)
}

fn doge(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_doge"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn file_lines(path: &Path) -> Vec<Value> {
    lines(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn score_writes_the_reference_nll() {
    let dir = fixture("moe");
    let input = dir.join("score.jsonl");
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("scored.jsonl");
    let (ok, _, err) = doge(&[
        "score",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--batch-size",
        "3",
    ]);
    assert!(ok, "{err}");
    let reference = file_lines(&input);
    let got = file_lines(&output);
    assert_eq!(got.len(), reference.len());
    for (g, r) in got.iter().zip(&reference) {
        assert_eq!(g["tokens"], r["tokens"]);
        let (a, b) = (g["nll"].as_f64().unwrap(), r["nll"].as_f64().unwrap());
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn generate_greedy_jsonl_matches_the_reference() {
    let dir = fixture("dense");
    let input = dir.join("generate.jsonl");
    let (ok, out, err) = doge(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--greedy",
    ]);
    assert!(ok, "{err}");
    for (g, r) in lines(&out).iter().zip(file_lines(&input)) {
        assert_eq!(g["output_ids"], r["output_ids"]);
    }
}

#[test]
fn convert_to_bf16_then_score() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("bf16");
    let (ok, _, err) = doge(&[
        "convert",
        "--model",
        fixture("dense").to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--dtype",
        "bf16",
    ]);
    assert!(ok, "{err}");
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["dtype"], "bfloat16");
    let input = fixture("dense").join("score.jsonl");
    let (ok, out, err) = doge(&[
        "score",
        "--model",
        out_dir.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(lines(&out).len(), 4);
}

#[test]
fn bad_input_says_where() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [1, 999]}\n",
    )
    .unwrap();
    let (ok, _, err) = doge(&[
        "score",
        "--model",
        fixture("dense").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("in.jsonl:2") && err.contains("999") && err.contains("vocabulary of 256"),
        "{err}"
    );
    std::fs::write(&input, "{\"text\": \"hello\"}\n").unwrap();
    let (ok, _, err) = doge(&[
        "score",
        "--model",
        fixture("dense").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("in.jsonl:1") && err.contains("tokenizer.json"),
        "{err}"
    );
}
