//! lm_head + cross-entropy in one op: mean over rows of `logsumexp(h W^T) - (h W^T)[target]`.
//!
//! The composed path materialises the [N, V] logits, then shifted logits, their exp, the
//! log-softmax and, in the backward, as many [N, V] gradients (each 128 MB at the Doge-20M training
//! shape). Here the logits exist only one block of rows at a time, and when a gradient is wanted it
//! is computed in the same pass (softmax minus one-hot, times the block's hidden states and the
//! weight), since the loss is a scalar and its backward only scales that gradient. The matrix
//! products are the same three as the composed path's, so no work is repeated.

use std::sync::Mutex;

use candle_core::{bail, CpuStorage, CustomOp2, DType, Device, Layout, Result, Shape, Tensor, D};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::{
    cpu_slice, exp_shifted_in_place, exp_shifted_sum, max_of, with_simd, Real, SimdKernel,
};

/// Label value that carries no loss (transformers' ignore index).
pub const IGNORE: i64 = -100;

/// Elements of one block of logits (32 MB in f32): big enough that the matrix products stay
/// efficient, small enough to stay near the cache.
const BLOCK_ELEMS: usize = 8 << 20;

pub fn parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

struct LinearCrossEntropy {
    /// One target per row of the hidden states; negative = ignored.
    targets: Vec<i64>,
    with_grad: bool,
    /// Rows of logits per block (None: as many as fit in [`BLOCK_ELEMS`]).
    block_rows: Option<usize>,
    /// d loss / d hidden and d loss / d weight for an upstream gradient of 1, from the forward.
    grads: Mutex<Option<(Tensor, Tensor)>>,
}

impl LinearCrossEntropy {
    /// The loss; with `with_grad`, the gradients too. Per block of rows, with E = e^(logits − max)
    /// (E[target] − Σ E in the target's place) and c = 1 / (count · Σ E) per row, the gradient of
    /// the logits is c·E, so d hidden = c ⊙ (E W) and d Wᵀ += (c ⊙ h)ᵀ E: the row scale is
    /// applied to the [m, d] sides instead of to the [m, V] block, one pass over it fewer.
    fn run<T: Real>(&self, h: &[T], w: &[T], n: usize, d: usize, v: usize) -> Result<T> {
        let count = self.targets.iter().filter(|&&t| t >= 0).count();
        if let Some(&bad) = self.targets.iter().find(|&&t| t >= v as i64) {
            bail!("cross-entropy: target {bad} is outside the vocabulary of {v}");
        }
        let inv_count = T::from_f64(1.0 / count.max(1) as f64);
        let rows = self
            .block_rows
            .unwrap_or((BLOCK_ELEMS / v).max(8))
            .clamp(1, n.max(1));
        let mut logits = vec![T::zero(); rows * v];
        let mut row_loss = vec![0f64; n];
        let mut row_scale = vec![T::zero(); n];
        // d Wᵀ [d, V]: the product that accumulates it writes long unit-stride rows, which gemm
        // runs about 1.3x faster than the [V, d] layout; transposed once at the end.
        let (mut dh, mut dwt, mut scaled_h) = if self.with_grad {
            (
                vec![T::zero(); n * d],
                vec![T::zero(); d * v],
                vec![T::zero(); rows * d],
            )
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        let par = parallelism();
        for r0 in (0..n).step_by(rows) {
            let m = rows.min(n - r0);
            let block = &mut logits[..m * v];
            let hb = &h[r0 * d..(r0 + m) * d];
            // SAFETY: every pointer/stride pair below describes a slice of the stated shape.
            unsafe {
                // block[m, v] = hb[m, d] @ w[v, d]^T
                gemm(
                    m,
                    v,
                    d,
                    block.as_mut_ptr(),
                    1,
                    v as isize,
                    false,
                    hb.as_ptr(),
                    1,
                    d as isize,
                    w.as_ptr(),
                    d as isize,
                    1,
                    T::zero(),
                    T::one(),
                    false,
                    false,
                    false,
                    par,
                );
            }
            let with_grad = self.with_grad;
            let targets = &self.targets[r0..r0 + m];
            block
                .par_chunks_mut(v)
                .zip(row_loss[r0..r0 + m].par_iter_mut())
                .zip(row_scale[r0..r0 + m].par_iter_mut())
                .zip(targets.par_iter())
                .for_each(|(((row, loss), scale), &t)| {
                    (*loss, *scale) = with_simd(SoftmaxRow {
                        row,
                        target: t,
                        with_grad,
                        inv_count,
                    })
                });
            if self.with_grad {
                let block = &logits[..m * v];
                let scales = &row_scale[r0..r0 + m];
                let scaled_h = &mut scaled_h[..m * d];
                for ((sh, hr), &c) in scaled_h
                    .chunks_exact_mut(d)
                    .zip(hb.chunks_exact(d))
                    .zip(scales)
                {
                    for (s, &x) in sh.iter_mut().zip(hr) {
                        *s = x * c;
                    }
                }
                let dh_block = &mut dh[r0 * d..(r0 + m) * d];
                // SAFETY: as above.
                unsafe {
                    // dh[r0.., d] = block[m, v] @ w[v, d] (row scales below)
                    gemm(
                        m,
                        d,
                        v,
                        dh_block.as_mut_ptr(),
                        1,
                        d as isize,
                        false,
                        block.as_ptr(),
                        1,
                        v as isize,
                        w.as_ptr(),
                        1,
                        d as isize,
                        T::zero(),
                        T::one(),
                        false,
                        false,
                        false,
                        par,
                    );
                    // dwt[d, v] += scaled_h^T[d, m] @ block[m, v]
                    gemm(
                        d,
                        v,
                        m,
                        dwt.as_mut_ptr(),
                        1,
                        v as isize,
                        r0 > 0,
                        scaled_h.as_ptr(),
                        d as isize,
                        1,
                        block.as_ptr(),
                        1,
                        v as isize,
                        T::one(),
                        T::one(),
                        false,
                        false,
                        false,
                        par,
                    );
                }
                for (row, &c) in dh_block.chunks_exact_mut(d).zip(scales) {
                    for x in row.iter_mut() {
                        *x *= c;
                    }
                }
            }
        }
        if self.with_grad {
            let dh = Tensor::from_vec(dh, (n, d), &Device::Cpu)?;
            let dw = Tensor::from_vec(transposed(&dwt, d, v), (v, d), &Device::Cpu)?;
            *self.grads.lock().expect("cross-entropy gradient lock") = Some((dh, dw));
        }
        let total: f64 = row_loss.iter().sum();
        Ok(T::from_f64(total / count as f64))
    }
}

/// `src` [rows, cols] transposed to [cols, rows], in cache-sized tiles, in parallel.
fn transposed<T: Real>(src: &[T], rows: usize, cols: usize) -> Vec<T> {
    const TILE: usize = 64;
    let mut dst: Vec<T> = Vec::with_capacity(rows * cols);
    dst.spare_capacity_mut()[..rows * cols]
        .par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(bi, chunk)| {
            let c0 = bi * TILE;
            let nc = chunk.len() / rows;
            for r0 in (0..rows).step_by(TILE) {
                for c in 0..nc {
                    for r in r0..(r0 + TILE).min(rows) {
                        chunk[c * rows + r].write(src[r * cols + c0 + c]);
                    }
                }
            }
        });
    // SAFETY: the chunks cover all rows * cols elements and every one was written above.
    unsafe { dst.set_len(rows * cols) };
    dst
}

/// One row of logits: returns its loss and, with a gradient wanted, its gradient scale c, the row
/// left holding e^(x − max) with Σ e^(x − max) subtracted at the target, so that c · row =
/// (softmax − one-hot) / count. An ignored row (target < 0) has loss 0, scale 0 and is zeroed.
struct SoftmaxRow<'a, T> {
    row: &'a mut [T],
    target: i64,
    with_grad: bool,
    inv_count: T,
}

impl<T: Real> SimdKernel for SoftmaxRow<'_, T> {
    type Output = (f64, T);

    #[inline(always)]
    fn run(self) -> (f64, T) {
        let SoftmaxRow {
            row,
            target,
            with_grad,
            inv_count,
        } = self;
        if target < 0 {
            if with_grad {
                row.fill(T::zero());
            }
            return (0.0, T::zero());
        }
        let t = target as usize;
        let max = max_of(row);
        let target_logit = row[t];
        if !with_grad {
            let sum = exp_shifted_sum(row, max);
            return ((max + sum.ln() - target_logit).to_f64(), T::zero());
        }
        // One exp per logit, kept; the scale goes to the [m, d] sides of the products.
        let sum = exp_shifted_in_place(row, max);
        row[t] -= sum;
        ((max + sum.ln() - target_logit).to_f64(), inv_count / sum)
    }
}

impl CustomOp2 for LinearCrossEntropy {
    fn name(&self) -> &'static str {
        "fused-linear-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, d) = l1.shape().dims2()?;
        let (v, d2) = l2.shape().dims2()?;
        if d != d2 || n != self.targets.len() {
            bail!(
                "cross-entropy: hidden {n}x{d}, weight {v}x{d2}, {} targets",
                self.targets.len()
            );
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let loss = self.run::<f32>(cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, n, d, v)?;
                CpuStorage::F32(vec![loss])
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let loss = self.run::<f64>(cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, n, d, v)?;
                CpuStorage::F64(vec![loss])
            }
            _ => bail!("cross-entropy: f32 or f64 inputs of one dtype expected"),
        };
        Ok((out, Shape::from(())))
    }

    fn bwd(
        &self,
        _hidden: &Tensor,
        _weight: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let Some((dh, dw)) = self
            .grads
            .lock()
            .expect("cross-entropy gradient lock")
            .take()
        else {
            bail!("cross-entropy: backward run twice, or on a forward made without gradients");
        };
        Ok((
            Some(dh.broadcast_mul(grad_res)?),
            Some(dw.broadcast_mul(grad_res)?),
        ))
    }
}

/// Mean cross-entropy of `hidden` [N, d] projected by `weight` [V, d] against `targets` [N] (i64,
/// negative = ignored), fused. Gradients are computed in the forward only when an input is tracked.
pub fn linear_cross_entropy(hidden: &Tensor, weight: &Tensor, targets: &Tensor) -> Result<Tensor> {
    blocked_linear_cross_entropy(hidden, weight, targets, None)
}

/// [`linear_cross_entropy`] with `block_rows` rows of logits at a time (None: the default size);
/// the result does not depend on it beyond rounding (tests use small blocks to cover several).
pub fn blocked_linear_cross_entropy(
    hidden: &Tensor,
    weight: &Tensor,
    targets: &Tensor,
    block_rows: Option<usize>,
) -> Result<Tensor> {
    let targets = targets
        .to_dtype(DType::I64)?
        .flatten_all()?
        .to_vec1::<i64>()?;
    let op = LinearCrossEntropy {
        targets,
        with_grad: hidden.track_op() || weight.track_op(),
        block_rows,
        grads: Mutex::new(None),
    };
    hidden.contiguous()?.apply_op2(&weight.contiguous()?, op)
}

/// The composed reference: logits, log-softmax, gather, mean over the rows whose target is >= 0.
pub fn reference(hidden: &Tensor, weight: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = hidden.matmul(&weight.t()?)?;
    let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?.detach())?;
    let logp = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
    let valid = targets.ge(0i64)?;
    let safe = valid
        .where_cond(targets, &targets.zeros_like()?)?
        .to_dtype(DType::U32)?;
    let picked = logp.gather(&safe.unsqueeze(1)?, 1)?.squeeze(1)?;
    let valid = valid.to_dtype(picked.dtype())?;
    (picked * &valid)?
        .sum_all()?
        .neg()?
        .broadcast_div(&valid.sum_all()?)
}
