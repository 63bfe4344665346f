//! `doge registry merge`: imports another machine's runs; a second merge adds nothing; a
//! registry survives SQLite -> PostgreSQL -> SQLite with every row equal.

use crate::registry_support::{add, count, doge_on, exact_rows, Seed, TestDb};
use doge::registry::db::Location;
use doge::registry::merge::merge;
use doge::registry::{EvalRow, Registry, RunStatus};

fn rows_in(reg: &Registry, table: &str) -> i64 {
    count(reg, &format!("SELECT count(*) FROM {table}"))
}

#[test]
fn merge_imports_new_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut here = Registry::open(&dir.path().join("here.sqlite")).unwrap();
    let there_path = dir.path().join("there.sqlite");
    let there_at = Location::Sqlite(there_path.clone());
    let mut there = Registry::open(&there_path).unwrap();
    add(
        &mut here,
        &Seed {
            id: "shared",
            steps: 3,
            ..Default::default()
        },
    );
    add(
        &mut there,
        &Seed {
            id: "shared",
            steps: 3,
            ..Default::default()
        },
    );
    add(
        &mut there,
        &Seed {
            id: "remote-1",
            steps: 4,
            hellaswag: Some(0.3),
            ..Default::default()
        },
    );
    add(
        &mut there,
        &Seed {
            id: "remote-2",
            steps: 5,
            ..Default::default()
        },
    );
    there
        .add_artifact("remote-1", "checkpoint", &there_path, Some(4))
        .unwrap();
    drop(there);

    let s = merge(&here, &there_at).unwrap();
    assert_eq!(
        (s.runs, s.skipped, s.metrics, s.evals, s.artifacts),
        (2, 1, 18, 1, 1)
    );
    assert_eq!(rows_in(&here, "runs"), 3);
    assert_eq!(rows_in(&here, "metrics"), 6 + 8 + 10);
    assert_eq!(here.metric("remote-2", "loss").unwrap().len(), 5);

    let again = merge(&here, &there_at).unwrap();
    assert_eq!((again.runs, again.skipped, again.metrics), (0, 3, 0));
    assert_eq!(rows_in(&here, "metrics"), 24);
    assert_eq!(rows_in(&here, "evals"), 1);

    let e = merge(&here, &Location::Sqlite(dir.path().join("missing.sqlite"))).unwrap_err();
    assert!(e.to_string().contains("no such registry file"), "{e}");
    let e = merge(&here, here.location()).unwrap_err();
    assert!(e.to_string().contains("that is this registry"), "{e}");
}

/// Every row of the tables a merge copies, in an order both sides share, compared exactly.
/// (SQLite's `SELECT *` leaves out `rowid`, which orders rows of equal keys: insertion order.)
const TABLES: &[(&str, &str)] = &[
    ("experiments", "SELECT * FROM experiments ORDER BY name"),
    ("runs", "SELECT * FROM runs ORDER BY id"),
    (
        "metrics",
        "SELECT * FROM metrics ORDER BY run_id, name, step, rowid",
    ),
    (
        "evals",
        "SELECT * FROM evals ORDER BY run_id, task, metric, rowid",
    ),
    (
        "artifacts",
        "SELECT * FROM artifacts ORDER BY run_id, kind, path, rowid",
    ),
];

/// The columns of the copied tables, as both backends name them.
const COLUMNS: &[(&str, &str)] = &[
    ("experiments", "name, path, created_at"),
    (
        "runs",
        "id, experiment, sweep, parent_id, stage, status, config_json, config_hash, created_at, \
         started_at, ended_at, heartbeat_at, git_commit, git_dirty, version, host, device, \
         message, total_steps",
    ),
    ("metrics", "run_id, step, name, value, time"),
    (
        "evals",
        "run_id, checkpoint, task, metric, value, stderr, n, fewshot, created_at",
    ),
    (
        "artifacts",
        "run_id, kind, path, step, size, sha256, created_at",
    ),
];

fn assert_same_rows(a: &Registry, b: &Registry, what: &str) {
    for (table, sql) in TABLES {
        let (x, y) = (exact_rows(a, sql), exact_rows(b, sql));
        assert!(!x.is_empty(), "{what}: {table} is empty in the source");
        assert_eq!(x.len(), y.len(), "{what}: {table} row counts");
        for (i, (rx, ry)) in x.iter().zip(&y).enumerate() {
            assert_eq!(rx, ry, "{what}: {table} row {i}");
        }
    }
}

/// Runs with sweeps, parents, NULLs and awkward floats, metrics, evals and artifacts.
fn seed_source(reg: &mut Registry, dir: &std::path::Path) {
    for (id, lr, seed, loss, acc) in [
        ("sw-1", 1e-3, 1, 3.1, Some(0.28)),
        ("sw-2", 3e-3, 2, 2.7, Some(0.31)),
        ("sw-3", 6e-3, 3, 2.9, None),
    ] {
        add(
            reg,
            &Seed {
                id,
                sweep: Some("lr"),
                lr,
                seed,
                steps: 7,
                final_loss: loss,
                hellaswag: acc,
                ..Default::default()
            },
        );
    }
    add(
        reg,
        &Seed {
            id: "sw-2-sft",
            stage: "sft",
            parent: Some("sw-2"),
            steps: 4,
            ..Default::default()
        },
    );
    add(
        reg,
        &Seed {
            id: "crashed",
            status: RunStatus::Running,
            steps: 2,
            ..Default::default()
        },
    );
    reg.finish_run(
        "sw-3",
        RunStatus::Failed,
        Some("NaN loss at step 7 — 'quoted' ?1"),
    )
    .unwrap();
    reg.set_total_steps("sw-1", 7).unwrap();
    // Values that do not survive a round trip through text or a 4-byte float.
    reg.log_metrics(
        "sw-2-sft",
        &[
            (5, "loss", 0.1 + 0.2),
            (5, "grad_norm", 1e-300),
            (5, "lr", f64::MIN_POSITIVE),
            (6, "loss", 1.0 / 3.0),
            (6, "loss", 123_456_789.123_456_79),
        ],
    )
    .unwrap();
    reg.add_eval(
        "sw-2-sft",
        &EvalRow {
            checkpoint: Some("step-4".into()),
            task: "arc_easy".into(),
            metric: "acc".into(),
            value: 2.0 / 7.0,
            stderr: None,
            n: Some(2376),
            fewshot: None,
            ..Default::default()
        },
    )
    .unwrap();
    let ckpt = dir.join("ckpt");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(ckpt.join("model.safetensors"), vec![7u8; 1234]).unwrap();
    reg.add_artifact("sw-2", "checkpoint", &ckpt, Some(7))
        .unwrap();
    reg.add_artifact("sw-2-sft", "export", &dir.join("missing"), None)
        .unwrap();
}

#[test]
fn a_registry_round_trips_sqlite_postgres_sqlite_exactly() {
    let Some(pg) = TestDb::postgres() else {
        return;
    };
    let (first, last) = (TestDb::sqlite(), TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let mut src = first.open();
    seed_source(&mut src, dir.path());
    let (runs, metrics, evals, artifacts) = (
        rows_in(&src, "runs") as usize,
        rows_in(&src, "metrics") as usize,
        rows_in(&src, "evals") as usize,
        rows_in(&src, "artifacts") as usize,
    );
    assert_eq!(
        (runs, metrics, evals, artifacts),
        (5, 3 * 14 + 8 + 4 + 5, 3, 2)
    );

    let server = pg.open();
    let s = merge(&server, &first.location()).unwrap();
    assert_eq!(
        (s.runs, s.skipped, s.metrics, s.evals, s.artifacts),
        (runs, 0, metrics, evals, artifacts),
        "sqlite -> postgres"
    );
    let back = last.open();
    let s = merge(&back, &pg.location()).unwrap();
    assert_eq!(
        (s.runs, s.skipped, s.metrics, s.evals, s.artifacts),
        (runs, 0, metrics, evals, artifacts),
        "postgres -> sqlite"
    );
    assert_same_rows(&src, &back, "sqlite -> postgres -> sqlite");
    // The server holds the same rows (its tables add an identity `rowid`: name the columns;
    // its text order may differ by collation: sort here).
    for (table, cols) in COLUMNS {
        let sql = format!("SELECT {cols} FROM {table}");
        let sorted = |reg: &Registry| {
            let mut rows = exact_rows(reg, &sql);
            rows.sort();
            rows
        };
        assert_eq!(sorted(&src), sorted(&server), "postgres: {table}");
    }

    // Again, both ways: nothing new.
    let zero = |s: doge::registry::merge::MergeStats| (s.runs, s.metrics, s.evals, s.artifacts);
    let s = merge(&server, &first.location()).unwrap();
    assert_eq!(
        (zero(s), s.skipped),
        ((0, 0, 0, 0), runs),
        "sqlite -> postgres again"
    );
    let s = merge(&back, &pg.location()).unwrap();
    assert_eq!(
        (zero(s), s.skipped),
        ((0, 0, 0, 0), runs),
        "postgres -> sqlite again"
    );
    let s = merge(&server, &last.location()).unwrap();
    assert_eq!(
        (zero(s), s.skipped),
        ((0, 0, 0, 0), runs),
        "last sqlite -> postgres"
    );
    assert_eq!(rows_in(&server, "metrics") as usize, metrics);
    assert_same_rows(&src, &back, "after merging again");

    // The binary: `doge registry merge URL --registry FILE` into a third, empty file.
    let third = TestDb::sqlite();
    let out = doge_on(&third, &["registry", "merge", &pg.arg()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "{runs} new runs (0 already present), {metrics} metrics"
        )),
        "{stdout}"
    );
    assert_same_rows(&src, &third.open(), "sqlite -> postgres -> sqlite (binary)");
    let out = doge_on(&third, &["registry", "merge", &pg.arg()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("0 new runs ({runs} already present)")),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
