//! Acceptance 5: a registry written by schema v1 is migrated in place, its rows kept.

use doge::registry::query::load_runs;
use doge::registry::{EvalRow, Registry, SCHEMA_VERSION};

/// The v1 schema exactly as the first release created it.
const V1: &str = r#"
CREATE TABLE experiments (name TEXT PRIMARY KEY, path TEXT, created_at REAL NOT NULL);
CREATE TABLE runs (
    id TEXT PRIMARY KEY, experiment TEXT NOT NULL REFERENCES experiments(name), sweep TEXT,
    parent_id TEXT, stage TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
    config_json TEXT NOT NULL, config_hash TEXT NOT NULL, created_at REAL NOT NULL,
    started_at REAL, ended_at REAL, heartbeat_at REAL, git_commit TEXT, git_dirty INTEGER,
    version TEXT NOT NULL, host TEXT, device TEXT, message TEXT);
CREATE TABLE metrics (run_id TEXT NOT NULL REFERENCES runs(id), step INTEGER NOT NULL,
    name TEXT NOT NULL, value REAL NOT NULL, time REAL NOT NULL);
CREATE INDEX metrics_by_run ON metrics(run_id, name, step);
CREATE TABLE evals (run_id TEXT NOT NULL REFERENCES runs(id), checkpoint TEXT, task TEXT NOT NULL,
    metric TEXT NOT NULL, value REAL NOT NULL, stderr REAL, n INTEGER, fewshot INTEGER);
CREATE TABLE artifacts (run_id TEXT NOT NULL REFERENCES runs(id), kind TEXT NOT NULL,
    path TEXT NOT NULL, step INTEGER, size INTEGER, sha256 TEXT, created_at REAL NOT NULL);
INSERT INTO experiments VALUES ('old', NULL, 1.0);
INSERT INTO runs (id, experiment, stage, status, config_json, config_hash, created_at, version)
    VALUES ('old-pretrain', 'old', 'pretrain', 'done', '{"seed":7}', 'h', 1.0, '0.0.1');
INSERT INTO metrics VALUES ('old-pretrain', 5, 'loss', 4.5, 1.0);
INSERT INTO evals VALUES ('old-pretrain', NULL, 'piqa', 'acc', 0.6, NULL, 10, 0);
PRAGMA user_version = 1;
"#;

#[test]
fn a_v1_file_is_migrated_not_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.sqlite");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(V1)
        .unwrap();

    let reg = Registry::open(&path).unwrap();
    let c = reg.connection();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v as usize, SCHEMA_VERSION);
    // The old rows survive and read back through the query layer.
    let runs = load_runs(c, None).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].last_metrics["loss"], (5, 4.5));
    assert_eq!(runs[0].evals["piqa.acc"].0, 0.6);
    // v2's column and index exist and take writes.
    reg.add_eval(
        "old-pretrain",
        &EvalRow {
            task: "arc".into(),
            metric: "acc".into(),
            value: 0.5,
            ..Default::default()
        },
    )
    .unwrap();
    let stamped: i64 = c
        .query_row(
            "SELECT count(*) FROM evals WHERE created_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stamped, 1);
    let idx: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'runs_by_sweep'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(idx, 1);
    drop(reg);
    // Reopening a migrated file is a no-op.
    Registry::open(&path).unwrap();
}

#[test]
fn a_newer_schema_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.sqlite");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let e = format!("{:#}", Registry::open(&path).err().unwrap());
    assert!(e.contains("newer") && e.contains("upgrade doge"), "{e}");
}
