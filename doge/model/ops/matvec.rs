//! Logits of a few positions (generation's last token): y = W·h for W [V, d] row-major, as one
//! streaming pass over W with a dot product per row.
//!
//! The general matrix product packs W (32 MB at Doge-20M) into blocks on every call, which for a
//! single row costs more than the product itself (perf: 42% of a generation run in gemm's packing).
//! No gradient: used only when nothing is tracked.

use candle_core::{bail, Device, Result, Tensor};
use rayon::prelude::*;

use super::{per_float, with_simd, with_slice, Real, SimdKernel};

/// Rows of W per task.
const ROWS_PER_TASK: usize = 512;

struct Dots<'a, T> {
    w: &'a [T],
    hs: &'a [T],
    d: usize,
    out: &'a mut [T],
}

impl<T: Real> SimdKernel for Dots<'_, T> {
    type Output = ();

    /// out[i * rows + r] = w_r · h_i for the rows r of this task and each position i.
    #[inline(always)]
    fn run(self) {
        const LANES: usize = 16;
        let (n, d) = (self.hs.len() / self.d, self.d);
        let task_rows = self.w.len() / d;
        for (r, wr) in self.w.chunks_exact(d).enumerate() {
            for i in 0..n {
                let h = &self.hs[i * d..(i + 1) * d];
                let mut acc = [T::zero(); LANES];
                let (wc, hc) = (wr.chunks_exact(LANES), h.chunks_exact(LANES));
                let tail: T = wc
                    .remainder()
                    .iter()
                    .zip(hc.remainder())
                    .fold(T::zero(), |a, (&x, &y)| a + x * y);
                for (x, y) in wc.zip(hc) {
                    for l in 0..LANES {
                        acc[l] += x[l] * y[l];
                    }
                }
                self.out[i * task_rows + r] = acc.iter().fold(tail, |a, &v| a + v);
            }
        }
    }
}

fn run<T: Real>(w: &[T], hs: &[T], d: usize, v: usize) -> Vec<T> {
    let n = hs.len() / d;
    // Per task: its rows' dots for every position, position-major; scattered after.
    let parts: Vec<Vec<T>> = w
        .par_chunks(ROWS_PER_TASK * d)
        .map(|wc| {
            let rows = wc.len() / d;
            let mut out = vec![T::zero(); n * rows];
            with_simd(Dots {
                w: wc,
                hs,
                d,
                out: &mut out,
            });
            out
        })
        .collect();
    let mut y = vec![T::zero(); n * v];
    for (t, part) in parts.iter().enumerate() {
        let rows = part.len() / n;
        for i in 0..n {
            let dst = &mut y[i * v + t * ROWS_PER_TASK..][..rows];
            dst.copy_from_slice(&part[i * rows..(i + 1) * rows]);
        }
    }
    y
}

/// h [N, d] (N small) times weight [V, d] transposed: [N, V]. CPU, f32/f64, no gradient.
pub fn linear_rows(h: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (n, d) = h.dims2()?;
    let (v, d2) = weight.dims2()?;
    if d != d2 {
        bail!("matvec: hidden [{n}, {d}] vs weight [{v}, {d2}]");
    }
    per_float!(h.dtype(), "matvec", T => {
        let y = with_slice::<T, _>(weight, |w| with_slice::<T, _>(h, |hs| Ok(run(w, hs, d, v))))?;
        Tensor::from_vec(y, (n, v), &Device::Cpu)
    })
}

/// The composed reference.
pub fn reference(h: &Tensor, weight: &Tensor) -> Result<Tensor> {
    h.matmul(&weight.t()?)
}
