//! Issue 19, acceptance 2: `--array-index I` (or `$SLURM_ARRAY_TASK_ID`) runs exactly the I-th
//! run of the plan, so the array tasks in any order give the plain sweep's runs; and
//! `doge exp plan --slurm` writes the sbatch script a person would.

use std::path::Path;

use crate::sweep_support::{assert_six_done_once, doge, finish, losses, spawn, trained, workdir};
use doge::registry::db::Location;
use doge::registry::Registry;

#[test]
fn array_tasks_in_any_order_give_the_plain_sweeps_runs() {
    let plain = workdir("./registry", "");
    finish(
        spawn(doge(plain.path(), &["exp", "run", "sweep.kdl"])),
        "plain sweep",
    );
    let array = workdir("./registry", "");
    let plan = String::from_utf8(
        doge(array.path(), &["exp", "plan", "sweep.kdl"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let ids: Vec<String> = plan
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 6, "{plan}");
    for i in [3usize, 0, 5, 1, 4, 2] {
        let mut c = doge(array.path(), &["exp", "run", "sweep.kdl", "--quiet"]);
        // Task 4 as SLURM starts it: by the environment alone.
        if i == 4 {
            c.env("SLURM_ARRAY_TASK_ID", "4");
        } else {
            c.args(["--array-index", &i.to_string()]);
        }
        let log = finish(spawn(c), &format!("array task {i}"));
        assert_eq!(trained(&log), [ids[i].clone()], "task {i}:\n{log}");
    }
    let a = Location::Sqlite(array.path().join("registry/doge.sqlite"));
    let p = Location::Sqlite(plain.path().join("registry/doge.sqlite"));
    assert_six_done_once(&a);
    assert_eq!(
        losses(&Registry::connect(&a).unwrap()),
        losses(&Registry::connect(&p).unwrap()),
        "same run ids, bit-equal losses"
    );

    let out = doge(
        array.path(),
        &["exp", "run", "sweep.kdl", "--array-index", "6"],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--array-index 6") && err.contains("indices 0 to 5"),
        "{err}"
    );
    let out = doge(array.path(), &["exp", "run", "sweep.kdl"])
        .env("SLURM_ARRAY_TASK_ID", "x")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("SLURM_ARRAY_TASK_ID"));
}

#[test]
fn the_sbatch_script_is_the_hand_written_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = doge(
        root,
        &[
            "exp",
            "plan",
            "tests/fixtures/experiments/sweep_slurm.kdl",
            "--slurm",
            "--set",
            "stage.pretrain.max-steps=20",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected =
        std::fs::read_to_string(root.join("tests/fixtures/experiments/sweep_slurm.sbatch"))
            .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
}

#[test]
fn the_default_log_folder_is_created_under_the_runs_directory() {
    let dir = workdir("./registry", "");
    let out = doge(dir.path(), &["exp", "plan", "sweep.kdl", "--slurm"])
        .output()
        .unwrap();
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("#SBATCH --array=0-5\n"), "{script}");
    assert!(
        script.contains("#SBATCH --output=registry/slurm/%x-%A_%a.out\n"),
        "{script}"
    );
    assert!(
        !script.contains("--partition"),
        "no slurm block, no partition: {script}"
    );
    assert!(dir.path().join("registry/slurm").is_dir());
}

#[test]
fn a_bad_slurm_time_is_located() {
    let dir = workdir("./registry", "slurm {\n    time \"12h\"\n}");
    let out = doge(dir.path(), &["exp", "check", "sweep.kdl"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("sweep.kdl:7:") && err.contains("not a SLURM time"),
        "{err}"
    );
}
