//! Shared by the MPI tests: `mpirun` when both it and a doge built with `--features mpi` are here,
//! else a skip (a failure under `DOGE_REQUIRE_MPI=1`, as in CI).
#![allow(dead_code)]

use std::process::Command;

pub fn doge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_doge"))
}

/// `mpirun -n N` with what running as root (CI) and more ranks than cores need; None (after
/// printing why) when this test cannot run here.
pub fn mpirun(n: usize) -> Option<Command> {
    let have_mpi_binary =
        String::from_utf8_lossy(&doge().args(["dist", "check"]).output().ok()?.stdout)
            .contains("mpi built in");
    let have_mpirun = Command::new("mpirun").arg("--version").output().is_ok();
    if !(have_mpi_binary && have_mpirun) {
        assert!(
            std::env::var("DOGE_REQUIRE_MPI").as_deref() != Ok("1"),
            "DOGE_REQUIRE_MPI=1 but {}",
            if have_mpi_binary {
                "mpirun is missing (apt-get install openmpi-bin)"
            } else {
                "the test binary was built without `--features mpi`"
            }
        );
        eprintln!("skipped: needs `cargo test --release --features mpi` and mpirun");
        return None;
    }
    let mut c = Command::new("mpirun");
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        // One thread per rank: the ranks share this machine's cores.
        .env("RAYON_NUM_THREADS", "1")
        .args(["--oversubscribe", "--bind-to", "none", "-n", &n.to_string()]);
    Some(c)
}
