//! Rotary embedding in the rotate-half layout, y = x·cos + rotate_half(x)·sin, as one pass.
//!
//! Composed it is two narrows, a negation, a concatenation and three broadcast ops. The backward is
//! the transposed rotation: dx[j] = g[j]·cos[j] + g[j+h]·sin[j+h] for the first half (h = half the
//! head dim) and g[j]·cos[j] − g[j−h]·sin[j−h] for the second.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{cpu_slice, per_float_storage, rows_per_task, with_slice, Real};

struct Rotary {
    cos: Tensor,
    sin: Tensor,
    /// The backward's transposed rotation instead of the rotation.
    transposed: bool,
}

fn rotate<T: Real>(
    x: &[T],
    cos: &[T],
    sin: &[T],
    len: usize,
    hd: usize,
    transposed: bool,
) -> Vec<T> {
    let h = hd / 2;
    let mut y = vec![T::zero(); x.len()];
    let per = rows_per_task(x.len() / hd, hd) * hd;
    y.par_chunks_mut(per)
        .zip(x.par_chunks(per))
        .enumerate()
        .for_each(|(chunk, (y, x))| {
            let first_row = chunk * per / hd;
            for (r, (y, x)) in y.chunks_exact_mut(hd).zip(x.chunks_exact(hd)).enumerate() {
                let pos = (first_row + r) % len;
                let (c, s) = (
                    &cos[pos * hd..(pos + 1) * hd],
                    &sin[pos * hd..(pos + 1) * hd],
                );
                for j in 0..h {
                    if transposed {
                        y[j] = x[j] * c[j] + x[j + h] * s[j + h];
                        y[j + h] = x[j + h] * c[j + h] - x[j] * s[j];
                    } else {
                        y[j] = x[j] * c[j] - x[j + h] * s[j];
                        y[j + h] = x[j + h] * c[j + h] + x[j] * s[j + h];
                    }
                }
            }
        });
    y
}

impl CustomOp1 for Rotary {
    fn name(&self) -> &'static str {
        "fused-rotary"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l.shape().dims();
        let (len, hd) = self.cos.dims2()?;
        if dims.len() < 2
            || dims[dims.len() - 1] != hd
            || dims[dims.len() - 2] != len
            || hd % 2 != 0
        {
            bail!("rotary: input {:?} vs tables [{len}, {hd}]", l.shape());
        }
        let t = self.transposed;
        let y = per_float_storage!(s, "rotary", T => with_slice::<T, _>(&self.cos, |c| {
            with_slice::<T, _>(&self.sin, |sn| Ok(rotate(cpu_slice(s, l)?, c, sn, len, hd, t)))
        })?);
        Ok((y, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let back = Rotary {
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            transposed: !self.transposed,
        };
        Ok(Some(g.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

/// Fused rotary of `x` [..., L, hd] with tables cos, sin [L, hd] (CPU, f32/f64, tables detached).
pub fn rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Rotary {
        cos: cos.detach().to_dtype(x.dtype())?,
        sin: sin.detach().to_dtype(x.dtype())?,
        transposed: false,
    })
}

/// The composed reference.
pub fn reference(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}
