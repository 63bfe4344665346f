//! AdamW's update as three in-place passes per tensor (first moment, second moment, weights)
//! instead of about a dozen allocating element-wise ops, and the global gradient norm without a
//! squared copy of every gradient. Same arithmetic, in the same order, as the composed update in
//! `train::optimizer` (which is also the reference the tests compare with).

use candle_core::{bail, CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor};
use rayon::prelude::*;

use super::{cpu_slice, cpu_slice_mut, per_float, with_slice, Real, PAR_MIN_ELEMS};

/// The scalars of one AdamW update of one tensor.
#[derive(Debug, Clone, Copy)]
pub struct AdamWScalars {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Multiplies the gradient first (gradient clipping).
    pub grad_scale: f64,
    /// `1 - lr * weight_decay`, or None without decay.
    pub decay: Option<f64>,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f64,
    /// `sqrt(1 - beta2^t)`.
    pub bias_correction2_sqrt: f64,
}

const CHUNK: usize = 1 << 14;

/// dst op= f(dst, src) element-wise, in parallel for large tensors.
fn zip_apply<T: Real>(dst: &mut [T], src: &[T], f: impl Fn(&mut T, T) + Sync) {
    if dst.len() < PAR_MIN_ELEMS {
        dst.iter_mut().zip(src).for_each(|(d, &s)| f(d, s));
    } else {
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &s)| f(d, s)));
    }
}

/// m = beta * m + (1 - beta) * (scale * g), or with (scale * g)² for the second moment.
struct Moment {
    beta: f64,
    grad_scale: f64,
    squared: bool,
}

impl Moment {
    fn run<T: Real>(&self, m: &mut [T], g: &[T]) {
        let (scale, beta, one_minus) = (
            T::from_f64(self.grad_scale),
            T::from_f64(self.beta),
            T::from_f64(1.0 - self.beta),
        );
        if self.squared {
            zip_apply(m, g, |m, g| {
                let g = g * scale;
                *m = *m * beta + (g * g) * one_minus;
            });
        } else {
            zip_apply(m, g, |m, g| *m = *m * beta + (g * scale) * one_minus);
        }
    }
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "fused-adamw-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        if l1.shape() != l2.shape() {
            bail!(
                "adamw: moment {:?} vs gradient {:?}",
                l1.shape(),
                l2.shape()
            );
        }
        match s2 {
            CpuStorage::F32(_) => self.run::<f32>(cpu_slice_mut(s1, l1)?, cpu_slice(s2, l2)?),
            CpuStorage::F64(_) => self.run::<f64>(cpu_slice_mut(s1, l1)?, cpu_slice(s2, l2)?),
            _ => bail!("adamw: f32 or f64 expected"),
        }
        Ok(())
    }
}

/// theta = theta * decay - (m / (sqrt(v) / bc2 + eps)) * step_size.
struct Update(AdamWScalars);

impl Update {
    fn run<T: Real>(&self, theta: &mut [T], m: &[T], v: &[T]) {
        let s = self.0;
        let decay = s.decay.map(T::from_f64);
        let inv_bc2 = T::from_f64(1.0 / s.bias_correction2_sqrt);
        let (eps, step) = (T::from_f64(s.eps), T::from_f64(s.step_size));
        let one = |t: &mut [T], m: &[T], v: &[T]| {
            for ((t, &m), &v) in t.iter_mut().zip(m).zip(v) {
                let decayed = match decay {
                    Some(d) => *t * d,
                    None => *t,
                };
                let denom = v.sqrt() * inv_bc2 + eps;
                *t = decayed - (m / denom) * step;
            }
        };
        if theta.len() < PAR_MIN_ELEMS {
            one(theta, m, v);
        } else {
            theta
                .par_chunks_mut(CHUNK)
                .zip(m.par_chunks(CHUNK))
                .zip(v.par_chunks(CHUNK))
                .for_each(|((t, m), v)| one(t, m, v));
        }
    }
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "fused-adamw-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        if l1.shape() != l2.shape() || l1.shape() != l3.shape() {
            bail!("adamw: weight {:?} vs moments {:?}", l1.shape(), l2.shape());
        }
        match s2 {
            CpuStorage::F32(_) => self.run::<f32>(
                cpu_slice_mut(s1, l1)?,
                cpu_slice(s2, l2)?,
                cpu_slice(s3, l3)?,
            ),
            CpuStorage::F64(_) => self.run::<f64>(
                cpu_slice_mut(s1, l1)?,
                cpu_slice(s2, l2)?,
                cpu_slice(s3, l3)?,
            ),
            _ => bail!("adamw: f32 or f64 expected"),
        }
        Ok(())
    }
}

/// One AdamW update of `theta` (in place) with moments `m`, `v` (in place, each its own storage).
pub fn adamw_update(
    theta: &Tensor,
    m: &Tensor,
    v: &Tensor,
    grad: &Tensor,
    s: AdamWScalars,
) -> Result<()> {
    let grad = grad.contiguous()?;
    m.inplace_op2(
        &grad,
        &Moment {
            beta: s.beta1,
            grad_scale: s.grad_scale,
            squared: false,
        },
    )?;
    v.inplace_op2(
        &grad,
        &Moment {
            beta: s.beta2,
            grad_scale: s.grad_scale,
            squared: true,
        },
    )?;
    theta.inplace_op3(m, v, &Update(s))
}

/// Sum of squares of one gradient, accumulated in f64, without a squared copy.
pub fn sum_of_squares(g: &Tensor) -> Result<f64> {
    // Chunk sums are collected in order and added sequentially, so the result does not depend on
    // how rayon splits the work (resumed runs must be bitwise identical).
    fn sum<T: Real>(x: &[T]) -> f64 {
        let parts: Vec<f64> = x
            .par_chunks(CHUNK)
            .map(|c| c.iter().map(|&x| x.to_f64() * x.to_f64()).sum::<f64>())
            .collect();
        parts.iter().sum()
    }
    per_float!(g.dtype(), "sum_of_squares", T => with_slice::<T, _>(g, |x| Ok(sum(x))))
}
