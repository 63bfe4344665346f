//! `doge dist check`: the MPI build, launcher and collectives of a data-parallel job. Each rank
//! all-reduces `(rank + 1) * i` and must get the closed form `size (size + 1) / 2 * i`, and every
//! rank must receive rank 0's text. Under `mpirun -n 2` this needs a binary built with
//! `--features mpi` and Open MPI's `mpirun`; without either it skips with a notice, unless
//! `DOGE_REQUIRE_MPI=1` makes that a failure.

use std::process::Command;

fn doge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_doge"))
}

#[test]
fn a_process_without_a_launcher_is_world_one() {
    let out = doge().args(["dist", "check"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("rank 0/1")
            && stdout.contains("sum ok (1 x i)")
            && stdout.contains("hello from rank 0 of 1"),
        "{stdout}"
    );
}

/// `mpirun` with what running as root (CI) needs.
fn mpirun(n: usize) -> Option<Command> {
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
        .args(["--oversubscribe", "-n", &n.to_string()]);
    Some(c)
}

#[test]
fn two_ranks_all_reduce_to_the_closed_form_and_share_rank_zeros_text() {
    let Some(mut c) = mpirun(2) else { return };
    let out = c
        .arg(env!("CARGO_BIN_EXE_doge"))
        .args(["dist", "check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for rank in 0..2 {
        assert!(
            stdout.contains(&format!("rank {rank}/2 (local rank {rank}, mpi built in): all-reduce sum ok (3 x i), broadcast: hello from rank 0 of 2")),
            "{stdout}"
        );
    }
}
