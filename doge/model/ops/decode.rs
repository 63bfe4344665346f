//! Dynamic Mask Attention for a few query rows without gradient (a generation step): per row, the
//! scores q·k_j·scale + bias_j over the keys it keeps, their softmax, and Σ_j p_j v_j, in one pass.
//!
//! At one query row the two attention matrix products are a few hundred thousand FLOPs, and the
//! general matrix product's packing and thread hand-off cost more than that (perf of `doge bench
//! generate`: a third of the run in gemm for these products). Dropped keys are skipped, as the
//! composed path gives them exactly zero probability.

use candle_core::{bail, DType, Device, Result, Tensor};
use rayon::prelude::*;

use super::{per_float, with_simd, with_slice, Real, SimdKernel, PAR_MIN_ELEMS};

/// Query rows (over all heads of a batch row) up to which the model takes this path.
pub const MAX_ROWS: usize = 16;

const LANES: usize = 16;

#[derive(Clone, Copy)]
struct Dims {
    kv: usize,
    rows: usize,
    lk: usize,
    hd: usize,
    l: usize,
    kb: usize,
    kk: usize,
    /// Bias rows per kv head: 1 (shared by the group) or rows / l (one per query head).
    bias_groups: usize,
    /// Keep-mask rows of l per kv head: 1, or rows / l when the mask is per query head.
    keep_groups: usize,
}

/// One kv head of one batch row: its query rows against its keys and values.
struct Head<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    bias: &'a [T],
    keep: &'a [u8],
    out: &'a mut [T],
    scale: T,
    d: Dims,
}

#[inline(always)]
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .fold(T::zero(), |s, (&x, &y)| s + x * y);
    for (x, y) in ac.zip(bc) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().fold(tail, |s, &x| s + x)
}

impl<T: Real> SimdKernel for Head<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Dims { lk, hd, l, .. } = self.d;
        let mut p = vec![T::zero(); lk];
        for (row, out) in self.out.chunks_exact_mut(hd).enumerate() {
            let q = &self.q[row * hd..(row + 1) * hd];
            // Query row `row` is position row % l of query head row / l within the group.
            let group = row / l;
            let keep_row = if self.d.keep_groups == 1 { 0 } else { group } * l + row % l;
            let keep = &self.keep[keep_row * lk..][..lk];
            let bias_row = if self.d.bias_groups == 1 { 0 } else { group };
            let bias = &self.bias[bias_row * lk..][..lk];
            let mut max = T::NEG_INFINITY;
            for j in 0..lk {
                if keep[j] != 0 {
                    let z = dot(q, &self.k[j * hd..(j + 1) * hd]) * self.scale + bias[j];
                    p[j] = z;
                    max = max.maximum(z);
                }
            }
            let mut sum = T::zero();
            for j in 0..lk {
                if keep[j] != 0 {
                    let e = (p[j] - max).fast_exp();
                    p[j] = e;
                    sum += e;
                }
            }
            let inv = T::one() / sum;
            out.iter_mut().for_each(|o| *o = T::zero());
            for j in 0..lk {
                if keep[j] != 0 {
                    let w = p[j] * inv;
                    for (o, &x) in out.iter_mut().zip(&self.v[j * hd..(j + 1) * hd]) {
                        *o += w * x;
                    }
                }
            }
        }
    }
}

fn run<T: Real>(q: &[T], k: &[T], v: &[T], bias: &[T], keep: &[u8], d: Dims, scale: f64) -> Vec<T> {
    let (qh, kvh) = (d.rows * d.hd, d.lk * d.hd);
    let mut out = vec![T::zero(); q.len()];
    let (bias_len, keep_len) = (d.bias_groups * d.lk, d.keep_groups * d.l * d.lk);
    let head = |bh: usize, out: &mut [T]| {
        let (bi, hi) = (bh / d.kv, bh % d.kv);
        // The keep mask's heads, counted in kv heads: 1 (shared) or kv.
        let kk = d.kk / d.keep_groups;
        let kh = (if d.kb == 1 { 0 } else { bi }) * kk + if kk == 1 { 0 } else { hi };
        with_simd(Head {
            q: &q[bh * qh..(bh + 1) * qh],
            k: &k[bh * kvh..(bh + 1) * kvh],
            v: &v[bh * kvh..(bh + 1) * kvh],
            bias: &bias[bh * bias_len..(bh + 1) * bias_len],
            keep: &keep[kh * keep_len..(kh + 1) * keep_len],
            out,
            scale: T::from_f64(scale),
            d,
        })
    };
    // One thread for a single decode step: handing a few microseconds of work to another costs more.
    if q.len() / d.hd * kvh < PAR_MIN_ELEMS * 8 {
        out.chunks_exact_mut(qh)
            .enumerate()
            .for_each(|(bh, o)| head(bh, o));
    } else {
        out.par_chunks_exact_mut(qh)
            .enumerate()
            .for_each(|(bh, o)| head(bh, o));
    }
    out
}

/// q [b, kv, rows, hd] (rows = G query heads × l, position = row % l), k and v [b, kv, lk, hd],
/// bias [b, nb, lk] with nb ∈ {kv, kv·G} (shared by a kv group, or one per query head),
/// keep u8 [kb, kk, l, lk] with kb ∈ {1, b}, kk ∈ {1, nb}: the attention output [b, kv, rows, hd].
/// CPU, f32/f64, no gradient.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    keep: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let (b, kv, rows, hd) = q.dims4()?;
    let (_, _, lk, _) = k.dims4()?;
    let (kb, kk, l, _) = keep.dims4()?;
    let (_, nb, _) = bias.dims3()?;
    let groups = rows / l.max(1);
    if k.dims() != [b, kv, lk, hd]
        || v.dims() != [b, kv, lk, hd]
        || bias.dims() != [b, nb, lk]
        || !(nb == kv || nb == kv * groups)
        || rows != groups * l
    {
        bail!(
            "decode attention: q {:?}, k {:?}, v {:?}, bias {:?} do not match",
            q.dims(),
            k.dims(),
            v.dims(),
            bias.dims()
        );
    }
    if keep.dims() != [kb, kk, l, lk] || !(kb == 1 || kb == b) || !(kk == 1 || kk == nb) {
        bail!("decode attention: keep mask {:?}", keep.dims());
    }
    let d = Dims {
        kv,
        rows,
        lk,
        hd,
        l,
        kb,
        kk,
        bias_groups: nb / kv,
        keep_groups: if kk == 1 { 1 } else { kk / kv },
    };
    let keep = keep.to_dtype(DType::U8)?;
    fn go<T: Real>(ts: [&Tensor; 4], keep: &Tensor, d: Dims, scale: f64) -> Result<Vec<T>> {
        with_slice::<T, _>(ts[0], |q| {
            with_slice::<T, _>(ts[1], |k| {
                with_slice::<T, _>(ts[2], |v| {
                    with_slice::<T, _>(ts[3], |bias| {
                        with_slice::<u8, _>(keep, |keep| Ok(run(q, k, v, bias, keep, d, scale)))
                    })
                })
            })
        })
    }
    per_float!(q.dtype(), "decode attention", T => {
        Tensor::from_vec(go::<T>([q, k, v, bias], &keep, d, scale)?, (b, kv, rows, hd), &Device::Cpu)
    })
}

/// The composed reference: masked softmax of the scaled scores plus bias, times the values.
pub fn reference(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    keep: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let (b, kv, rows, lk) = q.matmul(&k.t()?)?.dims4()?;
    let nb = bias.dim(1)?;
    let scores = q.matmul(&k.t()?)?.reshape((b, nb, rows * kv / nb, lk))?;
    let p = super::attention::reference(&scores, bias, keep, scale)?;
    p.reshape((b, kv, rows, lk))?.matmul(v)
}
