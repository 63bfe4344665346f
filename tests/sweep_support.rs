//! Shared by the sweep tests: a 6-run doge-tiny-sized sweep of 10 steps per run in a temporary
//! folder, the binary, and what the registry recorded.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use doge::registry::db::Location;
use doge::registry::Registry;

/// The sweep: 3 seeds x 2 learning rates, 10 steps each, every step logged.
pub fn experiment(registry: &str, extra: &str) -> String {
    format!(
        r#"
name "sweep-test"
seed 7
device "cpu"
registry "{registry}"
{extra}
model vocab=512 hidden=32 intermediate=64 layers=2 heads=2 kv-heads=1 keep-window-size=16
tokenizer "train"
data {{
    source "./corpus.txt"
    seq-len 32
    test-examples 8
}}
stage "pretrain" {{
    lr 3e-3
    schedule "wsd" warmup=0.1 decay=0.1
    batch-size 4
    max-steps 10
    log-every 1
    eval-every 5
    save-every 5
    keep-last 2
}}
sweep {{
    grid {{
        seed 1 2 3
        stage.pretrain.lr 1e-3 3e-3
    }}
}}
"#
    )
}

/// A folder with the corpus and `sweep.kdl` recording into `registry`.
pub fn workdir(registry: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let austen = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/corpus/persuasion.txt");
    let text: String = std::fs::read_to_string(austen)
        .unwrap()
        .chars()
        .take(150_000)
        .collect();
    std::fs::write(dir.path().join("corpus.txt"), text).unwrap();
    std::fs::write(dir.path().join("sweep.kdl"), experiment(registry, extra)).unwrap();
    dir
}

pub fn doge(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_doge"));
    c.current_dir(dir)
        .args(args)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("DOGE_REGISTRY");
    c
}

pub fn spawn(mut c: Command) -> Child {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits and insists on success, returning stderr.
pub fn finish(child: Child, what: &str) -> String {
    let out: Output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed:\n{err}");
    err
}

/// The runs a launcher's log says it trained (`run <name>-<id> in <dir>` lines).
pub fn trained(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let l = l.split_once("] ").map_or(l, |(_, rest)| rest);
            l.strip_prefix("run sweep-test-")
                .and_then(|r| r.split(' ').next())
                .map(str::to_string)
        })
        .collect()
}

/// Every run's losses by step, as the registry holds them.
pub fn losses(reg: &Registry) -> BTreeMap<String, Vec<(i64, u64)>> {
    let mut out: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    for r in reg
        .db()
        .query(
            "SELECT run_id, step, value FROM metrics WHERE name = 'loss' ORDER BY run_id, step",
            &[],
        )
        .unwrap()
    {
        out.entry(r.text(0).unwrap())
            .or_default()
            .push((r.i64(1).unwrap(), r.f64(2).unwrap().to_bits()));
    }
    out
}

/// The checks every way of running the sweep must pass: 6 runs, each `done` with its claim
/// `done`, steps 1..=10 logged once per metric.
pub fn assert_six_done_once(location: &Location) {
    let reg = Registry::connect(location).unwrap();
    let db = reg.db();
    let n = |sql: &str| db.query_i64(sql, &[]).unwrap();
    assert_eq!(n("SELECT count(*) FROM runs"), 6);
    assert_eq!(n("SELECT count(*) FROM runs WHERE status = 'done'"), 6);
    assert_eq!(n("SELECT count(*) FROM claims WHERE status = 'done'"), 6);
    assert_eq!(
        n(
            "SELECT count(*) FROM (SELECT run_id, name, step FROM metrics
             GROUP BY run_id, name, step HAVING count(*) > 1) dup"
        ),
        0,
        "a step was logged twice"
    );
    let l = losses(&reg);
    assert_eq!(l.len(), 6);
    for (run, steps) in &l {
        let s: Vec<i64> = steps.iter().map(|x| x.0).collect();
        assert_eq!(s, (1..=10).collect::<Vec<_>>(), "{run}");
    }
}
