//! Issue 19, acceptance 1: launchers share a sweep through the registry's claims. Two processes
//! started at once train each run exactly once between them; `--workers 3` does the same in one
//! process; a worker killed with `kill -9` is taken over by the next launch, which finishes its
//! run from the checkpoint.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::sweep_support::{assert_six_done_once, doge, finish, losses, spawn, trained, workdir};
use doge::registry::db::Location;
use doge::registry::Registry;

#[test]
fn two_launchers_started_together_train_each_run_once() {
    let dir = workdir("./registry", "");
    let a = spawn(doge(dir.path(), &["exp", "run", "sweep.kdl", "--quiet"]));
    let b = spawn(doge(dir.path(), &["exp", "run", "sweep.kdl", "--quiet"]));
    let (la, lb) = (finish(a, "launcher a"), finish(b, "launcher b"));
    let (ta, tb) = (trained(&la), trained(&lb));
    eprintln!("launcher a trained {ta:?}, launcher b {tb:?}");
    let all: Vec<&String> = ta.iter().chain(&tb).collect();
    let distinct: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), 6, "each run trained exactly once:\n{la}\n{lb}");
    assert_eq!(distinct.len(), 6);
    assert_six_done_once(&Location::Sqlite(dir.path().join("registry/doge.sqlite")));
    // A third launch finds nothing to do.
    let c = finish(
        spawn(doge(dir.path(), &["exp", "run", "sweep.kdl"])),
        "launcher c",
    );
    assert!(trained(&c).is_empty(), "{c}");
    assert_eq!(c.matches("already done").count(), 6, "{c}");
}

#[test]
fn three_workers_in_one_process_train_each_run_once_with_the_same_losses() {
    let dir = workdir("./registry", "");
    let log = finish(
        spawn(doge(
            dir.path(),
            &["exp", "run", "sweep.kdl", "--workers", "3"],
        )),
        "--workers 3",
    );
    assert!(log.contains("3 workers"), "{log}");
    let t = trained(&log);
    assert_eq!(t.len(), 6, "{log}");
    assert_eq!(t.iter().collect::<BTreeSet<_>>().len(), 6);
    let threaded = Location::Sqlite(dir.path().join("registry/doge.sqlite"));
    assert_six_done_once(&threaded);

    // One at a time gives bit-equal losses: workers share nothing that changes the arithmetic.
    let serial = workdir("./registry", "");
    finish(
        spawn(doge(serial.path(), &["exp", "run", "sweep.kdl"])),
        "serial",
    );
    let serial_loc = Location::Sqlite(serial.path().join("registry/doge.sqlite"));
    assert_eq!(
        losses(&Registry::connect(&threaded).unwrap()),
        losses(&Registry::connect(&serial_loc).unwrap())
    );
}

#[test]
fn a_killed_worker_is_taken_over_and_its_run_finishes_from_the_checkpoint() {
    let dir = workdir("./registry", "");
    let args = [
        "exp",
        "run",
        "sweep.kdl",
        "--array-index",
        "0",
        "--set",
        "stage.pretrain.max-steps=400",
    ];
    let mut first = spawn(doge(dir.path(), &args));
    let pid = first.id();
    let runs = dir.path().join("registry");
    let start = Instant::now();
    // Kill it once it has saved a checkpoint and gone on past it.
    let checkpoint = loop {
        let found = std::fs::read_dir(&runs).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("pretrain"))
                .find_map(|p| {
                    std::fs::read_dir(&p).ok().and_then(|rd| {
                        rd.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|n| n.starts_with("checkpoint-"))
                            .max()
                    })
                })
        });
        if let Some(c) = found {
            std::thread::sleep(Duration::from_millis(300));
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint within 2 minutes"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let db = Location::Sqlite(runs.join("doge.sqlite"));
    let reg = Registry::connect(&db).unwrap();
    let live = reg
        .db()
        .query_i64(
            "SELECT count(*) FROM claims WHERE status IN ('claimed', 'running')",
            &[],
        )
        .unwrap();
    assert_eq!(live, 1, "the dead worker's claim is still there");
    drop(reg);
    let status = doge(
        dir.path(),
        &[
            "exp",
            "status",
            "sweep.kdl",
            "--set",
            "stage.pretrain.max-steps=400",
        ],
    )
    .output()
    .unwrap();
    let status = String::from_utf8(status.stdout).unwrap();
    let row = status
        .lines()
        .find(|l| l.starts_with("0 "))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        row.contains("running (stale)") && row.contains(&format!(":{pid}")) && row.contains("/400"),
        "{status}"
    );

    let log = finish(spawn(doge(dir.path(), &args)), "the second launch");
    assert!(log.contains("taking its run over"), "{log}");
    let resumed = log
        .lines()
        .find(|l| l.starts_with("resumed from"))
        .unwrap_or_else(|| panic!("no resume:\n{log}"));
    let step: u64 = resumed
        .rsplit("(step ")
        .next()
        .and_then(|s| s.trim_end_matches(')').parse().ok())
        .unwrap();
    assert!(step >= 5, "resumed from {checkpoint} at step {step}");
    let reg = Registry::connect(&db).unwrap();
    let d = reg.db();
    let n = |sql: &str| d.query_i64(sql, &[]).unwrap();
    assert_eq!(n("SELECT count(*) FROM claims WHERE status = 'done'"), 1);
    assert_eq!(n("SELECT attempts FROM claims"), 2);
    assert_eq!(n("SELECT count(*) FROM runs WHERE status = 'done'"), 1);
    assert_eq!(
        n("SELECT count(*) FROM metrics WHERE name = 'loss'"),
        400,
        "every step logged exactly once"
    );
    assert_eq!(
        n("SELECT count(DISTINCT step) FROM metrics WHERE name = 'loss'"),
        400
    );
}

#[test]
fn a_worker_whose_run_was_taken_over_stops_without_writing_more() {
    let dir = workdir("./registry", "");
    let args = [
        "exp",
        "run",
        "sweep.kdl",
        "--array-index",
        "0",
        "--set",
        "stage.pretrain.max-steps=100000",
    ];
    let child = spawn(doge(dir.path(), &args));
    let db = Location::Sqlite(dir.path().join("registry/doge.sqlite"));
    let start = Instant::now();
    let reg = loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(reg) = Registry::connect(&db) {
            if reg
                .db()
                .query_i64("SELECT count(*) FROM metrics WHERE name = 'loss'", &[])
                .is_ok_and(|n| n >= 20)
            {
                break reg;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
    };
    // Another machine takes the run over, as it would after this worker's heartbeats stopped
    // reaching the registry for the stale limit. The rows counted in the same transaction are
    // all the old worker may ever have written.
    let rows_at_takeover = reg
        .db()
        .transaction(doge::registry::db::Tx::Write, |db| {
            let n = db.execute(
                "UPDATE claims SET worker = 'elsewhere:1:1', host = 'elsewhere', pid = 1,
                     heartbeat_at = ?1, attempts = attempts + 1",
                &doge::sql_params![doge::registry::now()],
            )?;
            assert_eq!(n, 1);
            db.query_i64("SELECT count(*) FROM metrics", &[])
        })
        .unwrap();
    // It must notice at its next logged step; without the fence it would train on for hours.
    let mut child = child;
    let waited = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if waited.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the overtaken worker went on training for a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = finish(child, "the overtaken worker");
    assert!(log.contains("taken over by another worker"), "{log}");
    let d = reg.db();
    let rows = d.query_i64("SELECT count(*) FROM metrics", &[]).unwrap();
    assert_eq!(
        rows, rows_at_takeover,
        "rows were written after the takeover"
    );
    // The run's rows and claim are the new worker's: the old one wrote no status over them.
    let status = d.query("SELECT status FROM runs", &[]).unwrap();
    assert_eq!(status[0].text(0).unwrap(), "running");
    let claim = d.query("SELECT worker, status FROM claims", &[]).unwrap();
    assert_eq!(claim[0].text(0).unwrap(), "elsewhere:1:1");
    assert_eq!(claim[0].text(1).unwrap(), "running");
}
