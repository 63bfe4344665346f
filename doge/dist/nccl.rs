//! NCCL for CUDA tensors (feature `cuda`): the gradients of ranks that train on GPUs are summed
//! GPU to GPU (NVLink, InfiniBand) instead of through host memory and MPI. MPI still starts the
//! job: rank 0 creates NCCL's unique id and broadcasts it over MPI, then every rank joins one
//! communicator on the GPU it trains on (its local rank's, see `pick_device`).
//!
//! The communicator runs on candle's own stream for the device, so the all-reduce is ordered
//! after the backward that wrote the gradients and before the update that reads them, with no
//! extra synchronisation.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::{anyhow, bail, Result};
use candle_core::cuda::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::op::BackpropOp;
use candle_core::{CudaDevice, CudaStorage, DType, Device, Storage, Tensor};

use super::{world, Wait};

thread_local! {
    // One communicator per GPU ordinal, made on first use. NCCL's handle is not `Send`, and the
    // training loop runs on one thread.
    static COMMS: RefCell<HashMap<usize, Rc<Comm>>> = RefCell::new(HashMap::new());
}

/// `DOGE_DIST_NCCL=1`: send gradients through NCCL at world 1 too, where the all-reduce is the
/// identity, so that one GPU checks the whole path (bench/gpu-check.sh).
pub fn forced_at_world_1() -> bool {
    std::env::var("DOGE_DIST_NCCL").as_deref() == Ok("1")
}

fn nccl_err(what: &str, e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow!(
        "NCCL {what} failed on rank {}: {e:?} (NCCL_DEBUG=INFO shows why)",
        world().rank
    )
}

fn comm(dev: &CudaDevice) -> Result<Rc<Comm>> {
    let stream = dev.cuda_stream();
    let ordinal = stream.context().ordinal();
    if let Some(c) = COMMS.with(|m| m.borrow().get(&ordinal).cloned()) {
        return Ok(c);
    }
    let w = world();
    let mut id: Vec<u8> = if w.is_root() {
        let id = Id::new().map_err(|e| nccl_err("ncclGetUniqueId", e))?;
        id.internal().iter().map(|c| *c as u8).collect()
    } else {
        Vec::new()
    };
    super::broadcast_bytes(&mut id, Wait::Bounded)?;
    let internal: [std::ffi::c_char; 128] = id
        .iter()
        .map(|b| *b as std::ffi::c_char)
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| anyhow!("rank {}: NCCL id of {} bytes, not 128", w.rank, id.len()))?;
    let comm = Comm::from_rank(stream, w.rank, w.size, Id::uninit(internal))
        .map_err(|e| nccl_err("ncclCommInitRank", e))?;
    let comm = Rc::new(comm);
    COMMS.with(|m| m.borrow_mut().insert(ordinal, comm.clone()));
    Ok(comm)
}

/// The element-wise sum over every rank of a float32 tensor on a CUDA device, as a new tensor.
pub fn all_reduce_sum(t: &Tensor) -> Result<Tensor> {
    let Device::Cuda(dev) = t.device() else {
        bail!("NCCL all-reduce: the tensor is not on a CUDA device");
    };
    if t.dtype() != DType::F32 {
        bail!("NCCL all-reduce: expected float32, got {:?}", t.dtype());
    }
    let t = t.contiguous()?;
    let n = t.elem_count();
    let comm = comm(dev)?;
    let mut sum = dev.alloc_zeros::<f32>(n)?;
    {
        let (storage, layout) = t.storage_and_layout();
        let Storage::Cuda(storage) = &*storage else {
            bail!("NCCL all-reduce: the tensor is not on a CUDA device");
        };
        let start = layout.start_offset();
        let src = storage.as_cuda_slice::<f32>()?.slice(start..start + n);
        comm.all_reduce(&src, &mut sum, &ReduceOp::Sum)
            .map_err(|e| nccl_err("ncclAllReduce", e))?;
    }
    let storage = CudaStorage::wrap_cuda_slice(sum, dev.clone());
    Ok(Tensor::from_storage(
        Storage::Cuda(storage),
        t.shape().clone(),
        BackpropOp::none(),
        false,
    ))
}

/// `doge dist check --device cuda:N`: every rank all-reduces `(rank + 1) * i` on its GPU; the
/// sums must equal `size (size + 1) / 2 * i`.
pub fn check(dev: &Device) -> Result<String> {
    let w = world();
    let x = Tensor::arange(0f32, 1000f32, dev)?.affine((w.rank + 1) as f64, 0.0)?;
    let got = all_reduce_sum(&x)?.to_vec1::<f32>()?;
    let want = (w.size * (w.size + 1) / 2) as f32;
    let bad = got
        .iter()
        .enumerate()
        .filter(|(i, v)| **v != want * *i as f32)
        .count();
    if bad > 0 {
        bail!(
            "rank {}: {bad} of 1000 NCCL-reduced values differ from the closed form",
            w.rank
        );
    }
    Ok(format!("NCCL all-reduce sum ok ({want} x i) on {dev:?}"))
}
