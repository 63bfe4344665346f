//! Acceptance 2 (benchmark, ignored by default):
//! `cargo test --release --test suite registry_scale -- --ignored --nocapture`
//! 1,000 runs and 200,000 metric rows; `runs list --where` and `runs compare` of 20 runs must
//! each answer in under a second.

use std::time::Instant;

use doge::registry::commands::{compare, list, ListQuery};
use doge::registry::render::Format;
use doge::registry::{EvalRow, Registry};
use rusqlite::params;

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn list_and_compare_answer_in_under_a_second_at_scale() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(&dir.path().join("big.sqlite")).unwrap();
    let t = Instant::now();
    {
        let c = reg.connection();
        c.execute_batch("BEGIN; INSERT INTO experiments VALUES ('exp', NULL, 0);")
            .unwrap();
        let mut run = c
            .prepare(
                "INSERT INTO runs (id, experiment, sweep, stage, status, config_json, config_hash,
                 created_at, heartbeat_at, version) VALUES (?1, 'exp', ?2, 'pretrain', ?3, ?4, ?1, ?5, ?5, '0')",
            )
            .unwrap();
        let mut metric = c
            .prepare(
                "INSERT INTO metrics (run_id, step, name, value, time) VALUES (?1, ?2, ?3, ?4, 0)",
            )
            .unwrap();
        for i in 0..1000u32 {
            let id = format!("run-{i:04}");
            let lr = [1e-3, 3e-3, 6e-3, 1e-2][i as usize % 4];
            let status = if i % 10 == 0 { "failed" } else { "done" };
            let cfg = crate::registry_support::config(lr, u64::from(i % 7));
            run.execute(params![
                id,
                format!("sweep-{}", i / 20),
                status,
                cfg,
                f64::from(i)
            ])
            .unwrap();
            for step in 0..100u32 {
                let loss = 5.0 - f64::from(step) * 0.02 - f64::from(i % 13) * 0.01;
                metric.execute(params![id, step, "loss", loss]).unwrap();
                metric.execute(params![id, step, "lr", lr]).unwrap();
            }
        }
        c.execute_batch("COMMIT;").unwrap();
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
    let rows: i64 = reg
        .connection()
        .query_row("SELECT count(*) FROM metrics", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 200_000);
    eprintln!(
        "seeded 1000 runs, {rows} metric rows in {:.2?}",
        t.elapsed()
    );

    let q = ListQuery {
        filter: Some("stage.pretrain.lr < 6e-3 and status = done and eval.hellaswag.acc_norm > 0.3 and metric.loss < 3.0".into()),
        sort: Some("metric.loss".into()),
        limit: None,
        format: Format::Table,
    };
    let t = Instant::now();
    let out = list(&reg, &q).unwrap();
    let list_s = t.elapsed().as_secs_f64();
    let n = out.lines().count() - 2;
    eprintln!("runs list --where (4 terms) --sort metric.loss: {n} runs in {list_s:.3} s");
    assert!(n > 0 && n < 1000, "{n}");

    let ids: Vec<String> = (0..20).map(|i| format!("run-{:04}", i * 37)).collect();
    let t = Instant::now();
    let out = compare(&reg, &ids, None).unwrap();
    let cmp_s = t.elapsed().as_secs_f64();
    eprintln!(
        "runs compare of 20 runs: {} rows in {cmp_s:.3} s",
        out.lines().count()
    );
    let t = Instant::now();
    compare(&reg, &[], Some("sweep-3")).unwrap();
    eprintln!(
        "runs compare --sweep (20 runs): {:.3} s",
        t.elapsed().as_secs_f64()
    );

    assert!(list_s < 1.0, "list took {list_s} s");
    assert!(cmp_s < 1.0, "compare took {cmp_s} s");
}
