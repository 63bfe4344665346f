//! The MPI side of `dist` (rsmpi over the system's Open MPI or MPICH). Only the main thread calls
//! MPI (`Threading::Funneled`); collectives are started non-blocking and polled against the
//! deadline, so a dead peer is reported instead of hanging forever.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::World;

/// Held until `finalize`, which drops it (MPI_Finalize).
static UNIVERSE: Mutex<Option<Universe>> = Mutex::new(None);

pub(super) fn init() -> Result<World> {
    let Some((universe, _)) = mpi::initialize_with_threading(mpi::Threading::Funneled) else {
        bail!("MPI was already initialised in this process");
    };
    let comm = universe.world();
    // The processes sharing this machine's memory: their order gives the local rank.
    let local = comm.split_shared(comm.rank());
    let world = World {
        rank: comm.rank() as usize,
        size: comm.size() as usize,
        local_rank: local.rank() as usize,
    };
    *UNIVERSE.lock().unwrap() = Some(universe);
    Ok(world)
}

pub(super) fn finalize() {
    drop(UNIVERSE.lock().unwrap().take());
}

fn comm() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

/// Polls a started request until done; past the deadline the whole job is aborted
/// (MPI_Abort), since a collective cannot be cancelled.
fn wait<'a, D: ?Sized, S: mpi::request::Scope<'a>>(
    mut req: mpi::request::Request<'a, D, S>,
    what: &str,
    deadline: Option<Duration>,
) {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        match req.test() {
            Ok(_) => return,
            Err(r) => req = r,
        }
        if let Some(deadline) = deadline.filter(|d| start.elapsed() > *d) {
            eprintln!(
                "error: rank {}: {what}: no answer from the other ranks in {:.0} s (did a rank die?); aborting the job (DOGE_DIST_TIMEOUT sets the wait)",
                comm().rank(),
                deadline.as_secs_f64()
            );
            comm().abort(1);
        }
        // Spin briefly (a step's all-reduce is usually done within microseconds of the last
        // rank's arrival), then sleep so a waiting rank leaves the cores to the slower one.
        spins += 1;
        if spins > 2_000 {
            std::thread::sleep(Duration::from_micros(200));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// MPI counts are C ints: larger buffers go in pieces of this many elements.
const CHUNK: usize = 1 << 28;

/// Element-wise sum over every rank, in place (one generic body for f32 and f64).
fn all_reduce_sum<T: Equivalence + Copy>(values: &mut [T]) -> Result<()> {
    for piece in values.chunks_mut(CHUNK) {
        let send = piece.to_vec();
        mpi::request::scope(|scope| {
            let req =
                comm().immediate_all_reduce_into(scope, &send[..], piece, SystemOperation::sum());
            wait(req, "all-reduce", Some(super::timeout()));
        });
    }
    Ok(())
}

pub(super) fn all_reduce_sum_f32(values: &mut [f32]) -> Result<()> {
    all_reduce_sum(values)
}

pub(super) fn all_reduce_sum_f64(values: &mut [f64]) -> Result<()> {
    all_reduce_sum(values)
}

/// Rank 0's values on every rank (one generic body for bytes and f32).
fn broadcast<T: Equivalence + Copy + Default>(
    values: &mut Vec<T>,
    deadline: Option<Duration>,
) -> Result<()> {
    let c = comm();
    let root = c.process_at_rank(0);
    let mut len = [values.len() as u64];
    mpi::request::scope(|scope| {
        let req = root.immediate_broadcast_into(scope, &mut len[..]);
        wait(req, "broadcast", deadline);
    });
    values.resize(len[0] as usize, T::default());
    for piece in values.chunks_mut(CHUNK) {
        mpi::request::scope(|scope| {
            let req = root.immediate_broadcast_into(scope, piece);
            wait(req, "broadcast", deadline);
        });
    }
    Ok(())
}

pub(super) fn broadcast_bytes(bytes: &mut Vec<u8>, deadline: Option<Duration>) -> Result<()> {
    broadcast(bytes, deadline)
}

pub(super) fn broadcast_f32(values: &mut Vec<f32>, deadline: Option<Duration>) -> Result<()> {
    broadcast(values, deadline)
}
