//! Doge's learned residual, y = h·r + x with r [D] scaling every row of h, as one pass (composed: a
//! broadcast product and a sum, and in the backward a broadcast product and a row reduction).
//! Backward: d h = g·r, d r = Σ_rows g∘h, d x = g.

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{
    cpu_slice, cpu_tensor_like, per_float, per_float_storage, rows_per_task, sum_partials,
    with_slice, Real,
};

struct ScaledResidual;

fn forward<T: Real>(h: &[T], r: &[T], x: &[T]) -> Vec<T> {
    let dim = r.len();
    let mut y = vec![T::zero(); h.len()];
    let per = rows_per_task(h.len() / dim, dim) * dim;
    y.par_chunks_mut(per)
        .zip(h.par_chunks(per).zip(x.par_chunks(per)))
        .for_each(|(y, (h, x))| {
            for ((y, h), x) in y
                .chunks_exact_mut(dim)
                .zip(h.chunks_exact(dim))
                .zip(x.chunks_exact(dim))
            {
                for i in 0..dim {
                    y[i] = h[i] * r[i] + x[i];
                }
            }
        });
    y
}

/// (d h, d r).
fn backward<T: Real>(h: &[T], r: &[T], g: &[T]) -> (Vec<T>, Vec<T>) {
    let dim = r.len();
    let mut dh = vec![T::zero(); h.len()];
    let per = rows_per_task(h.len() / dim, dim) * dim;
    let partial: Vec<Vec<T>> = dh
        .par_chunks_mut(per)
        .zip(h.par_chunks(per).zip(g.par_chunks(per)))
        .map(|(dh, (h, g))| {
            let mut dr = vec![T::zero(); dim];
            for ((dh, h), g) in dh
                .chunks_exact_mut(dim)
                .zip(h.chunks_exact(dim))
                .zip(g.chunks_exact(dim))
            {
                for i in 0..dim {
                    dh[i] = g[i] * r[i];
                    dr[i] += g[i] * h[i];
                }
            }
            dr
        })
        .collect();
    (dh, sum_partials(&partial, dim))
}

impl CustomOp3 for ScaledResidual {
    fn name(&self) -> &'static str {
        "fused-scaled-residual"
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
        let dim = l2.shape().elem_count();
        if l1.shape() != l3.shape() || l1.shape().dims().last() != Some(&dim) {
            bail!(
                "residual: h {:?}, r {:?}, x {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let y = per_float_storage!(s1, "residual", T => forward::<T>(
            cpu_slice(s1, l1)?,
            cpu_slice(s2, l2)?,
            cpu_slice(s3, l3)?,
        ));
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        h: &Tensor,
        r: &Tensor,
        _x: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        fn run<T: Real>(h: &Tensor, r: &Tensor, g: &Tensor) -> Result<(Tensor, Tensor)> {
            let (dh, dr) = with_slice::<T, _>(h, |h| {
                with_slice::<T, _>(r, |r| with_slice::<T, _>(g, |g| Ok(backward(h, r, g))))
            })?;
            Ok((cpu_tensor_like(dh, h)?, cpu_tensor_like(dr, r)?))
        }
        let (dh, dr) = per_float!(h.dtype(), "residual", T => run::<T>(h, r, g)?);
        Ok((Some(dh), Some(dr), Some(g.clone())))
    }
}

/// Fused h·r + x for h, x [..., D] and r [D] (CPU, f32/f64).
pub fn scaled_residual(h: &Tensor, r: &Tensor, x: &Tensor) -> Result<Tensor> {
    h.contiguous()?
        .apply_op3(&r.contiguous()?, &x.contiguous()?, ScaledResidual)
}

/// The composed reference.
pub fn reference(h: &Tensor, r: &Tensor, x: &Tensor) -> Result<Tensor> {
    h.broadcast_mul(r)? + x
}
