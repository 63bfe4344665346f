//! SwiGLU's gate, silu(a)·b, as one pass each way (composed: silu, then a product, and in the
//! backward the silu derivative from four more ops). With σ = sigmoid(a):
//! d a = g·b·σ·(1 + a·(1 − σ)), d b = g·a·σ.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{
    cpu_slice, cpu_tensor_like, per_float, per_float_storage, with_slice, Real, PAR_MIN_ELEMS,
};

const CHUNK: usize = 1 << 13;

struct SwiGlu;

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).fast_exp())
}

fn forward<T: Real>(a: &[T], b: &[T]) -> Vec<T> {
    let mut y = vec![T::zero(); a.len()];
    let one = |y: &mut [T], a: &[T], b: &[T]| {
        for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
            *y = a * sigmoid(a) * b;
        }
    };
    if a.len() < PAR_MIN_ELEMS {
        one(&mut y, a, b);
    } else {
        y.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((y, a), b)| one(y, a, b));
    }
    y
}

fn backward<T: Real>(a: &[T], b: &[T], g: &[T]) -> (Vec<T>, Vec<T>) {
    let mut da = vec![T::zero(); a.len()];
    let mut db = vec![T::zero(); a.len()];
    let one = |da: &mut [T], db: &mut [T], a: &[T], b: &[T], g: &[T]| {
        for i in 0..a.len() {
            let s = sigmoid(a[i]);
            da[i] = g[i] * b[i] * s * (T::one() + a[i] * (T::one() - s));
            db[i] = g[i] * a[i] * s;
        }
    };
    if a.len() < PAR_MIN_ELEMS {
        one(&mut da, &mut db, a, b, g);
    } else {
        da.par_chunks_mut(CHUNK)
            .zip(db.par_chunks_mut(CHUNK))
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|((((da, db), a), b), g)| one(da, db, a, b, g));
    }
    (da, db)
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            bail!("swiglu: gate {:?} vs up {:?}", l1.shape(), l2.shape());
        }
        let y = per_float_storage!(s1, "swiglu", T => {
            forward::<T>(cpu_slice(s1, l1)?, cpu_slice(s2, l2)?)
        });
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        fn run<T: Real>(a: &Tensor, b: &Tensor, g: &Tensor) -> Result<(Tensor, Tensor)> {
            let (da, db) = with_slice::<T, _>(a, |a| {
                with_slice::<T, _>(b, |b| with_slice::<T, _>(g, |g| Ok(backward(a, b, g))))
            })?;
            Ok((cpu_tensor_like(da, a)?, cpu_tensor_like(db, b)?))
        }
        let (da, db) = per_float!(a.dtype(), "swiglu", T => run::<T>(a, b, g)?);
        Ok((Some(da), Some(db)))
    }
}

/// Fused silu(gate) · up (CPU, f32/f64).
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

/// The composed reference.
pub fn reference(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.silu()? * up
}
