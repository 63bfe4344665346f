//! The processes of a data-parallel job: which one this is (rank), how many there are (world),
//! and the collectives they share. MPI is the launcher, the rendezvous and the CPU transport
//! (`mpirun -n N doge ...`, `srun --mpi=pmix doge ...`, feature `mpi`); doge writes no transport
//! of its own. A process not started by an MPI launcher (or built without `mpi`) is world 1, and
//! every collective is then the identity.
//!
//! Collectives wait with a deadline (`DOGE_DIST_TIMEOUT`, seconds, default 300): a rank that died
//! without its launcher noticing makes the others fail with a message instead of hanging.

#[cfg(feature = "mpi")]
mod mpi_backend;
#[cfg(feature = "cuda")]
pub mod nccl;
pub mod tensors;

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Result;

/// Default seconds a collective may wait for the other ranks.
pub const DEFAULT_TIMEOUT_S: f64 = 300.0;

/// This process's place in the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
    /// Rank among the processes on this machine (which GPU a rank drives).
    pub local_rank: usize,
}

impl World {
    pub const SINGLE: World = World {
        rank: 0,
        size: 1,
        local_rank: 0,
    };

    /// Rank 0 alone writes checkpoints, the registry and the progress bar.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }
}

/// Whether an MPI launcher started this process: its environment names a rank. Checked before
/// initialising MPI, so that a plain `doge exp run` never loads the MPI runtime.
pub fn launched_by_mpi() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE", // Open MPI's mpirun
        "PMIX_RANK",            // PMIx launchers (srun --mpi=pmix, prterun)
        "PMI_RANK",             // MPICH's hydra, srun --mpi=pmi2
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some())
}

/// Whether this binary can join an MPI job (built with feature `mpi`).
pub const HAS_MPI: bool = cfg!(feature = "mpi");

static WORLD: OnceLock<World> = OnceLock::new();

/// Joins the MPI job this process was launched in (once; later calls return the same world).
/// Without a launcher, or in a binary built without MPI, the world is this process alone; under a
/// launcher without MPI support the error says how to build one.
pub fn init() -> Result<World> {
    if let Some(w) = WORLD.get() {
        return Ok(*w);
    }
    let world = if launched_by_mpi() {
        #[cfg(feature = "mpi")]
        {
            mpi_backend::init()?
        }
        #[cfg(not(feature = "mpi"))]
        {
            anyhow::bail!(
                "started by an MPI launcher, but this doge was built without MPI; rebuild with `cargo build --release --features mpi` (needs the MPI headers, e.g. `apt-get install libopenmpi-dev openmpi-bin libclang-dev`)"
            )
        }
    } else {
        World::SINGLE
    };
    Ok(*WORLD.get_or_init(|| world))
}

/// The world `init` joined (world 1 before it).
pub fn world() -> World {
    WORLD.get().copied().unwrap_or(World::SINGLE)
}

/// How long a collective waits for the other ranks.
pub fn timeout() -> Duration {
    let s = std::env::var("DOGE_DIST_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(DEFAULT_TIMEOUT_S);
    Duration::from_secs_f64(s)
}

/// Element-wise sum over every rank, in place.
pub fn all_reduce_sum_f32(values: &mut [f32]) -> Result<()> {
    if world().size == 1 {
        return Ok(());
    }
    backend::all_reduce_sum_f32(values)
}

/// Element-wise sum over every rank, in place.
pub fn all_reduce_sum_f64(values: &mut [f64]) -> Result<()> {
    if world().size == 1 {
        return Ok(());
    }
    backend::all_reduce_sum_f64(values)
}

/// How long a rank waits for the others in a collective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Up to [`timeout`]: the collectives of a training step, where every rank is busy alike.
    Bounded,
    /// For as long as rank 0 works alone (an eval stage, the registry, a claim): the control
    /// points between stages. A dead rank 0 still ends the job through the launcher.
    ForRoot,
}

impl Wait {
    fn deadline(self) -> Option<Duration> {
        match self {
            Wait::Bounded => Some(timeout()),
            Wait::ForRoot => None,
        }
    }
}

/// Rank 0's bytes on every rank (the others' input is replaced).
pub fn broadcast_bytes(bytes: &mut Vec<u8>, wait: Wait) -> Result<()> {
    if world().size == 1 {
        return Ok(());
    }
    backend::broadcast_bytes(bytes, wait.deadline())
}

/// Rank 0's values on every rank (the others' input is replaced).
pub fn broadcast_f32(values: &mut Vec<f32>, wait: Wait) -> Result<()> {
    if world().size == 1 {
        return Ok(());
    }
    backend::broadcast_f32(values, wait.deadline())
}

/// Rank 0's `value` on every rank, as JSON: rank 0 passes `Some`, the others `None`.
pub fn from_root<T: serde::Serialize + serde::de::DeserializeOwned>(
    value: Option<&T>,
    wait: Wait,
) -> Result<T> {
    let mut bytes = match value {
        Some(v) => serde_json::to_vec(v)?,
        None => Vec::new(),
    };
    broadcast_bytes(&mut bytes, wait)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "rank {}: rank 0 sent an unreadable value: {e}",
            world().rank
        )
    })
}

/// Leaves the MPI job (MPI_Finalize) before the process exits; a no-op at world 1.
pub fn finalize() {
    #[cfg(feature = "mpi")]
    mpi_backend::finalize();
}

#[cfg(feature = "mpi")]
use mpi_backend as backend;

/// Without MPI the world is always 1, and the collectives above return before reaching here.
#[cfg(not(feature = "mpi"))]
mod backend {
    use anyhow::Result;

    const NO_MPI: &str = "a world of more than one process needs the `mpi` feature";

    pub(super) fn all_reduce_sum_f32(_: &mut [f32]) -> Result<()> {
        unreachable!("{NO_MPI}")
    }
    pub(super) fn all_reduce_sum_f64(_: &mut [f64]) -> Result<()> {
        unreachable!("{NO_MPI}")
    }
    // The same signatures as the MPI backend's, which resizes the vector.
    #[allow(clippy::ptr_arg)]
    pub(super) fn broadcast_bytes(_: &mut Vec<u8>, _: Option<std::time::Duration>) -> Result<()> {
        unreachable!("{NO_MPI}")
    }
    #[allow(clippy::ptr_arg)]
    pub(super) fn broadcast_f32(_: &mut Vec<f32>, _: Option<std::time::Duration>) -> Result<()> {
        unreachable!("{NO_MPI}")
    }
}

/// `doge dist check`: every rank adds `rank + 1` into a vector and receives rank 0's text; the
/// sums must equal the closed form `size (size + 1) / 2` on every rank.
pub fn check() -> Result<String> {
    let w = init()?;
    let mut values: Vec<f32> = (0..1000).map(|i| (w.rank + 1) as f32 * i as f32).collect();
    all_reduce_sum_f32(&mut values)?;
    let want = (w.size * (w.size + 1) / 2) as f32;
    let bad = values
        .iter()
        .enumerate()
        .filter(|(i, v)| **v != want * *i as f32)
        .count();
    let mut text = if w.is_root() {
        format!("hello from rank 0 of {}", w.size).into_bytes()
    } else {
        Vec::new()
    };
    broadcast_bytes(&mut text, Wait::Bounded)?;
    let text = String::from_utf8_lossy(&text).to_string();
    if bad > 0 {
        anyhow::bail!(
            "rank {}: {bad} of 1000 all-reduced values differ from the closed form",
            w.rank
        );
    }
    Ok(format!(
        "rank {}/{} (local rank {}, mpi {}, threads {}): all-reduce sum ok ({want} x i), broadcast: {text}",
        w.rank,
        w.size,
        w.local_rank,
        if HAS_MPI { "built in" } else { "not built" },
        rayon::current_num_threads()
    ))
}
