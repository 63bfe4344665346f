//! Acceptance 1: 8 processes write a run and 2,000 metric rows each into one registry at once.

use std::process::Command;

use doge::registry::Registry;

#[test]
fn eight_processes_write_at_once_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reg/doge.sqlite");
    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_doge"))
                .args(["registry", "stress", "--registry"])
                .arg(&path)
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
            "writer {i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let reg = Registry::open(&path).unwrap();
    let c = reg.connection();
    let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM runs"), 8);
    assert_eq!(count("SELECT count(*) FROM runs WHERE status = 'done'"), 8);
    assert_eq!(count("SELECT count(*) FROM metrics"), 16_000);
    assert_eq!(
        count("SELECT count(*) FROM (SELECT run_id FROM metrics GROUP BY run_id HAVING count(*) = 2000)"),
        8
    );
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
