//! Text inputs go through the model directory's tokenizer exactly as transformers' tokenizer call
//! does. Uses the real Doge tokenizer from the project's shared data (not committed here, by its
//! licence note); skips with a notice when that folder is absent.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device};
use doge::checkpoint::Checkpoint;
use doge::model::DogeConfig;
use serde_json::Value;

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let ok = p.join("data/tokenizer/doge/tokenizer.json").exists()
        && p.join("ref/tokenizer_doge.jsonl").exists();
    if !ok {
        eprintln!("skipped: ../shared/data/tokenizer/doge is not here");
    }
    ok.then_some(p)
}

fn encode_rows(shared: &Path) -> Vec<Value> {
    std::fs::read_to_string(shared.join("ref/tokenizer_doge.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "encode")
        .collect()
}

#[test]
fn text_records_are_tokenized_like_transformers() {
    let Some(shared) = shared() else { return };
    let tok = doge::cli::io::load_tokenizer(&shared.join("data/tokenizer/doge"))
        .unwrap()
        .unwrap();
    let rows = encode_rows(&shared);
    assert!(rows.len() >= 3);
    for row in &rows {
        let record = serde_json::json!({"text": row["text"]});
        let ids = doge::cli::io::record_ids(&record, Some(&tok), 32768, "test").unwrap();
        let want: Vec<u32> = serde_json::from_value(row["input_ids"].clone()).unwrap();
        assert_eq!(ids, want, "{:?}", row["text"]);
    }
}

#[test]
fn score_and_generate_accept_text() {
    let Some(shared) = shared() else { return };
    let cfg = DogeConfig {
        vocab_size: 32768,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        tie_word_embeddings: true,
        eos_token_id: Some(1),
        pad_token_id: Some(2),
        ..DogeConfig::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    Checkpoint::init(&cfg, 5, DType::F32, &Device::Cpu)
        .unwrap()
        .save(tmp.path(), DType::F32)
        .unwrap();
    std::fs::copy(
        shared.join("data/tokenizer/doge/tokenizer.json"),
        tmp.path().join("tokenizer.json"),
    )
    .unwrap();
    let row = encode_rows(&shared)
        .into_iter()
        .find(|r| r["input_ids"].as_array().unwrap().len() > 5)
        .unwrap();
    let input = tmp.path().join("in.jsonl");
    let text_line = serde_json::json!({"text": row["text"]}).to_string();
    let ids_line = serde_json::json!({"input_ids": row["input_ids"]}).to_string();
    std::fs::write(&input, format!("{text_line}\n{ids_line}\n")).unwrap();
    let model = tmp.path().to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_doge"))
        .args([
            "score",
            "--model",
            model,
            "--input",
            input.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["tokens"], lines[1]["tokens"]);
    assert_eq!(lines[0]["nll"], lines[1]["nll"]);

    let out = Command::new(env!("CARGO_BIN_EXE_doge"))
        .args([
            "generate",
            "--model",
            model,
            "--prompt",
            "Hello",
            "--max-new-tokens",
            "4",
            "--greedy",
            "--ignore-eos",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8(out.stdout).unwrap().trim().is_empty());
}
