//! `doge registry merge`: imports another machine's runs; a second merge adds nothing.

use crate::registry_support::{add, Seed};
use doge::registry::merge::merge;
use doge::registry::Registry;

fn count(reg: &Registry, table: &str) -> i64 {
    reg.connection()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn merge_imports_new_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut here = Registry::open(&dir.path().join("here.sqlite")).unwrap();
    let there_path = dir.path().join("there.sqlite");
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

    let s = merge(&mut here, &there_path).unwrap();
    assert_eq!(
        (s.runs, s.skipped, s.metrics, s.evals, s.artifacts),
        (2, 1, 18, 1, 1)
    );
    assert_eq!(count(&here, "runs"), 3);
    assert_eq!(count(&here, "metrics"), 6 + 8 + 10);
    assert_eq!(here.metric("remote-2", "loss").unwrap().len(), 5);

    let again = merge(&mut here, &there_path).unwrap();
    assert_eq!((again.runs, again.skipped, again.metrics), (0, 3, 0));
    assert_eq!(count(&here, "metrics"), 24);
    assert_eq!(count(&here, "evals"), 1);

    let e = merge(&mut here, &dir.path().join("missing.sqlite")).unwrap_err();
    assert!(e.to_string().contains("no such registry file"), "{e}");
}
