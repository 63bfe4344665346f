//! RMSNorm, y = w * x / sqrt(mean(x²) + eps) over the last dim, as one pass each way.
//!
//! Composed, the forward is six ops with five intermediate tensors, and the backward twice that.
//! Backward: with r = 1/rms, dx = r·(g∘w) − x·r³·mean(g∘w∘x) and dw = Σ_rows g∘x·r.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{
    cpu_slice, cpu_tensor_like, per_float, per_float_storage, rows_per_task, sum_partials,
    with_slice, Real,
};

struct RmsNorm {
    eps: f64,
}

fn inv_rms<T: Real>(row: &[T], eps: T) -> T {
    let sq = row.iter().fold(T::zero(), |a, &x| a + x * x);
    T::one() / (sq / T::from_f64(row.len() as f64) + eps).sqrt()
}

fn forward<T: Real>(x: &[T], w: &[T], eps: f64) -> Vec<T> {
    let dim = w.len();
    let eps = T::from_f64(eps);
    let mut y = vec![T::zero(); x.len()];
    let per = rows_per_task(x.len() / dim, dim) * dim;
    y.par_chunks_mut(per)
        .zip(x.par_chunks(per))
        .for_each(|(y, x)| {
            for (y, x) in y.chunks_exact_mut(dim).zip(x.chunks_exact(dim)) {
                let r = inv_rms(x, eps);
                for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                    *y = x * r * w;
                }
            }
        });
    y
}

/// (dx, dw) for upstream gradient g.
fn backward<T: Real>(x: &[T], w: &[T], g: &[T], eps: f64) -> (Vec<T>, Vec<T>) {
    let dim = w.len();
    let eps = T::from_f64(eps);
    let inv_dim = T::from_f64(1.0 / dim as f64);
    let mut dx = vec![T::zero(); x.len()];
    let per = rows_per_task(x.len() / dim, dim) * dim;
    let partial_dw: Vec<Vec<T>> = dx
        .par_chunks_mut(per)
        .zip(x.par_chunks(per))
        .zip(g.par_chunks(per))
        .map(|((dx, x), g)| {
            let mut dw = vec![T::zero(); dim];
            for ((dx, x), g) in dx
                .chunks_exact_mut(dim)
                .zip(x.chunks_exact(dim))
                .zip(g.chunks_exact(dim))
            {
                let r = inv_rms(x, eps);
                let mut dot = T::zero();
                for i in 0..dim {
                    dot += g[i] * w[i] * x[i];
                    dw[i] += g[i] * x[i] * r;
                }
                let c = r * r * r * dot * inv_dim;
                for i in 0..dim {
                    dx[i] = r * g[i] * w[i] - x[i] * c;
                }
            }
            dw
        })
        .collect();
    (dx, sum_partials(&partial_dw, dim))
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dim = l2.shape().elem_count();
        if l1.shape().dims().last() != Some(&dim) {
            bail!("rms_norm: input {:?} vs weight of {dim}", l1.shape());
        }
        let y = per_float_storage!(s1, "rms_norm", T => forward::<T>(
            cpu_slice(s1, l1)?,
            cpu_slice(s2, l2)?,
            self.eps,
        ));
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        fn run<T: Real>(x: &Tensor, w: &Tensor, g: &Tensor, eps: f64) -> Result<(Tensor, Tensor)> {
            let (dx, dw) = with_slice::<T, _>(x, |x| {
                with_slice::<T, _>(w, |w| with_slice::<T, _>(g, |g| Ok(backward(x, w, g, eps))))
            })?;
            Ok((cpu_tensor_like(dx, x)?, cpu_tensor_like(dw, w)?))
        }
        let (dx, dw) = per_float!(x.dtype(), "rms_norm", T => run::<T>(x, w, g, self.eps)?);
        Ok((Some(dx), Some(dw)))
    }
}

/// Fused RMSNorm of `x` [..., D] with weight [D] (CPU, f32/f64).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNorm { eps })
}

/// The composed reference.
pub fn reference(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let inv_rms = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv_rms)?.broadcast_mul(weight)
}
