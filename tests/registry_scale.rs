//! Acceptance 2 (benchmark, ignored by default):
//! `cargo test --release --test suite registry_scale -- --ignored --nocapture`
//! 1,000 runs and 200,000 metric rows; `runs list --where` and `runs compare` of 20 runs must
//! each answer in under a second, on SQLite and (with `$DOGE_TEST_POSTGRES`) on PostgreSQL.

use std::time::Instant;

use crate::registry_support::{count, TestDb};
use doge::registry::commands::{compare, list, ListQuery};
use doge::registry::db::{Tx, Value};
use doge::registry::render::Format;
use doge::registry::{EvalRow, Registry};
use doge::sql_params;
use rusqlite::params;

/// Run `i`: its id, sweep, status, config and created_at.
fn run_row(i: u32) -> (String, String, &'static str, String, f64) {
    let lr = lr_of(i);
    let status = if i.is_multiple_of(10) {
        "failed"
    } else {
        "done"
    };
    (
        format!("run-{i:04}"),
        format!("sweep-{}", i / 20),
        status,
        crate::registry_support::config(lr, u64::from(i % 7)),
        f64::from(i),
    )
}

fn lr_of(i: u32) -> f64 {
    [1e-3, 3e-3, 6e-3, 1e-2][i as usize % 4]
}

fn loss_of(i: u32, step: u32) -> f64 {
    5.0 - f64::from(step) * 0.02 - f64::from(i % 13) * 0.01
}

const RUN_SQL: &str = "INSERT INTO runs (id, experiment, sweep, stage, status, config_json, config_hash,
     created_at, heartbeat_at, version) VALUES (?1, 'exp', ?2, 'pretrain', ?3, ?4, ?1, ?5, ?5, '0')";

/// Seeded through rusqlite directly (prepared statements, one transaction).
fn seed_sqlite(reg: &Registry) {
    let c = reg.db().sqlite().unwrap();
    c.execute_batch("BEGIN; INSERT INTO experiments VALUES ('exp', NULL, 0);")
        .unwrap();
    let mut run = c.prepare(RUN_SQL).unwrap();
    let mut metric = c
        .prepare("INSERT INTO metrics (run_id, step, name, value, time) VALUES (?1, ?2, ?3, ?4, 0)")
        .unwrap();
    for i in 0..1000u32 {
        let (id, sweep, status, cfg, created) = run_row(i);
        run.execute(params![id, sweep, status, cfg, created])
            .unwrap();
        for step in 0..100u32 {
            metric
                .execute(params![id, step, "loss", loss_of(i, step)])
                .unwrap();
            metric.execute(params![id, step, "lr", lr_of(i)]).unwrap();
        }
    }
    c.execute_batch("COMMIT;").unwrap();
}

/// Seeded through the backend-neutral connection (multi-row inserts, one transaction).
fn seed_any(reg: &Registry) {
    reg.db()
        .transaction(Tx::Write, |db| {
            db.execute(
                "INSERT INTO experiments (name, path, created_at) VALUES ('exp', NULL, 0)",
                &[],
            )?;
            let mut metrics: Vec<Vec<Value>> = Vec::with_capacity(200_000);
            for i in 0..1000u32 {
                let (id, sweep, status, cfg, created) = run_row(i);
                db.execute(
                    RUN_SQL,
                    &sql_params![id.as_str(), sweep, status, cfg, created],
                )?;
                for step in 0..100u32 {
                    metrics.push(
                        sql_params![id.as_str(), step, "loss", loss_of(i, step), 0.0].to_vec(),
                    );
                    metrics.push(sql_params![id.as_str(), step, "lr", lr_of(i), 0.0].to_vec());
                }
            }
            db.insert_rows(
                "metrics",
                &["run_id", "step", "name", "value", "time"],
                &metrics,
            )?;
            Ok(())
        })
        .unwrap();
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn list_and_compare_answer_in_under_a_second_at_scale() {
    for db in TestDb::all() {
        let kind = db.kind();
        let reg = db.open();
        let t = Instant::now();
        match &db {
            TestDb::Sqlite { .. } => seed_sqlite(&reg),
            TestDb::Postgres { .. } => seed_any(&reg),
        }
        for i in 0..1000u32 {
            let e = EvalRow {
                task: "hellaswag".into(),
                metric: "acc_norm".into(),
                value: 0.25 + f64::from(i % 20) * 0.01,
                ..Default::default()
            };
            if i % 2 == 0 {
                reg.add_eval(&format!("run-{i:04}"), &e).unwrap();
            }
        }
        let rows = count(&reg, "SELECT count(*) FROM metrics");
        assert_eq!(rows, 200_000, "{kind}");
        eprintln!(
            "{kind}: seeded 1000 runs, {rows} metric rows in {:.2?}",
            t.elapsed()
        );

        let q = ListQuery {
            filter: Some("stage.pretrain.lr < 6e-3 and status = done and eval.hellaswag.acc_norm > 0.3 and metric.loss < 3.0".into()),
            sort: Some("metric.loss".into()),
            limit: None,
            format: Format::Table,
            all: false,
        };
        let t = Instant::now();
        let out = list(&reg, &q).unwrap();
        let list_s = t.elapsed().as_secs_f64();
        let n = out.lines().count() - 2;
        eprintln!(
            "{kind}: runs list --where (4 terms) --sort metric.loss: {n} runs in {list_s:.3} s"
        );
        assert!(n > 0 && n < 1000, "{kind}: {n}");

        let ids: Vec<String> = (0..20).map(|i| format!("run-{:04}", i * 37)).collect();
        let t = Instant::now();
        let out = compare(&reg, &ids, None).unwrap();
        let cmp_s = t.elapsed().as_secs_f64();
        eprintln!(
            "{kind}: runs compare of 20 runs: {} rows in {cmp_s:.3} s",
            out.lines().count()
        );
        let t = Instant::now();
        compare(&reg, &[], Some("sweep-3")).unwrap();
        eprintln!(
            "{kind}: runs compare --sweep (20 runs): {:.3} s",
            t.elapsed().as_secs_f64()
        );

        assert!(list_s < 1.0, "{kind}: list took {list_s} s");
        assert!(cmp_s < 1.0, "{kind}: compare took {cmp_s} s");
    }
}
