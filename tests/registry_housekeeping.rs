//! What people do to a registry by hand (issue 20, points 8-10): ids as `doge exp run` prints
//! them or by unique prefix, times as local ISO 8601, JSON at full precision, and tags, notes,
//! archiving and deleting, on SQLite and PostgreSQL.

use std::process::{Command, Stdio};

use crate::registry_support::{count, doge_on, TestDb};
use doge::registry::{NewRun, Registry, RunStatus};

/// A run of experiment run `hash` (stage `stage`), with `steps` logged losses.
fn add(reg: &mut Registry, hash: &str, stage: &str, parent: Option<&str>, loss: f64) -> String {
    let id = format!("{hash}-{stage}");
    reg.start_run(&NewRun {
        id: id.clone(),
        experiment: "exp".into(),
        experiment_path: None,
        sweep: None,
        parent_id: parent.map(Into::into),
        stage: stage.into(),
        config_json: format!(r#"{{"seed":1,"stage":[{{"kind":"{stage}"}}]}}"#),
        config_hash: hash.into(),
        device: "cpu".into(),
        stage_key: None,
    })
    .unwrap();
    reg.log_metrics(&id, &[(1, "loss", loss + 1.0), (10, "loss", loss)])
        .unwrap();
    reg.finish_run(&id, RunStatus::Done, None).unwrap();
    id
}

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(db: &TestDb, args: &[&str]) -> String {
    let o = doge_on(db, args);
    let (so, se) = text(&o);
    assert!(
        o.status.success(),
        "{} doge {args:?}:\n{so}\n{se}",
        db.kind()
    );
    so
}

#[test]
fn show_takes_the_printed_id_and_unique_prefixes() {
    for db in TestDb::all() {
        let kind = db.kind();
        let mut reg = db.open();
        let pre = add(&mut reg, "70a48128bb9c", "pretrain", None, 3.0);
        let sft = add(&mut reg, "70a48128bb9c", "sft", Some(&pre), 2.0);
        add(&mut reg, "71ff00000000", "pretrain", None, 4.0);

        // The experiment run id `doge exp run` prints: every stage of it.
        let out = ok(&db, &["runs", "show", "70a48128bb9c"]);
        assert!(
            out.starts_with("experiment run 70a48128bb9c: 2 stages"),
            "{kind}: {out}"
        );
        assert!(
            out.contains(&format!("run         {pre}"))
                && out.contains(&format!("run         {sft}")),
            "{kind}: {out}"
        );
        // A unique prefix.
        let out = ok(&db, &["runs", "show", "71f"]);
        assert!(
            out.starts_with("run         71ff00000000-pretrain"),
            "{kind}: {out}"
        );
        let out = ok(&db, &["runs", "show", "70a48128bb9c-s"]);
        assert!(
            out.starts_with(&format!("run         {sft}")),
            "{kind}: {out}"
        );
        // An ambiguous prefix names its candidates; an unknown id says so.
        let o = doge_on(&db, &["runs", "show", "7"]);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{kind}");
        assert!(
            err.contains("start of 3 run ids") && err.contains("71ff00000000-pretrain"),
            "{kind}: {err}"
        );
        let (_, err) = text(&doge_on(&db, &["runs", "show", "zz"]));
        assert!(err.contains("no run `zz`"), "{kind}: {err}");
        // compare takes them too.
        let out = ok(&db, &["runs", "compare", "70a48128bb9c", "71f"]);
        assert!(
            out.lines().next().unwrap().contains(&sft)
                && out
                    .lines()
                    .next()
                    .unwrap()
                    .contains("71ff00000000-pretrain"),
            "{kind}: {out}"
        );
    }
}

#[test]
fn times_print_as_local_iso_8601_and_json_keeps_full_precision() {
    for db in TestDb::all() {
        let kind = db.kind();
        let mut reg = db.open();
        let id = add(&mut reg, "aaaa", "pretrain", None, 1.234_567_890_123_456_7);
        // 1796221518 s after the epoch is 2026-12-02 14:25:18 UTC (date -u -d @1796221518).
        reg.db()
            .execute(
                "UPDATE runs SET created_at = 1796221518.25 WHERE id = ?1",
                &[id.as_str().into()],
            )
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_doge"))
            .args(["runs", "show", &id, "--registry", &db.arg()])
            .env("TZ", "UTC")
            .output()
            .unwrap();
        let (so, se) = text(&out);
        assert!(out.status.success(), "{kind}: {se}");
        assert!(
            so.contains("created     2026-12-02T14:25:18+00:00"),
            "{kind}: {so}"
        );
        assert!(!so.contains("unix s"), "{kind}: {so}");
        let out = Command::new(env!("CARGO_BIN_EXE_doge"))
            .args(["runs", "show", &id, "--registry", &db.arg()])
            .env("TZ", "Asia/Kolkata")
            .output()
            .unwrap();
        if std::path::Path::new("/usr/share/zoneinfo/Asia/Kolkata").exists() {
            let (so, _) = text(&out);
            assert!(
                so.contains("created     2026-12-02T19:55:18+05:30"),
                "{kind}: {so}"
            );
        }

        let json: serde_json::Value = serde_json::from_str(&ok(
            &db,
            &["runs", "list", "--format", "json", "--sort", "metric.loss"],
        ))
        .unwrap();
        let run = &json[0];
        assert_eq!(run["id"], id.as_str(), "{kind}: {json}");
        // The step is an integer, the loss every digit of what was logged, the time unix.
        assert!(run["step"].is_u64(), "{kind}: {run}");
        assert_eq!(run["step"].as_u64(), Some(10), "{kind}: {run}");
        assert_eq!(
            run["metric.loss"].as_f64(),
            Some(1.234_567_890_123_456_7),
            "{kind}: {run}"
        );
        assert_eq!(run["created_at"].as_f64(), Some(1796221518.25), "{kind}");
    }
}

#[test]
fn tags_notes_archive_and_delete() {
    for db in TestDb::all() {
        let kind = db.kind();
        let mut reg = db.open();
        let a = add(&mut reg, "aaaa", "pretrain", None, 3.0);
        let b = add(&mut reg, "aaaa", "sft", Some(&a), 2.0);
        let c = add(&mut reg, "cccc", "pretrain", None, 4.0);

        ok(&db, &["runs", "tag", &a, "baseline", "best"]);
        ok(&db, &["runs", "tag", &c, "baseline"]);
        let ids = |filter: &str, all: bool| -> Vec<String> {
            let mut args = vec!["runs", "list", "--format", "json", "--where", filter];
            if all {
                args.push("--all");
            }
            let v: serde_json::Value = serde_json::from_str(&ok(&db, &args)).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids("tag = best", false), vec![a.clone()], "{kind}");
        assert_eq!(
            ids("tag = baseline", false),
            vec![a.clone(), c.clone()],
            "{kind}"
        );
        assert_eq!(
            ids("tag != best", false),
            vec![b.clone(), c.clone()],
            "{kind}"
        );
        assert_eq!(ids("tag in (best, nope)", false), vec![a.clone()], "{kind}");
        ok(&db, &["runs", "tag", &a, "best", "--remove"]);
        assert!(ids("tag = best", false).is_empty(), "{kind}");

        ok(
            &db,
            &["runs", "note", &c, "diverged after warmup; lr too high"],
        );
        let show = ok(&db, &["runs", "show", &c]);
        assert!(
            show.contains("note        diverged after warmup; lr too high")
                && show.contains("tags        baseline"),
            "{kind}: {show}"
        );

        // Archived: hidden from the list unless --all or asked about.
        ok(&db, &["runs", "archive", &c]);
        assert_eq!(ids("stage = pretrain", false), vec![a.clone()], "{kind}");
        assert_eq!(
            ids("stage = pretrain", true),
            vec![a.clone(), c.clone()],
            "{kind}"
        );
        assert_eq!(ids("archived = true", false), vec![c.clone()], "{kind}");
        ok(&db, &["runs", "archive", &c, "--undo"]);
        assert_eq!(ids("stage = pretrain", false).len(), 2, "{kind}");

        // Delete: refused without --yes when stdin is not a terminal, nothing lost.
        let o = Command::new(env!("CARGO_BIN_EXE_doge"))
            .args(["runs", "delete", &a, "--registry", &db.arg()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (_, err) = text(&o);
        assert!(
            !o.status.success() && err.contains("--yes"),
            "{kind}: {err}"
        );
        assert_eq!(count(&reg, "SELECT count(*) FROM runs"), 3, "{kind}");

        let out = ok(&db, &["runs", "delete", &a, "--yes"]);
        assert!(out.contains("deleted 1 run"), "{kind}: {out}");
        assert_eq!(count(&reg, "SELECT count(*) FROM runs"), 2, "{kind}");
        let left = |table: &str| {
            count(
                &reg,
                &format!("SELECT count(*) FROM {table} WHERE run_id = 'aaaa-pretrain'"),
            )
        };
        assert_eq!(
            (left("metrics"), left("tags"), left("artifacts")),
            (0, 0, 0),
            "{kind}"
        );
        // The child keeps its rows; its lineage starts at itself now.
        assert_eq!(
            count(
                &reg,
                "SELECT count(*) FROM runs WHERE id = 'aaaa-sft' AND parent_id IS NULL"
            ),
            1,
            "{kind}"
        );
        assert_eq!(
            count(
                &reg,
                "SELECT count(*) FROM metrics WHERE run_id = 'aaaa-sft'"
            ),
            2,
            "{kind}"
        );
    }
}

#[test]
fn delete_removes_the_stage_directory_of_the_run() {
    let db = TestDb::sqlite();
    let mut reg = db.open();
    let tmp = tempfile::tempdir().unwrap();
    let stage_dir = tmp.path().join("exp-aaaa/pretrain");
    let ckpt = stage_dir.join("checkpoint-00000010");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(ckpt.join("model.safetensors"), b"weights").unwrap();
    std::fs::write(tmp.path().join("exp-aaaa/done.json"), b"{}").unwrap();
    let keep = tmp.path().join("exp-cccc/pretrain/checkpoint-00000010");
    std::fs::create_dir_all(&keep).unwrap();
    let a = add(&mut reg, "aaaa", "pretrain", None, 3.0);
    let c = add(&mut reg, "cccc", "pretrain", None, 3.0);
    reg.add_artifact(&a, "final", &ckpt, Some(10)).unwrap();
    reg.add_artifact(&c, "final", &keep, Some(10)).unwrap();
    ok(&db, &["runs", "delete", &a, "--yes"]);
    assert!(!stage_dir.exists());
    assert!(
        !tmp.path().join("exp-aaaa").exists(),
        "a run directory without stages goes too"
    );
    assert!(keep.exists(), "another run's files stay");
}
