//! `doge exp run` end to end on a tiny experiment: a `kill -9` mid-run leaves the registry readable
//! with the run not done, rerunning resumes from the last checkpoint and finishes, and the final
//! checkpoint generates text.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn corpus() -> String {
    let austen = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/corpus/persuasion.txt");
    let text = std::fs::read_to_string(austen).unwrap();
    text.chars().take(150_000).collect()
}

const EXPERIMENT: &str = r#"
name "kill-test"
seed 7
device "cpu"
registry "./registry"
model vocab=512 hidden=32 intermediate=64 layers=2 heads=2 kv-heads=1 keep-window-size=16
tokenizer "train"
data {
    source "./corpus.txt"
    seq-len 32
    test-examples 8
}
stage "pretrain" {
    lr 3e-3
    schedule "wsd" warmup=0.1 decay=0.1
    batch-size 4
    max-steps 1500
    log-every 5
    eval-every 100
    save-every 10
    keep-last 2
}
"#;

fn doge(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_doge"));
    c.current_dir(dir).args(args);
    c
}

fn status(db: &Path) -> (String, i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT status, (SELECT COUNT(*) FROM metrics WHERE run_id = runs.id) FROM runs",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// Metric rows logged so far; 0 before the run's row is written.
fn logged(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT COUNT(*) FROM metrics", [], |r| r.get(0))
        .unwrap_or(0)
}

#[test]
fn kill_9_then_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), corpus()).unwrap();
    std::fs::write(dir.join("exp.kdl"), EXPERIMENT).unwrap();

    // Start, wait for a checkpoint past step 20, then SIGKILL (no chance to clean up).
    let mut child = doge(dir, &["exp", "run", "exp.kdl", "--quiet"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let stage_dir = loop {
        let found = glob_stage_dir(dir);
        if let Some(d) = &found {
            if doge::train::state::list(d)
                .last()
                .is_some_and(|c| c.0 >= 20)
            {
                break found.unwrap();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let db = dir.join("registry/doge.sqlite");
    let (st, metrics_before) = status(&db);
    assert_eq!(st, "running", "a killed run stays visibly running");
    assert!(metrics_before > 0);
    let last = doge::train::state::list(&stage_dir).last().unwrap().0;

    // Rerun: resumes from the last checkpoint and finishes.
    let out = doge(dir, &["exp", "run", "exp.kdl", "--quiet"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("(step {last})")),
        "did not resume from step {last}: {err}"
    );
    let (st, _) = status(&db);
    assert_eq!(st, "done");
    // Every step's loss is logged once: the steps redone after the checkpoint replaced their rows.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let dup: i64 = conn
        .query_row("SELECT COUNT(*) FROM (SELECT step FROM metrics WHERE name = 'loss' GROUP BY step HAVING COUNT(*) > 1)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(dup, 0);
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM metrics WHERE name = 'loss'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1500 / 5);

    // A second rerun does nothing; the final checkpoint generates text.
    let out = doge(dir, &["exp", "run", "exp.kdl", "--quiet"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("already done"));
    let final_dir = doge::train::state::list(&stage_dir)
        .last()
        .unwrap()
        .1
        .clone();
    let out = doge(
        dir,
        &[
            "generate",
            "--model",
            final_dir.to_str().unwrap(),
            "--prompt",
            "It was",
            "--max-new-tokens",
            "12",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).trim().len() > 3);
}

fn glob_stage_dir(dir: &Path) -> Option<std::path::PathBuf> {
    let reg = dir.join("registry");
    std::fs::read_dir(&reg)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("pretrain"))
        .find(|p| p.is_dir())
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_marks_the_run_interrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), corpus()).unwrap();
    // No periodic checkpoints: the one found afterwards can only come from the interrupt.
    let exp = EXPERIMENT
        .replace("save-every 10", "save-every 0")
        .replace("max-steps 1500", "max-steps 100000");
    std::fs::write(dir.join("exp.kdl"), exp).unwrap();
    let child = doge(dir, &["exp", "run", "exp.kdl", "--quiet"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let db = dir.join("registry/doge.sqlite");
    let started = Instant::now();
    // Wait until some steps are logged.
    // (The database exists a moment before its run row does: poll for the row.)
    while !db.exists() || logged(&db) < 8 {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the run logged nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted at step"), "{err}");
    assert_eq!(status(&db).0, "interrupted");
    let stage_dir = glob_stage_dir(dir).unwrap();
    let saved = doge::train::state::list(&stage_dir);
    assert_eq!(saved.len(), 1, "exactly the interrupt's checkpoint");
    assert!(saved[0].0 >= 8);
}
