//! Acceptance 1: 8 processes write a run and 2,000 metric rows each into one registry at once,
//! on SQLite (one file, WAL) and on PostgreSQL (one server database).

use std::process::Command;

use crate::registry_support::{count, TestDb};

#[test]
fn eight_processes_write_at_once_and_nothing_is_lost() {
    for db in TestDb::all() {
        let kind = db.kind();
        let children: Vec<_> = (0..8)
            .map(|i| {
                Command::new(env!("CARGO_BIN_EXE_doge"))
                    .args(["registry", "stress", "--registry"])
                    .arg(db.arg())
                    .args([
                        "--run",
                        &format!("run-{i}"),
                        "--rows",
                        "2000",
                        "--batch",
                        "50",
                    ])
                    .output_async()
            })
            .collect();
        for (i, c) in children.into_iter().enumerate() {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{kind}: writer {i} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let reg = db.open();
        assert_eq!(count(&reg, "SELECT count(*) FROM runs"), 8, "{kind}");
        assert_eq!(
            count(&reg, "SELECT count(*) FROM runs WHERE status = 'done'"),
            8,
            "{kind}"
        );
        assert_eq!(
            count(&reg, "SELECT count(*) FROM metrics"),
            16_000,
            "{kind}"
        );
        assert_eq!(
            count(
                &reg,
                "SELECT count(*) FROM (SELECT run_id FROM metrics GROUP BY run_id HAVING count(*) = 2000) per_run"
            ),
            8,
            "{kind}"
        );
    }
}

trait SpawnPiped {
    fn output_async(&mut self) -> std::process::Child;
}

impl SpawnPiped for Command {
    /// Starts the writer without waiting, so all eight overlap.
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}
