//! Shared by the registry tests: seeding runs with configs, metrics and evals.
#![allow(dead_code)]

use doge::registry::{EvalRow, NewRun, Registry, RunStatus};

/// A run of a small sweep: pretrain lr and seed vary; loss falls with steps.
pub struct Seed<'a> {
    pub id: &'a str,
    pub sweep: Option<&'a str>,
    pub parent: Option<&'a str>,
    pub stage: &'a str,
    pub lr: f64,
    pub seed: u64,
    pub status: RunStatus,
    pub steps: u64,
    pub final_loss: f64,
    pub hellaswag: Option<f64>,
}

impl Default for Seed<'_> {
    fn default() -> Self {
        Seed {
            id: "run",
            sweep: None,
            parent: None,
            stage: "pretrain",
            lr: 3e-3,
            seed: 233,
            status: RunStatus::Done,
            steps: 10,
            final_loss: 3.0,
            hellaswag: None,
        }
    }
}

pub fn config(lr: f64, seed: u64) -> String {
    format!(
        r#"{{"seed":{seed},"model":{{"hidden-size":256,"layers":4}},"stage":[{{"kind":"pretrain","lr":{lr}}},{{"kind":"sft","name":"chat","lr":0.0001}}]}}"#
    )
}

pub fn add(reg: &mut Registry, s: &Seed) {
    reg.start_run(&NewRun {
        id: s.id.into(),
        experiment: "exp".into(),
        experiment_path: None,
        sweep: s.sweep.map(Into::into),
        parent_id: s.parent.map(Into::into),
        stage: s.stage.into(),
        config_json: config(s.lr, s.seed),
        config_hash: s.id.into(),
        device: "cpu".into(),
        stage_key: None,
    })
    .unwrap();
    let rows: Vec<(u64, &str, f64)> = (1..=s.steps)
        .flat_map(|step| {
            let loss = s.final_loss + (s.steps - step) as f64 * 0.1;
            [(step, "loss", loss), (step, "lr", s.lr)]
        })
        .collect();
    reg.log_metrics(s.id, &rows).unwrap();
    if let Some(acc) = s.hellaswag {
        reg.add_eval(
            s.id,
            &EvalRow {
                task: "hellaswag".into(),
                metric: "acc_norm".into(),
                value: acc,
                stderr: Some(0.01),
                n: Some(100),
                fewshot: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    }
    if s.status != RunStatus::Running {
        reg.finish_run(s.id, s.status, None).unwrap();
    }
}

/// A registry database for one test: an SQLite file in a temporary folder, or a fresh database
/// on the PostgreSQL server of `$DOGE_TEST_POSTGRES` (dropped afterwards).
pub enum TestDb {
    Sqlite {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    },
    Postgres {
        admin: String,
        name: String,
        url: String,
    },
}

/// The server the PostgreSQL tests use (`source .ci/postgres.sh` starts one and sets it).
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("DOGE_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_string()),
        _ => {
            // CI must not pass by skipping: .ci/run sets DOGE_REQUIRE_POSTGRES=1.
            assert!(
                std::env::var("DOGE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "DOGE_REQUIRE_POSTGRES=1 but DOGE_TEST_POSTGRES is not set: start a server with `source .ci/postgres.sh`"
            );
            eprintln!(
                "notice: PostgreSQL registry tests skipped (set DOGE_TEST_POSTGRES, e.g. `source .ci/postgres.sh`)"
            );
            None
        }
    }
}

/// `postgres://user@host:port/db` with another database name.
fn with_database(url: &str, db: &str) -> String {
    let (base, _) = match url.rfind('/') {
        Some(i) if i > url.find("://").map_or(0, |s| s + 2) => url.split_at(i),
        _ => (url, ""),
    };
    format!("{base}/{db}")
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg/doge.sqlite");
        TestDb::Sqlite { _dir: dir, path }
    }

    /// A new, empty database on the test server (None when there is none).
    pub fn postgres() -> Option<TestDb> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let admin = postgres_admin_url()?;
        let name = format!(
            "doge_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to DOGE_TEST_POSTGRES={admin}: {e}"));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = with_database(&admin, &name);
        Some(TestDb::Postgres { admin, name, url })
    }

    /// SQLite always, PostgreSQL when a test server is set.
    pub fn all() -> Vec<TestDb> {
        let mut v = vec![TestDb::sqlite()];
        v.extend(TestDb::postgres());
        v
    }

    pub fn location(&self) -> doge::registry::db::Location {
        match self {
            TestDb::Sqlite { path, .. } => doge::registry::db::Location::Sqlite(path.clone()),
            TestDb::Postgres { url, .. } => doge::registry::db::Location::Postgres(url.clone()),
        }
    }

    /// What `--registry` takes.
    pub fn arg(&self) -> String {
        match self {
            TestDb::Sqlite { path, .. } => path.display().to_string(),
            TestDb::Postgres { url, .. } => url.clone(),
        }
    }

    pub fn open(&self) -> Registry {
        Registry::connect(&self.location()).unwrap()
    }

    /// "sqlite" or "postgres", for assertion messages.
    pub fn kind(&self) -> &'static str {
        match self {
            TestDb::Sqlite { .. } => "sqlite",
            TestDb::Postgres { .. } => "postgres",
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin, name, .. } = self {
            if let Ok(mut c) = postgres::Client::connect(admin, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// `SELECT count(*) ...` (or any one-number query) on a registry of either kind.
pub fn count(reg: &Registry, sql: &str) -> i64 {
    reg.db().query_i64(sql, &[]).unwrap()
}

/// Every row of a query in a form that compares exactly: floats by their bits (so 0.1 and
/// 0.1 + 1e-17 differ), the type of each value kept (Int(1) is not Real(1.0)).
pub fn exact_rows(reg: &Registry, sql: &str) -> Vec<Vec<String>> {
    use doge::registry::db::Value;
    reg.db()
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e:#}"))
        .into_iter()
        .map(|r| {
            r.0.into_iter()
                .map(|v| match v {
                    Value::Null => "NULL".to_string(),
                    Value::Int(x) => format!("i{x}"),
                    Value::Real(x) => format!("f{:016x}({x})", x.to_bits()),
                    Value::Text(s) => format!("t{s:?}"),
                })
                .collect()
        })
        .collect()
}

/// Runs the doge binary with `args` and `--registry` pointing at `db`.
pub fn doge_on(db: &TestDb, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_doge"))
        .args(args)
        .arg("--registry")
        .arg(db.arg())
        .output()
        .unwrap()
}
