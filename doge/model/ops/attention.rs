//! Dynamic Mask Attention's probabilities in one pass: softmax(scores·scale + bias) over the keys a
//! query keeps, zero elsewhere.
//!
//! Composed, this is a `where` building a [B, Hkv, L, Lk] mask from the bias, a scale, a broadcast
//! add over the query-head groups and a five-op softmax, each materialised (and as many tensors
//! again in the backward). Here the keep mask is read where it lies and dropped keys are skipped
//! (the composed path gives them exactly zero probability too: their logit is f32::MIN).
//! Backward, with z = p∘(g − Σ_k g·p): d scores = scale·z and d bias[key] = Σ over rows of z.

use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{cpu_slice, cpu_tensor_like, per_float, per_float_storage, with_slice, Real};

/// Shapes of one call: scores and probabilities are [b, kv, rows, lk] where rows = groups·l (query
/// head groups folded into the rows, query position = row % l); bias is [b, kv, lk]; keep is
/// [kb, kk, l, lk] with kb ∈ {1, b}, kk ∈ {1, kv}.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    kv: usize,
    rows: usize,
    lk: usize,
    l: usize,
    kb: usize,
    kk: usize,
}

impl Dims {
    fn keep_row(&self, bh: usize, row: usize) -> usize {
        let (bi, hi) = (bh / self.kv, bh % self.kv);
        let k = (if self.kb == 1 { 0 } else { bi }) * self.kk + if self.kk == 1 { 0 } else { hi };
        (k * self.l + row % self.l) * self.lk
    }
}

struct MaskedSoftmax {
    scale: f64,
    l: usize,
}

fn forward<T: Real>(scores: &[T], bias: &[T], keep: &[u8], d: Dims, scale: f64) -> Vec<T> {
    let scale = T::from_f64(scale);
    let mut p = vec![T::zero(); scores.len()];
    let block = d.rows * d.lk;
    p.par_chunks_mut(block)
        .zip(scores.par_chunks(block))
        .enumerate()
        .for_each(|(bh, (p, s))| {
            let bias = &bias[bh * d.lk..(bh + 1) * d.lk];
            for (row, (p, s)) in p
                .chunks_exact_mut(d.lk)
                .zip(s.chunks_exact(d.lk))
                .enumerate()
            {
                let keep = &keep[d.keep_row(bh, row)..][..d.lk];
                let mut max = T::NEG_INFINITY;
                for j in 0..d.lk {
                    if keep[j] != 0 {
                        let z = s[j] * scale + bias[j];
                        p[j] = z;
                        max = max.maximum(z);
                    }
                }
                let mut sum = T::zero();
                for j in 0..d.lk {
                    if keep[j] != 0 {
                        let e = (p[j] - max).fast_exp();
                        p[j] = e;
                        sum += e;
                    }
                }
                let inv = T::one() / sum;
                for j in 0..d.lk {
                    if keep[j] != 0 {
                        p[j] *= inv;
                    }
                }
            }
        });
    p
}

/// (d scores, d bias).
fn backward<T: Real>(p: &[T], g: &[T], d: Dims, scale: f64) -> (Vec<T>, Vec<T>) {
    let scale = T::from_f64(scale);
    let block = d.rows * d.lk;
    let mut ds = vec![T::zero(); p.len()];
    let mut db = vec![T::zero(); d.b * d.kv * d.lk];
    ds.par_chunks_mut(block)
        .zip(db.par_chunks_mut(d.lk))
        .zip(p.par_chunks(block).zip(g.par_chunks(block)))
        .for_each(|((ds, db), (p, g))| {
            for ((ds, p), g) in ds
                .chunks_exact_mut(d.lk)
                .zip(p.chunks_exact(d.lk))
                .zip(g.chunks_exact(d.lk))
            {
                let dot = p.iter().zip(g).fold(T::zero(), |a, (&p, &g)| a + p * g);
                for j in 0..d.lk {
                    let z = p[j] * (g[j] - dot);
                    db[j] += z;
                    ds[j] = z * scale;
                }
            }
        });
    (ds, db)
}

impl CustomOp3 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "fused-dma-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, kv, rows, lk) = l1.shape().dims4()?;
        let (kb, kk, l, lk2) = l3.shape().dims4()?;
        if l2.shape().dims() != [b, kv, lk]
            || lk2 != lk
            || rows % l != 0
            || !(kb == 1 || kb == b)
            || !(kk == 1 || kk == kv)
            || l != self.l
        {
            bail!(
                "dma softmax: scores {:?}, bias {:?}, keep {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let d = Dims {
            b,
            kv,
            rows,
            lk,
            l,
            kb,
            kk,
        };
        let keep: &[u8] = cpu_slice(s3, l3)?;
        let p = per_float_storage!(s1, "dma softmax", T => forward::<T>(
            cpu_slice(s1, l1)?,
            cpu_slice(s2, l2)?,
            keep,
            d,
            self.scale,
        ));
        Ok((p, l1.shape().clone()))
    }

    fn bwd(
        &self,
        scores: &Tensor,
        bias: &Tensor,
        keep: &Tensor,
        p: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, kv, rows, lk) = scores.dims4()?;
        let (kb, kk, l, _) = keep.dims4()?;
        let d = Dims {
            b,
            kv,
            rows,
            lk,
            l,
            kb,
            kk,
        };
        fn run<T: Real>(p: &Tensor, g: &Tensor, d: Dims, scale: f64) -> Result<(Vec<T>, Vec<T>)> {
            with_slice::<T, _>(p, |p| {
                with_slice::<T, _>(g, |g| Ok(backward(p, g, d, scale)))
            })
        }
        let (ds, db) = per_float!(scores.dtype(), "dma softmax", T => {
            let (ds, db) = run::<T>(p, g, d, self.scale)?;
            (cpu_tensor_like(ds, scores)?, cpu_tensor_like(db, bias)?)
        });
        Ok((Some(ds), Some(db), None))
    }
}

/// Probabilities [B, Hkv, G·L, Lk] from raw scores q·kᵀ of the same shape, the dynamic bias
/// [B, Hkv, Lk] and the u8 keep mask [1 or B, 1 or Hkv, L, Lk] (CPU, f32/f64).
pub fn masked_softmax(scores: &Tensor, bias: &Tensor, keep: &Tensor, scale: f64) -> Result<Tensor> {
    let l = keep.dim(2)?;
    scores.contiguous()?.apply_op3(
        &bias.contiguous()?,
        &keep.to_dtype(DType::U8)?.contiguous()?,
        MaskedSoftmax { scale, l },
    )
}

/// The composed reference (the model's composed path): a mask of bias or f32::MIN, added to the
/// scaled scores of every query-head group, then softmax.
pub fn reference(scores: &Tensor, bias: &Tensor, keep: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, kv, rows, lk) = scores.dims4()?;
    let l = keep.dim(2)?;
    let shape = (b, kv, l, lk);
    let keep = keep.broadcast_as(shape)?;
    let min = Tensor::new(f32::MIN as f64, scores.device())?
        .to_dtype(scores.dtype())?
        .broadcast_as(shape)?;
    let mask = keep.where_cond(&bias.unsqueeze(2)?.broadcast_as(shape)?, &min)?;
    let scores = (scores * scale)?.reshape((b, kv, rows / l, l, lk))?;
    let z = scores.broadcast_add(&mask.unsqueeze(2)?)?;
    let shifted = z.broadcast_sub(&z.max_keepdim(D::Minus1)?.detach())?;
    let e = shifted.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?
        .reshape((b, kv, rows, lk))
}
