//! `doge data ...` end to end: the quick-start experiment finds its corpus and trains its
//! tokenizer offline, in seconds; a second run is a no-op.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn doge(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_doge"))
        .args(args)
        .current_dir(ROOT)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn quick_start_data_is_prepared_offline_then_reused() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().display().to_string();
    let t = Instant::now();
    let (ok, out, err) = doge(&[
        "data",
        "prepare",
        "experiments/doge-tiny.kdl",
        "--cache",
        &c,
        "--quiet",
    ]);
    let secs = t.elapsed().as_secs_f64();
    assert!(ok, "stdout: {out}\nstderr: {err}");
    println!("{out}{err}prepared in {secs:.1} s");
    assert!(out.contains("stage pretrain: prepared"), "{out}");
    assert!(err.contains("trained a 4096-token BPE"), "{err}");
    assert!(secs < 60.0, "the quick start's data took {secs:.1} s");
    let dir = out.split_whitespace().nth(3).unwrap().to_string();
    let ds = doge::data::TokenDataset::open(Path::new(&dir)).unwrap();
    assert_eq!(ds.seq_len(), 256);
    assert_eq!(ds.manifest().vocab_size, 4096);
    assert!(ds.num_train_rows() > 1000 && ds.num_test_rows() > 0);
    assert_eq!(ds.manifest().test.documents, 64);

    let (ok, out, err) = doge(&[
        "data",
        "prepare",
        "experiments/doge-tiny.kdl",
        "--cache",
        &c,
        "--quiet",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("already prepared in") && out.contains(&dir),
        "{out}"
    );
    assert!(!err.contains("trained"), "the tokenizer is cached: {err}");
}

#[test]
fn tokenizer_train_and_bench_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("tok");
    let (ok, out, err) = doge(&[
        "data",
        "tokenizer",
        "train",
        "tests/fixtures/data/paragraphs.txt",
        "--vocab",
        "600",
        "--out",
        &out_dir.display().to_string(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out_dir.join("tokenizer.json").exists() && out_dir.join("tokenizer_config.json").exists()
    );
    let (ok, out, err) = doge(&[
        "data",
        "bench",
        "tests/fixtures/data/paragraphs.txt",
        "--tokenizer",
        &out_dir.display().to_string(),
        "--seq-len",
        "16",
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("tokenize+pack: 1 files") && out.contains("MB/s") && out.contains("tokens/s"),
        "{out}"
    );
    let (ok, _, err) = doge(&[
        "data",
        "tokenizer",
        "train",
        "tests/fixtures/data/paragraphs.txt",
        "--vocab",
        "100",
        "--out",
        &out_dir.display().to_string(),
    ]);
    assert!(!ok && err.contains("at least 512"), "{err}");
}
