//! doge's own CUDA kernels (kernels.cu), compiled at run time by NVRTC for the GPU at hand, so
//! users need no nvcc for them: RMSNorm forward/backward, cross-entropy over the vocabulary
//! without a materialised softmax, AdamW in one pass per tensor, and a flash-style dynamic-mask
//! attention forward. candle's own CUDA backend does everything else.
//!
//! Each function takes and returns contiguous float32 tensors on one CUDA device. `selftest`
//! checks every kernel against the composed candle ops on a real GPU (`doge cuda selftest`);
//! `compile_ptx` alone runs without a GPU (`doge cuda kernels`, in CI).

pub mod ops;
pub mod selftest;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use candle_core::cuda::cudarc::driver::{CudaFunction, CudaSlice, CudaView, LaunchConfig};
use candle_core::cuda::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use candle_core::op::BackpropOp;
use candle_core::{
    CudaDevice, CudaStorage, DType, Device, Error, Layout, Result, Shape, Storage, Tensor,
};

/// The kernels' source.
pub const SOURCE: &str = include_str!("kernels.cu");

/// Every entry point in `SOURCE`.
pub const KERNELS: &[&str] = &[
    "rms_norm_fwd",
    "rms_norm_bwd_x",
    "rms_norm_bwd_w",
    "cross_entropy_fwd",
    "cross_entropy_bwd",
    "adamw_step",
    "dma_attention_fwd",
    "dma_attention_bwd",
];

const MODULE: &str = "doge_kernels";

/// Whether training uses the attention kernels' backward (`DOGE_CUDA_ATTENTION=fused`); by
/// default training attention is cuBLAS products plus composed softmax.
pub fn fused_attention_training() -> bool {
    std::env::var("DOGE_CUDA_ATTENTION").as_deref() == Ok("fused")
}

/// Whether the model and optimizer use these kernels for this tensor: float32 on a CUDA device.
/// (bf16 autocast only changes the matmuls; the tensors the kernels see stay float32.)
pub fn fusable(t: &Tensor) -> bool {
    t.device().is_cuda() && t.dtype() == DType::F32
}

fn cuda_err(e: impl std::fmt::Display) -> Error {
    Error::Cuda(e.to_string().into())
}

/// PTX for a compute capability such as `sm_90`.
pub fn compile_ptx(arch: &'static str) -> Result<String> {
    let opts = CompileOptions {
        arch: Some(arch),
        use_fast_math: Some(false),
        name: Some("doge_kernels.cu".into()),
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(SOURCE, opts).map_err(|e| cuda_err(format!("NVRTC: {e}")))?;
    Ok(ptx.to_src())
}

/// The PTX for this device's capability, compiled once per process and capability.
fn ptx_for(dev: &CudaDevice) -> Result<String> {
    static CACHE: OnceLock<Mutex<HashMap<i32, String>>> = OnceLock::new();
    use candle_core::cuda::cudarc::driver::sys::CUdevice_attribute as A;
    let ctx = dev.cuda_stream().context().clone();
    let major = ctx
        .attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        .map_err(cuda_err)?;
    let minor = ctx
        .attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
        .map_err(cuda_err)?;
    let cc = major * 10 + minor;
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = cache.get(&cc) {
        return Ok(p.clone());
    }
    // NVRTC wants a 'static arch string; the set of capabilities is tiny, so leaking is fine.
    let arch: &'static str = Box::leak(format!("sm_{cc}").into_boxed_str());
    let ptx = compile_ptx(arch)?;
    cache.insert(cc, ptx.clone());
    Ok(ptx)
}

fn function(dev: &CudaDevice, name: &str) -> Result<CudaFunction> {
    Ok(dev
        .get_or_load_custom_func(name, MODULE, &ptx_for(dev)?)?
        .into_cuda_function())
}

fn cuda_device(t: &Tensor) -> Result<CudaDevice> {
    match t.device() {
        Device::Cuda(d) => Ok(d.clone()),
        _ => Err(cuda_err("doge::cuda kernels need tensors on a CUDA device")),
    }
}

/// A contiguous tensor's device buffer, from its start offset. `T` must be its dtype.
fn view<'a, T: candle_core::cuda::CudaDType + candle_core::cuda::cudarc::driver::DeviceRepr>(
    storage: &'a Storage,
    layout: &Layout,
) -> Result<CudaView<'a, T>> {
    if !layout.is_contiguous() {
        return Err(cuda_err("doge::cuda kernels need contiguous tensors"));
    }
    match storage {
        Storage::Cuda(c) => Ok(c.as_cuda_slice::<T>()?.slice(layout.start_offset()..)),
        _ => Err(cuda_err("doge::cuda kernels need tensors on a CUDA device")),
    }
}

/// A fresh float32 tensor over a buffer a kernel wrote.
fn wrap(slice: CudaSlice<f32>, dev: &CudaDevice, shape: impl Into<Shape>) -> Tensor {
    Tensor::from_storage(
        Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, dev.clone())),
        shape,
        BackpropOp::none(),
        false,
    )
}

fn check_f32(name: &str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(cuda_err(format!(
            "{name}: expected float32, got {:?}",
            t.dtype()
        )));
    }
    Ok(())
}

fn launch_rows(rows: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn launch_elements(n: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(threads as usize) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}
