//! `doge dist check`: the MPI build, launcher and collectives of a data-parallel job. Each rank
//! all-reduces `(rank + 1) * i` and must get the closed form `size (size + 1) / 2 * i`, and every
//! rank must receive rank 0's text. Under `mpirun -n 2` this needs a binary built with
//! `--features mpi` and Open MPI's `mpirun`; without either it skips with a notice, unless
//! `DOGE_REQUIRE_MPI=1` makes that a failure.

use crate::dist_support::{doge, mpirun};

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
            stdout.contains(&format!("rank {rank}/2 (local rank {rank}, mpi built in, threads 1): all-reduce sum ok (3 x i), broadcast: hello from rank 0 of 2")),
            "{stdout}"
        );
    }
}

/// Ranks that share a machine unbound (`--bind-to none`) and name no thread count split its cores
/// between them instead of each taking all of them.
#[test]
fn unbound_ranks_share_the_cores() {
    let Some(mut mpirun) = mpirun(2) else {
        return;
    };
    let out = mpirun
        .env_remove("RAYON_NUM_THREADS")
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
    let cores = std::thread::available_parallelism().unwrap().get();
    let threads: Vec<usize> = stdout
        .lines()
        .filter_map(|l| l.split("threads ").nth(1)?.split(')').next()?.parse().ok())
        .collect();
    assert_eq!(threads.len(), 2, "{stdout}");
    for t in threads {
        assert!(
            t >= 1 && t <= (cores / 2).max(1),
            "{t} threads on {cores} cores: {stdout}"
        );
    }
}
