//! Fused CPU kernels for the training hot paths, each a candle custom op with its own backward.
//!
//! One file per op: the forward and backward kernels, and the composed candle reference the tests
//! compare them with (`tests/ops_fused.rs`). The kernels run on the CPU for f32 and f64 (f64 keeps
//! the finite-difference gradient tests meaningful); on other devices or dtypes the model calls the
//! composed reference instead, so CUDA keeps working unchanged.

pub mod adamw;
pub mod attention;
pub mod cross_entropy;
pub mod decode;
pub mod matvec;
pub mod residual;
pub mod rms_norm;
pub mod rotary;
pub mod swiglu;

use candle_core::{bail, CpuStorage, DType, Layout, Result, Storage, Tensor, WithDType};

/// Whether the model should use the fused kernels by default: yes unless `DOGE_FUSED=0`.
pub fn fused_by_default() -> bool {
    !matches!(
        std::env::var("DOGE_FUSED").as_deref(),
        Ok("0") | Ok("false")
    )
}

/// Whether the fused kernels can run on this tensor (CPU, f32 or f64).
pub fn fusable(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// The float operations the kernels need, for f32 and f64.
pub trait Real: WithDType + std::ops::Neg<Output = Self> {
    fn exp(self) -> Self;
    /// exp for the kernels' inner loops: for f32 a polynomial the compiler vectorises (relative
    /// error below 2e-7 on the range that does not underflow), for f64 the exact `exp`.
    fn fast_exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn maximum(self, other: Self) -> Self;
    const NEG_INFINITY: Self;
    /// The elements of a CPU storage of this type, for writing.
    fn storage_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
}

impl Real for f32 {
    fn exp(self) -> Self {
        f32::exp(self)
    }
    #[inline(always)]
    fn fast_exp(self) -> Self {
        exp_f32(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn maximum(self, other: Self) -> Self {
        f32::max(self, other)
    }
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    fn storage_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Real for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn fast_exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn maximum(self, other: Self) -> Self {
        f64::max(self, other)
    }
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    fn storage_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// e^x as 2^n · 2^f (n = round(x·log2 e), |f| <= 1/2) with 2^f by its Taylor series to degree 7
/// (truncation error < 1e-8 relative); branch-free so that loops over it vectorise. Inputs are
/// clamped to the range where e^x is a normal f32 (below it the result is ~1e-38 instead of 0).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LN2: f32 = std::f32::consts::LN_2;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E;
    // Round to nearest by the 1.5·2^23 trick (no libm call, so it vectorises).
    let n = (t + 12_582_912.0) - 12_582_912.0;
    let f = (t - n) * LN2; // e^f = 2^(t - n)
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0
                    + f * (1.0 / 24.0
                        + f * (1.0 / 120.0 + f * (1.0 / 720.0 + f * (1.0 / 5040.0)))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// A loop body to run with the widest vector instructions the CPU has (see [`with_simd`]). `run`
/// must be `#[inline(always)]` so that it is compiled into the feature-enabled caller.
pub trait SimdKernel {
    type Output;
    fn run(self) -> Self::Output;
}

/// Runs `k` compiled for AVX-512 (F, BW, DQ, VL) and FMA when this CPU has them, else for AVX2 +
/// FMA, else as built: the crate targets baseline x86-64, so without this the kernels' loops would
/// vectorise only 4 floats wide.
#[inline(always)]
pub fn with_simd<K: SimdKernel>(k: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
        unsafe fn avx512<K: SimdKernel>(k: K) -> K::Output {
            k.run()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<K: SimdKernel>(k: K) -> K::Output {
            k.run()
        }
        use std::sync::OnceLock;
        static LEVEL: OnceLock<u8> = OnceLock::new();
        let level = *LEVEL.get_or_init(|| {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f")
                && has!("avx512bw")
                && has!("avx512dq")
                && has!("avx512vl")
                && has!("fma")
            {
                2
            } else if has!("avx2") && has!("fma") {
                1
            } else {
                0
            }
        });
        match level {
            // SAFETY: the CPU has every feature the function is compiled for.
            2 => return unsafe { avx512(k) },
            1 => return unsafe { avx2(k) },
            _ => {}
        }
    }
    k.run()
}

/// Lanes of the manual reductions below: float sums and maxima only vectorise when written as
/// independent partial accumulators (the compiler may not reorder float additions).
const LANES: usize = 16;

/// The largest element (NEG_INFINITY for an empty slice).
#[inline(always)]
pub fn max_of<T: Real>(x: &[T]) -> T {
    let mut acc = [T::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = acc[i].maximum(c[i]);
        }
    }
    let m = tail.iter().fold(T::NEG_INFINITY, |a, &v| a.maximum(v));
    acc.iter().fold(m, |a, &v| a.maximum(v))
}

/// x ← e^(x − shift) for every element; returns their sum.
#[inline(always)]
pub fn exp_shifted_in_place<T: Real>(x: &mut [T], shift: T) -> T {
    let mut acc = [T::zero(); LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            c[i] = (c[i] - shift).fast_exp();
            acc[i] += c[i];
        }
    }
    let mut sum = T::zero();
    for v in chunks.into_remainder() {
        *v = (*v - shift).fast_exp();
        sum += *v;
    }
    acc.iter().fold(sum, |a, &v| a + v)
}

/// Σ e^(x − shift) without writing.
#[inline(always)]
pub fn exp_shifted_sum<T: Real>(x: &[T], shift: T) -> T {
    let mut acc = [T::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += (c[i] - shift).fast_exp();
        }
    }
    let sum = tail
        .iter()
        .fold(T::zero(), |a, &v| a + (v - shift).fast_exp());
    acc.iter().fold(sum, |a, &v| a + v)
}

/// Evaluates `$body` with the type alias `$T` naming the float type of CPU storage `$storage` (f32
/// or f64) and wraps the `Vec` it returns in storage of that type: the dtype switch of every op's
/// forward, written once. Other dtypes fail with `$op` in the message.
macro_rules! per_float_storage {
    ($storage:expr, $op:expr, $T:ident => $body:expr) => {
        match $storage {
            candle_core::CpuStorage::F32(_) => {
                type $T = f32;
                candle_core::CpuStorage::F32($body)
            }
            candle_core::CpuStorage::F64(_) => {
                type $T = f64;
                candle_core::CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: f32 or f64 expected", $op),
        }
    };
}
pub(crate) use per_float_storage;

/// Evaluates `$body` with the type alias `$T` naming f32 or f64 after `$dtype`; other dtypes fail
/// with `$op` in the message. The dtype switch of the backward passes and of the ops that return
/// tensors, written once.
macro_rules! per_float {
    ($dtype:expr, $op:expr, $T:ident => $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $T = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $T = f64;
                $body
            }
            dt => candle_core::bail!("{}: f32 or f64 expected, found {dt:?}", $op),
        }
    };
}
pub(crate) use per_float;

/// A CPU tensor of `values` shaped like `like`.
pub fn cpu_tensor_like<T: WithDType>(values: Vec<T>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(values, like.shape(), &candle_core::Device::Cpu)
}

/// The element-wise sum of per-task partial results of length `len` (the row reductions of the
/// weight gradients), added in task order so that the result does not depend on thread timing.
pub fn sum_partials<T: Real>(partials: &[Vec<T>], len: usize) -> Vec<T> {
    let mut total = vec![T::zero(); len];
    for p in partials {
        for (a, &b) in total.iter_mut().zip(p) {
            *a += b;
        }
    }
    total
}

/// The elements of a contiguous CPU storage view.
pub fn cpu_slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&s.as_slice::<T>()?[start..end]),
        None => bail!("fused op: expected a contiguous tensor"),
    }
}

/// Mutable elements of a contiguous CPU storage view (for in-place ops).
pub fn cpu_slice_mut<'a, T: Real>(s: &'a mut CpuStorage, l: &Layout) -> Result<&'a mut [T]> {
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("fused op: expected a contiguous tensor")
    };
    match T::storage_mut(s) {
        Some(v) => Ok(&mut v[start..end]),
        None => bail!("fused op: dtype mismatch, expected {:?}", T::DTYPE),
    }
}

/// Runs `f` on the elements of a CPU tensor (made contiguous first when it is not).
pub fn with_slice<T: WithDType, R>(t: &Tensor, f: impl FnOnce(&[T]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(cpu_slice::<T>(s, layout)?),
        _ => bail!("fused op: expected a CPU tensor"),
    }
}

/// Rows of work below which a kernel stays on the calling thread (thread hand-off costs more).
pub const PAR_MIN_ELEMS: usize = 1 << 15;

/// Splits `n_rows` rows into chunks of at least `min_rows` for rayon, about 4 per thread.
pub fn rows_per_task(n_rows: usize, row_len: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    if n_rows * row_len < PAR_MIN_ELEMS || threads == 1 {
        return n_rows.max(1);
    }
    n_rows.div_ceil(threads * 4).max(1)
}

/// Threads for this process when `RAYON_NUM_THREADS` is unset: candle's count (the physical
/// cores), but no more than the CPUs this process may run on (an MPI launcher or `taskset` binds
/// it to some) and, when an MPI launcher put several ranks on this machine, no more than their
/// share of the cores, so unbound ranks do not each take every core.
fn default_threads() -> usize {
    let physical = candle_core::utils::get_num_threads().max(1);
    let allowed = std::thread::available_parallelism().map_or(physical, |n| n.get());
    let ranks_here = [
        "OMPI_COMM_WORLD_LOCAL_SIZE", // Open MPI
        "MPI_LOCALNRANKS",            // MPICH's hydra
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.parse::<usize>().ok())
    .unwrap_or(1)
    .max(1);
    physical.min(allowed).min((physical / ranks_here).max(1))
}

/// candle's element-wise thread pool spins 25,000 times before parking a worker after every op; on
/// a machine with few cores, or one shared with other work, that spinning takes the core from the
/// matrix-product threads (measured here on 2 loaded cores: a training step 1.7-2x slower). Lower it
/// unless the user chose a value. Call before any tensor op (it is read once, when candle's pool
/// starts), while the process has one thread.
pub fn configure_cpu_threads() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, "1000");
    }
    // Without RAYON_NUM_THREADS candle counts the physical cores again (reading /proc/cpuinfo) on
    // every matrix product: perf showed 15% of a generation run in the kernel formatting
    // /proc/cpuinfo. Count once and pin the answer (rayon reads the same variable).
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", default_threads().to_string());
    }
    if std::env::var("DOGE_CACHING_ALLOC").as_deref() == Ok("0") {
        crate::runtime::alloc::set_enabled(false);
    }
}
