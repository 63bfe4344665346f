//! Entry points of the kernels in kernels.cu: raw launches over device buffers, tensor-level
//! functions, and the autograd ops (candle `CustomOp`s) the model and the loss use on CUDA.

use candle_core::backend::BackendStorage;
use candle_core::cuda::cudarc::driver::{CudaSlice, CudaView, PushKernelArg};
use candle_core::{
    CpuStorage, CudaDevice, CudaStorage, CustomOp2, Layout, Result, Shape, Tensor, D,
};

use super::{check_f32, cuda_device, cuda_err, function, launch_elements, launch_rows, view, wrap};

/// Threads per block for the row kernels: enough warps to hide latency on rows of 128..32768.
const ROW_THREADS: u32 = 256;
/// Warps per block for the attention kernel (one warp per query row).
const ATTENTION_WARPS: u32 = 4;

fn rms_norm_fwd_raw(
    dev: &CudaDevice,
    x: &CudaView<'_, f32>,
    w: &CudaView<'_, f32>,
    rows: usize,
    cols: usize,
    eps: f64,
) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
    let y = dev.alloc_zeros::<f32>(rows * cols)?;
    let rstd = dev.alloc_zeros::<f32>(rows)?;
    let f = function(dev, "rms_norm_fwd")?;
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&f);
    let (r, c, e) = (rows as i32, cols as i32, eps as f32);
    b.arg(x).arg(w).arg(&y).arg(&rstd).arg(&r).arg(&c).arg(&e);
    unsafe { b.launch(launch_rows(rows, ROW_THREADS)) }.map_err(cuda_err)?;
    Ok((y, rstd))
}

/// (dx, dw) of RMSNorm given dy and the forward's rstd.
pub fn rms_norm_backward(
    dy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    rstd: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let dev = cuda_device(x)?;
    let (dy, x, w, rstd) = (
        dy.contiguous()?,
        x.contiguous()?,
        w.contiguous()?,
        rstd.contiguous()?,
    );
    let cols = x.dim(D::Minus1)?;
    let rows = x.elem_count() / cols;
    let dx = dev.alloc_zeros::<f32>(rows * cols)?;
    let dw = dev.alloc_zeros::<f32>(cols)?;
    {
        let (dys, dyl) = dy.storage_and_layout();
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (rs, rl) = rstd.storage_and_layout();
        let dyv = view::<f32>(&dys, dyl)?;
        let xv = view::<f32>(&xs, xl)?;
        let wv = view::<f32>(&ws, wl)?;
        let rv = view::<f32>(&rs, rl)?;
        let (r, c) = (rows as i32, cols as i32);
        let f = function(&dev, "rms_norm_bwd_x")?;
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&dyv)
            .arg(&xv)
            .arg(&wv)
            .arg(&rv)
            .arg(&dx)
            .arg(&r)
            .arg(&c);
        unsafe { b.launch(launch_rows(rows, ROW_THREADS)) }.map_err(cuda_err)?;
        let f = function(&dev, "rms_norm_bwd_w")?;
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&dyv).arg(&xv).arg(&rv).arg(&dw).arg(&r).arg(&c);
        unsafe { b.launch(launch_elements(cols, 128)) }.map_err(cuda_err)?;
    }
    Ok((wrap(dx, &dev, x.shape().clone()), wrap(dw, &dev, cols)))
}

/// RMSNorm with a gradient, forward and backward on the fused kernels.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    x.apply_op2(w, RmsNormOp { eps })
}

struct RmsNormOp {
    eps: f64,
}

fn contiguous_view<'a>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, f32>> {
    if !l.is_contiguous() {
        return Err(cuda_err("doge::cuda kernels need contiguous tensors"));
    }
    Ok(s.as_cuda_slice::<f32>()?.slice(l.start_offset()..))
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "doge-rms-norm"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Err(cuda_err(
            "doge-rms-norm is the CUDA kernel; CPU tensors use the CPU path",
        ))
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = x.device().clone();
        let cols = *xl.dims().last().unwrap_or(&1);
        let rows = xl.shape().elem_count() / cols.max(1);
        let (y, _rstd) = rms_norm_fwd_raw(
            &dev,
            &contiguous_view(x, xl)?,
            &contiguous_view(w, wl)?,
            rows,
            cols,
            self.eps,
        )?;
        Ok((CudaStorage::wrap_cuda_slice(y, dev), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // rstd is one reduction: recomputing it is cheaper than keeping a second output alive.
        let rstd = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?
            .squeeze(D::Minus1)?;
        let (dx, dw) = rms_norm_backward(dy, x, w, &rstd)?;
        Ok((Some(dx), Some(dw)))
    }
}

fn cross_entropy_fwd_raw(
    dev: &CudaDevice,
    logits: &CudaView<'_, f32>,
    labels: &CudaView<'_, i64>,
    rows: usize,
    vocab: usize,
    ignore: i64,
) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
    let loss = dev.alloc_zeros::<f32>(rows)?;
    let lse = dev.alloc_zeros::<f32>(rows)?;
    let (r, v) = (rows as i32, vocab as i32);
    let f = function(dev, "cross_entropy_fwd")?;
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&f);
    b.arg(logits)
        .arg(labels)
        .arg(&loss)
        .arg(&lse)
        .arg(&r)
        .arg(&v)
        .arg(&ignore);
    unsafe { b.launch(launch_rows(rows, ROW_THREADS)) }.map_err(cuda_err)?;
    Ok((loss, lse))
}

/// Per-row cross-entropy (0 where the label is `ignore`) and each row's logsumexp.
pub fn cross_entropy_forward(
    logits: &Tensor,
    labels: &Tensor,
    ignore: i64,
) -> Result<(Tensor, Tensor)> {
    check_f32("cross_entropy logits", logits)?;
    let dev = cuda_device(logits)?;
    let (logits, labels) = (logits.contiguous()?, labels.contiguous()?);
    let (rows, vocab) = logits.dims2()?;
    let (loss, lse) = {
        let (ls, ll) = logits.storage_and_layout();
        let (ts, tl) = labels.storage_and_layout();
        cross_entropy_fwd_raw(&dev, &view(&ls, ll)?, &view(&ts, tl)?, rows, vocab, ignore)?
    };
    Ok((wrap(loss, &dev, rows), wrap(lse, &dev, rows)))
}

/// d(Σ g·loss)/dlogits = g · (softmax − onehot), zero on ignored rows.
pub fn cross_entropy_backward(
    logits: &Tensor,
    labels: &Tensor,
    lse: &Tensor,
    g: &Tensor,
    ignore: i64,
) -> Result<Tensor> {
    let dev = cuda_device(logits)?;
    let (logits, labels, lse, g) = (
        logits.contiguous()?,
        labels.contiguous()?,
        lse.contiguous()?,
        g.contiguous()?,
    );
    let (rows, vocab) = logits.dims2()?;
    let d = dev.alloc_zeros::<f32>(rows * vocab)?;
    {
        let (ls, ll) = logits.storage_and_layout();
        let (ts, tl) = labels.storage_and_layout();
        let (zs, zl) = lse.storage_and_layout();
        let (gs, gl) = g.storage_and_layout();
        let lv = view::<f32>(&ls, ll)?;
        let tv = view::<i64>(&ts, tl)?;
        let zv = view::<f32>(&zs, zl)?;
        let gv = view::<f32>(&gs, gl)?;
        let (r, v) = (rows as i32, vocab as i32);
        let f = function(&dev, "cross_entropy_bwd")?;
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&lv)
            .arg(&tv)
            .arg(&zv)
            .arg(&gv)
            .arg(&d)
            .arg(&r)
            .arg(&v)
            .arg(&ignore);
        unsafe { b.launch(launch_rows(rows, ROW_THREADS)) }.map_err(cuda_err)?;
    }
    Ok(wrap(d, &dev, (rows, vocab)))
}

/// Per-row cross-entropy [N] of logits [N, V] against i64 labels [N], with a gradient.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, ignore: i64) -> Result<Tensor> {
    logits.apply_op2(labels, CrossEntropyOp { ignore })
}

struct CrossEntropyOp {
    ignore: i64,
}

impl CustomOp2 for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "doge-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Err(cuda_err(
            "doge-cross-entropy is the CUDA kernel; CPU tensors use the CPU path",
        ))
    }

    fn cuda_fwd(
        &self,
        logits: &CudaStorage,
        ll: &Layout,
        labels: &CudaStorage,
        tl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = logits.device().clone();
        let (rows, vocab) = ll.shape().dims2()?;
        if !tl.is_contiguous() {
            return Err(cuda_err("cross_entropy: labels must be contiguous"));
        }
        let tv = labels.as_cuda_slice::<i64>()?.slice(tl.start_offset()..);
        let lv = contiguous_view(logits, ll)?;
        let (loss, _lse) = cross_entropy_fwd_raw(&dev, &lv, &tv, rows, vocab, self.ignore)?;
        Ok((CudaStorage::wrap_cuda_slice(loss, dev), Shape::from(rows)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        _loss: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // The logsumexp is recomputed by the forward kernel (one pass over the row).
        let (_, lse) = cross_entropy_forward(logits, labels, self.ignore)?;
        let d = cross_entropy_backward(logits, labels, &lse, g, self.ignore)?;
        Ok((Some(d), None))
    }
}

/// Mean next-token cross-entropy of logits [B, L, V] against unshifted i64 labels [B, L] (`ignore`
/// carries no loss), as `model::causal_lm_loss`, on the fused kernel. The ignore value is passed
/// in, so the CUDA backend depends on nothing of the model's: the model calls it, never the reverse.
pub fn causal_lm_loss(logits: &Tensor, labels: &Tensor, ignore: i64) -> Result<Tensor> {
    let (b, l, v) = logits.dims3()?;
    if l < 2 {
        candle_core::bail!("the loss needs at least two positions, found {l}");
    }
    let logits = logits.narrow(1, 0, l - 1)?.reshape((b * (l - 1), v))?;
    let targets = labels
        .narrow(1, 1, l - 1)?
        .reshape(b * (l - 1))?
        .contiguous()?;
    let per_row = cross_entropy(&logits, &targets, ignore)?;
    let count = targets
        .ge(0i64)?
        .to_dtype(candle_core::DType::F32)?
        .sum_all()?
        .maximum(1f32)?;
    per_row.sum_all()?.broadcast_div(&count)
}

/// Hyper-parameters of one AdamW step, already combined as torch combines them.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    /// 1 − lr·weight_decay (1 for tensors without decay).
    pub decay_factor: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// lr / (1 − β1^t).
    pub step_size: f32,
    /// sqrt(1 − β2^t).
    pub bias_correction2_sqrt: f32,
    /// Multiplies the gradient first (clipping, accumulation).
    pub grad_scale: f32,
}

/// One AdamW step over a tensor in a single kernel: (θ', m', v').
pub fn adamw_step(
    theta: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    h: AdamWStep,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dev = cuda_device(theta)?;
    let (theta, grad, m, v) = (
        theta.contiguous()?,
        grad.contiguous()?,
        m.contiguous()?,
        v.contiguous()?,
    );
    let n = theta.elem_count();
    let theta_out = dev.alloc_zeros::<f32>(n)?;
    let m_out = dev.alloc_zeros::<f32>(n)?;
    let v_out = dev.alloc_zeros::<f32>(n)?;
    {
        let (ts, tl) = theta.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (ms, ml) = m.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let tv = view::<f32>(&ts, tl)?;
        let gv = view::<f32>(&gs, gl)?;
        let mv = view::<f32>(&ms, ml)?;
        let vv = view::<f32>(&vs, vl)?;
        let f = function(&dev, "adamw_step")?;
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&tv).arg(&gv).arg(&mv).arg(&vv);
        b.arg(&theta_out).arg(&m_out).arg(&v_out).arg(&n);
        b.arg(&h.decay_factor)
            .arg(&h.beta1)
            .arg(&h.beta2)
            .arg(&h.eps);
        b.arg(&h.step_size)
            .arg(&h.bias_correction2_sqrt)
            .arg(&h.grad_scale);
        unsafe { b.launch(launch_elements(n, 256)) }.map_err(cuda_err)?;
    }
    let shape = theta.shape().clone();
    Ok((
        wrap(theta_out, &dev, shape.clone()),
        wrap(m_out, &dev, shape.clone()),
        wrap(v_out, &dev, shape),
    ))
}

/// Shapes of one attention call: q [B, H, Lq, D], k and v [B, Hkv, Lk, D].
#[derive(Debug, Clone, Copy)]
struct AttentionDims {
    b: usize,
    h: usize,
    hkv: usize,
    lq: usize,
    lk: usize,
    d: usize,
}

impl AttentionDims {
    fn rows(&self) -> usize {
        self.b * self.h * self.lq
    }

    fn kv_len(&self) -> usize {
        self.b * self.hkv * self.lk * self.d
    }

    fn check(&self) -> Result<()> {
        if self.d > 256 || !self.h.is_multiple_of(self.hkv) {
            return Err(cuda_err(format!(
                "dma_attention: head_dim {} > 256 or {} heads not a multiple of {} kv heads",
                self.d, self.h, self.hkv
            )));
        }
        Ok(())
    }

    /// The kernels' integer shape arguments, in their order.
    fn args(&self) -> [i32; 6] {
        [self.b, self.h, self.hkv, self.lq, self.lk, self.d].map(|x| x as i32)
    }

    fn launch(&self) -> candle_core::cuda::cudarc::driver::LaunchConfig {
        candle_core::cuda::cudarc::driver::LaunchConfig {
            grid_dim: (self.rows().div_ceil(ATTENTION_WARPS as usize) as u32, 1, 1),
            block_dim: (ATTENTION_WARPS * 32, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// (out [rows·D], lse [rows]) of the forward kernel.
fn attention_fwd_raw(
    dev: &CudaDevice,
    q: &CudaView<'_, f32>,
    k: &CudaView<'_, f32>,
    v: &CudaView<'_, f32>,
    mask: &CudaView<'_, f32>,
    dims: AttentionDims,
    scale: f64,
) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
    dims.check()?;
    let out = dev.alloc_zeros::<f32>(dims.rows() * dims.d)?;
    let lse = dev.alloc_zeros::<f32>(dims.rows())?;
    let f = function(dev, "dma_attention_fwd")?;
    let (ints, scale) = (dims.args(), scale as f32);
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&f);
    b.arg(q).arg(k).arg(v).arg(mask).arg(&out).arg(&lse);
    for x in &ints {
        b.arg(x);
    }
    b.arg(&scale);
    unsafe { b.launch(dims.launch()) }.map_err(cuda_err)?;
    Ok((out, lse))
}

/// Dynamic mask attention forward (no gradient: scoring and generation). q [B, H, Lq, D],
/// k and v [B, Hkv, Lk, D], mask [B, Hkv, Lq, Lk] additive (see kernels.cu). Returns
/// [B, H, Lq, D].
pub fn dma_attention_forward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    for (name, t) in [("q", q), ("k", k), ("v", v), ("mask", mask)] {
        check_f32(name, t)?;
    }
    let dev = cuda_device(q)?;
    let (b, h, lq, d) = q.dims4()?;
    let (_, hkv, lk, _) = k.dims4()?;
    let dims = AttentionDims {
        b,
        h,
        hkv,
        lq,
        lk,
        d,
    };
    let mask = mask.broadcast_as((b, hkv, lq, lk))?.contiguous()?;
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let (out, _lse) = {
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (ms, ml) = mask.storage_and_layout();
        attention_fwd_raw(
            &dev,
            &view(&qs, ql)?,
            &view(&ks, kl)?,
            &view(&vs, vl)?,
            &view(&ms, ml)?,
            dims,
            scale,
        )?
    };
    Ok(wrap(out, &dev, (b, h, lq, d)))
}

/// Dynamic mask attention with a gradient for q, k, v and the additive mask (so the dynamic bias
/// behind it trains): forward and backward on the flash-style kernels. Shapes as
/// [`dma_attention_forward`]; the mask must already be [B, Hkv, Lq, Lk].
pub fn dma_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    // Three inputs per custom op: keys and values travel stacked ([2, B, Hkv, Lk, D]).
    let kv = Tensor::stack(&[k, v], 0)?;
    q.contiguous()?
        .apply_op3(&kv, &mask.contiguous()?, DmaAttentionOp { scale })
}

struct DmaAttentionOp {
    scale: f64,
}

fn attention_dims(ql: &Layout, kvl: &Layout) -> Result<AttentionDims> {
    let (b, h, lq, d) = ql.shape().dims4()?;
    let dims = kvl.shape().dims();
    if dims.len() != 5 || dims[0] != 2 {
        return Err(cuda_err(
            "dma_attention: keys and values must be stacked [2, B, Hkv, Lk, D]",
        ));
    }
    Ok(AttentionDims {
        b,
        h,
        hkv: dims[2],
        lq,
        lk: dims[3],
        d,
    })
}

impl candle_core::CustomOp3 for DmaAttentionOp {
    fn name(&self) -> &'static str {
        "doge-dma-attention"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Err(cuda_err(
            "doge-dma-attention is the CUDA kernel; CPU tensors use the CPU path",
        ))
    }

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        ql: &Layout,
        kv: &CudaStorage,
        kvl: &Layout,
        mask: &CudaStorage,
        ml: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = q.device().clone();
        let dims = attention_dims(ql, kvl)?;
        let kv_view = contiguous_view(kv, kvl)?;
        let (out, _lse) = attention_fwd_raw(
            &dev,
            &contiguous_view(q, ql)?,
            &kv_view.slice(0..dims.kv_len()),
            &kv_view.slice(dims.kv_len()..2 * dims.kv_len()),
            &contiguous_view(mask, ml)?,
            dims,
            self.scale,
        )?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), ql.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        kv: &Tensor,
        mask: &Tensor,
        out: &Tensor,
        dout: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dev = cuda_device(q)?;
        let (q, kv, mask, out, dout) = (
            q.contiguous()?,
            kv.contiguous()?,
            mask.contiguous()?,
            out.contiguous()?,
            dout.contiguous()?,
        );
        let dims = attention_dims(q.layout(), kv.layout())?;
        let dq = dev.alloc_zeros::<f32>(dims.rows() * dims.d)?;
        let mut dkv = dev.alloc_zeros::<f32>(2 * dims.kv_len())?;
        let dmask = dev.alloc_zeros::<f32>(mask.elem_count())?;
        {
            let (qs, ql) = q.storage_and_layout();
            let (kvs, kvl) = kv.storage_and_layout();
            let (ms, ml) = mask.storage_and_layout();
            let (os, ol) = out.storage_and_layout();
            let (ds, dl) = dout.storage_and_layout();
            let qv = view::<f32>(&qs, ql)?;
            let kvv = view::<f32>(&kvs, kvl)?;
            let (kview, vview) = (
                kvv.slice(0..dims.kv_len()),
                kvv.slice(dims.kv_len()..2 * dims.kv_len()),
            );
            let mv = view::<f32>(&ms, ml)?;
            // The logsumexp of each row: one more forward pass, cheaper than keeping it alive.
            let (_, lse) = attention_fwd_raw(&dev, &qv, &kview, &vview, &mv, dims, self.scale)?;
            let ov = view::<f32>(&os, ol)?;
            let dov = view::<f32>(&ds, dl)?;
            let (mut dk, mut dv) = dkv.split_at_mut(dims.kv_len());
            let f = function(&dev, "dma_attention_bwd")?;
            let (ints, scale) = (dims.args(), self.scale as f32);
            let stream = dev.cuda_stream();
            let mut b = stream.launch_builder(&f);
            b.arg(&qv)
                .arg(&kview)
                .arg(&vview)
                .arg(&mv)
                .arg(&ov)
                .arg(&lse)
                .arg(&dov);
            b.arg(&dq).arg(&mut dk).arg(&mut dv).arg(&dmask);
            for x in &ints {
                b.arg(x);
            }
            b.arg(&scale);
            unsafe { b.launch(dims.launch()) }.map_err(cuda_err)?;
        }
        let kv_shape = kv.shape().clone();
        Ok((
            Some(wrap(dq, &dev, q.shape().clone())),
            Some(wrap(dkv, &dev, kv_shape)),
            Some(wrap(dmask, &dev, mask.shape().clone())),
        ))
    }
}
