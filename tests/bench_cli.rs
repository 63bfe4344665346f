//! `doge bench`: the JSON it prints for bench/compare.py, and its errors.

use std::process::Command;

fn doge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_doge"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

#[test]
fn train_and_generate_print_their_measurements() {
    let out = doge(&[
        "bench",
        "train",
        "--preset",
        "doge-tiny",
        "--batch",
        "2",
        "--seq",
        "16",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["tokens_per_step"], 32);
    assert_eq!(r["step_seconds"]["seconds"].as_array().unwrap().len(), 1);
    assert!(r["tokens_per_s"].as_f64().unwrap() > 0.0);
    // The loss of the first step (taken before its update) on a fresh model: its logits spread by
    // about 0.02 · sqrt(128) ≈ 0.23 (init std times unit-RMS hidden states), so the loss of random
    // targets is ln(vocab) = ln 4096 ≈ 8.318 plus about half that variance (≈ 0.03).
    let loss = r["final_loss"].as_f64().unwrap();
    assert!((loss - 4096f64.ln()).abs() < 0.1, "loss {loss}");

    let out = doge(&[
        "bench",
        "generate",
        "--preset",
        "doge-tiny",
        "--prompt-len",
        "4",
        "--new-tokens",
        "5",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["new_tokens"], 5);
    assert!(r["tokens_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn config_is_the_presets_and_unknown_presets_are_named() {
    let out = doge(&["bench", "config", "--preset", "Doge-20M"]);
    assert!(out.status.success());
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["hidden_size"], 256);
    assert_eq!(c["vocab_size"], 32768);
    let out = doge(&["bench", "train", "--preset", "doge-7b"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--preset doge-7b") && err.contains("doge-20m"),
        "{err}"
    );
}
