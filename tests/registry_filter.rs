//! The `--where` language (precedence, values, located errors) and `doge runs list` over it.

use crate::registry_support::{add, Seed, TestDb};
use doge::registry::commands::{list, select, ListQuery};
use doge::registry::filter::{parse, Expr, Op, Value};
use doge::registry::render::Format;
use doge::registry::{Registry, RunStatus};
use doge::sql_params;

fn cmp(k: &str, op: Op, v: Value) -> Expr {
    Expr::Cmp(k.into(), op, v)
}
fn b(e: Expr) -> Box<Expr> {
    Box::new(e)
}

#[test]
fn and_binds_tighter_than_or_and_not_tighter_than_and() {
    let a = cmp("a", Op::Eq, Value::Num(1.0));
    let bb = cmp("b", Op::Eq, Value::Num(2.0));
    let c = cmp("c", Op::Eq, Value::Num(3.0));
    assert_eq!(
        parse("a = 1 or b = 2 and c = 3").unwrap(),
        Expr::Or(b(a.clone()), b(Expr::And(b(bb.clone()), b(c.clone()))))
    );
    assert_eq!(
        parse("(a = 1 or b = 2) and c = 3").unwrap(),
        Expr::And(b(Expr::Or(b(a.clone()), b(bb.clone()))), b(c.clone()))
    );
    assert_eq!(
        parse("not a = 1 and b = 2").unwrap(),
        Expr::And(b(Expr::Not(b(a.clone()))), b(bb.clone()))
    );
    assert_eq!(
        parse("NOT (a = 1 AND b = 2)").unwrap(),
        Expr::Not(b(Expr::And(b(a), b(bb))))
    );
}

#[test]
fn precedence_changes_what_matches() {
    // a=1, b=0, c=0: `a or (b and c)` is true, `(a or b) and c` is false.
    let get = |k: &str| match k {
        "a" => Value::Num(1.0),
        _ => Value::Num(0.0),
    };
    assert!(parse("a = 1 or b = 1 and c = 1").unwrap().eval(&get));
    assert!(!parse("(a = 1 or b = 1) and c = 1").unwrap().eval(&get));
}

#[test]
fn values_numbers_strings_words_and_in_lists() {
    let get = |k: &str| match k {
        "lr" => Value::Num(3e-3),
        "status" => Value::Str("done".into()),
        "name" => Value::Str("a b".into()),
        _ => Value::Null,
    };
    let t = |s: &str| parse(s).unwrap().eval(&get);
    assert!(t("lr < 6e-3"));
    assert!(t("lr >= 0.003 and lr <= .003"));
    assert!(!t("lr > 6e-3"));
    assert!(t("status = done and status != failed"));
    assert!(t("status = 'done'"));
    assert!(t("name = \"a b\""));
    assert!(t("status in (running, done)"));
    assert!(!t("status not in (running, done)"));
    assert!(t("lr in (1, 0.003)"));
    // A missing key compares false, like NULL in SQL, for every operator.
    assert!(!t("missing = 1") && !t("missing != 1") && !t("missing in (1)"));
    assert!(t("not missing = 1"));
}

fn err(src: &str) -> (usize, String) {
    let e = parse(src).unwrap_err();
    (e.column, e.expected)
}

#[test]
fn malformed_expressions_get_a_column_and_what_was_expected() {
    let (col, exp) = err("status = done and");
    assert_eq!(col, 18);
    assert!(exp.contains("a key"), "{exp}");

    let (col, exp) = err("stage.pretrain.lr < 6e-3 and eval.hellaswag.acc_norm 0.3");
    assert_eq!(col, 54);
    assert!(exp.contains("operator"), "{exp}");

    let (col, exp) = err("(seed = 1 or seed = 2");
    assert_eq!(col, 22);
    assert!(exp.contains("`)`"), "{exp}");

    let (col, _) = err("seed = 'abc");
    assert_eq!(col, 8);
    let (col, exp) = err("seed in 1, 2");
    assert_eq!((col, exp.contains("`(`")), (9, true));
    let (col, exp) = err("seed = 1 seed = 2");
    assert_eq!((col, exp.contains("`and`")), (10, true));

    let msg = parse("seed ! 3").unwrap_err().to_string();
    assert!(
        msg.contains("column 6") && msg.contains("seed ! 3") && msg.contains("     ^"),
        "{msg}"
    );
}

/// The same six runs in a registry of each backend.
fn seeded_all() -> Vec<(TestDb, Registry)> {
    TestDb::all()
        .into_iter()
        .map(|db| {
            let reg = seed(&db);
            (db, reg)
        })
        .collect()
}

fn seed(db: &TestDb) -> Registry {
    let mut reg = db.open();
    let runs = [
        Seed {
            id: "a-pretrain",
            lr: 3e-3,
            seed: 1,
            final_loss: 2.5,
            hellaswag: Some(0.35),
            ..Default::default()
        },
        Seed {
            id: "b-pretrain",
            lr: 6e-3,
            seed: 2,
            final_loss: 2.2,
            hellaswag: Some(0.40),
            ..Default::default()
        },
        Seed {
            id: "c-pretrain",
            lr: 1e-3,
            seed: 3,
            final_loss: 2.9,
            hellaswag: Some(0.28),
            ..Default::default()
        },
        Seed {
            id: "d-pretrain",
            lr: 2e-3,
            seed: 4,
            status: RunStatus::Failed,
            ..Default::default()
        },
        Seed {
            id: "e-pretrain",
            lr: 2e-3,
            seed: 5,
            status: RunStatus::Running,
            ..Default::default()
        },
        Seed {
            id: "a-chat",
            stage: "sft",
            parent: Some("a-pretrain"),
            lr: 3e-3,
            seed: 1,
            ..Default::default()
        },
    ];
    for r in &runs {
        add(&mut reg, r);
    }
    reg
}

fn ids(reg: &Registry, filter: &str, sort: Option<&str>) -> Vec<String> {
    let q = ListQuery {
        filter: Some(filter.into()),
        sort: sort.map(Into::into),
        limit: None,
        format: Format::Table,
        all: false,
    };
    select(reg, &q)
        .unwrap()
        .0
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[test]
fn list_filters_on_config_status_metrics_and_evals() {
    for (db, reg) in seeded_all() {
        let kind = db.kind();
        assert_eq!(
            ids(
                &reg,
                "stage.pretrain.lr < 6e-3 and status = done and eval.hellaswag.acc_norm > 0.3",
                None
            ),
            ["a-pretrain"],
            "{kind}"
        );
        assert_eq!(
            ids(&reg, "metric.loss < 2.6", Some("metric.loss")),
            ["b-pretrain", "a-pretrain"],
            "{kind}"
        );
        assert_eq!(
            ids(
                &reg,
                "eval.hellaswag.acc_norm > 0",
                Some("-eval.hellaswag.acc_norm")
            ),
            ["b-pretrain", "a-pretrain", "c-pretrain"],
            "{kind}"
        );
        assert_eq!(ids(&reg, "stage = sft", None), ["a-chat"], "{kind}");
        // A stage found by its name (`chat`), kebab-case keys reachable with `_`.
        assert_eq!(
            ids(
                &reg,
                "stage.chat.lr = 1e-4 and model.hidden_size = 256 and seed in (1, 3)",
                Some("id")
            )
            .len(),
            3,
            "{kind}"
        );
        assert_eq!(
            ids(&reg, "status = failed or not (seed <= 4)", Some("id")),
            ["d-pretrain", "e-pretrain"],
            "{kind}"
        );
    }
}

#[test]
fn a_running_run_with_an_old_heartbeat_lists_as_stale() {
    for (db, reg) in seeded_all() {
        let kind = db.kind();
        assert_eq!(
            ids(&reg, "status = running", None),
            ["e-pretrain"],
            "{kind}"
        );
        let old = doge::registry::now() - 600.0;
        let changed = reg
            .db()
            .execute(
                "UPDATE runs SET heartbeat_at = ?1 WHERE id = 'e-pretrain'",
                &sql_params![old],
            )
            .unwrap();
        assert_eq!(changed, 1, "{kind}");
        assert!(ids(&reg, "status = running", None).is_empty(), "{kind}");
        assert_eq!(
            ids(&reg, "status = 'running (stale)'", None),
            ["e-pretrain"],
            "{kind}"
        );
        let q = ListQuery {
            filter: None,
            sort: None,
            limit: None,
            format: Format::Table,
            all: false,
        };
        let text = list(&reg, &q).unwrap();
        let line = text.lines().find(|l| l.starts_with("e-pretrain")).unwrap();
        assert!(line.contains("running (stale)"), "{kind}: {text}");
    }
}

#[test]
fn list_formats_limit_and_columns() {
    for (db, reg) in seeded_all() {
        let kind = db.kind();
        let q = |format, limit| ListQuery {
            filter: Some("stage.pretrain.lr >= 3e-3".into()),
            sort: Some("-stage.pretrain.lr".into()),
            limit,
            format,
            all: false,
        };
        let table = list(&reg, &q(Format::Table, None)).unwrap();
        let header = table.lines().next().unwrap();
        assert!(
            header.contains("stage.pretrain.lr") && header.contains("metric.loss"),
            "{kind}: {header}"
        );
        assert_eq!(table.lines().count(), 2 + 3, "{kind}: {table}");

        let csv = list(&reg, &q(Format::Csv, Some(2))).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3, "{kind}: {csv}");
        assert!(
            lines[1].starts_with("b-pretrain,exp,pretrain,done,10,0.006,2.2"),
            "{kind}: {csv}"
        );

        let json: serde_json::Value =
            serde_json::from_str(&list(&reg, &q(Format::Json, Some(1))).unwrap()).unwrap();
        assert_eq!(json[0]["id"], "b-pretrain", "{kind}");
        assert_eq!(json[0]["metric.loss"], 2.2, "{kind}");
        assert!(json[0]["metric.eval_loss"].is_null(), "{kind}");

        let bad = ListQuery {
            filter: Some("seed >".into()),
            sort: None,
            limit: None,
            format: Format::Table,
            all: false,
        };
        let e = list(&reg, &bad).unwrap_err().to_string();
        assert!(
            e.contains("column 7") && e.contains("expected a value"),
            "{kind}: {e}"
        );
    }
}
