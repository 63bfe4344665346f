//! Every fused kernel against the composed candle ops it replaces, on a real GPU: forward values
//! and gradients. `doge cuda selftest` runs it (bench/gpu-check.sh calls that); it needs a GPU, so
//! CI cannot run it.

use candle_core::{DType, Device, Result, Tensor, Var, D};

use super::ops;

/// One comparison: the largest absolute difference and the bound it must stay under.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub max_abs_diff: f32,
    pub tolerance: f32,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.max_abs_diff <= self.tolerance
    }
}

fn diff(name: &str, a: &Tensor, b: &Tensor, tolerance: f32) -> Result<Check> {
    let d = (a - b)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?;
    Ok(Check {
        name: name.into(),
        max_abs_diff: d,
        tolerance,
    })
}

/// Runs all checks on `dev` (a CUDA device).
pub fn run(dev: &Device) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    out.extend(rms_norm(dev)?);
    out.extend(cross_entropy(dev)?);
    out.extend(adamw(dev)?);
    out.extend(attention(dev)?);
    Ok(out)
}

fn rms_norm(dev: &Device) -> Result<Vec<Check>> {
    let eps = 1e-6;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 37, 256), dev)?)?;
    let w = Var::from_tensor(&Tensor::randn(1f32, 0.1, 256, dev)?)?;
    let r = Tensor::randn(0f32, 1.0, (4, 37, 256), dev)?;
    let composed = {
        let rstd = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
        x.broadcast_mul(&rstd)?.broadcast_mul(&w)?
    };
    let fused = ops::rms_norm(&x, &w, eps)?;
    let gc = (&composed * &r)?.sum_all()?.backward()?;
    let gf = (&fused * &r)?.sum_all()?.backward()?;
    let grad = |g: &candle_core::backprop::GradStore, v: &Var| {
        g.get(v.as_tensor())
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg("missing gradient".into()))
    };
    Ok(vec![
        diff("rms_norm forward", &fused, &composed, 1e-5)?,
        diff("rms_norm dx", &grad(&gf, &x)?, &grad(&gc, &x)?, 1e-4)?,
        diff("rms_norm dw", &grad(&gf, &w)?, &grad(&gc, &w)?, 1e-3)?,
    ])
}

fn cross_entropy(dev: &Device) -> Result<Vec<Check>> {
    let (n, v) = (67, 32768);
    let logits = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (n, v), dev)? * 3.0)?)?;
    let mut labels: Vec<i64> = (0..n as i64).map(|i| (i * 7919) % v as i64).collect();
    labels[3] = -100;
    labels[10] = -100;
    let labels_t = Tensor::new(labels.as_slice(), dev)?;
    let keep: Vec<f32> = labels.iter().map(|&t| (t >= 0) as u8 as f32).collect();
    let keep = Tensor::new(keep.as_slice(), dev)?;
    let safe = labels_t.clamp(0i64, v as i64 - 1)?;
    let composed = {
        let lse = logits.exp()?.sum_keepdim(1)?.log()?; // values ~N(0,9): no overflow
        let picked = logits.gather(&safe.unsqueeze(1)?, 1)?;
        (lse - picked)?.squeeze(1)?.mul(&keep)?
    };
    let fused = ops::cross_entropy(&logits, &labels_t, -100)?;
    let gc = composed.sum_all()?.backward()?;
    let gf = fused.sum_all()?.backward()?;
    let (a, b) = (
        gf.get(logits.as_tensor()).unwrap(),
        gc.get(logits.as_tensor()).unwrap(),
    );
    Ok(vec![
        diff("cross_entropy forward", &fused, &composed, 1e-4)?,
        diff("cross_entropy dlogits", a, b, 1e-6)?,
    ])
}

fn adamw(dev: &Device) -> Result<Vec<Check>> {
    let shape = (300, 257);
    let theta = Tensor::randn(0f32, 0.02, shape, dev)?;
    let grad = Tensor::randn(0f32, 1e-3, shape, dev)?;
    let m = Tensor::randn(0f32, 1e-3, shape, dev)?;
    let v = (Tensor::randn(0f32, 1e-3, shape, dev)?.sqr()? + 1e-8)?;
    let (lr, wd, b1, b2, eps, t, scale) = (3e-3f64, 0.1, 0.9, 0.95, 1e-8, 7, 0.5);
    let bc1 = 1.0 - f64::powi(b1, t);
    let bc2s = (1.0 - f64::powi(b2, t)).sqrt();
    let g = (&grad * scale)?;
    let m2 = ((&m * b1)? + (&g * (1.0 - b1))?)?;
    let v2 = ((&v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
    let th = (&theta * (1.0 - lr * wd))?;
    let th2 = (th - ((&m2 / ((v2.sqrt()? / bc2s)? + eps)?)? * (lr / bc1))?)?;
    let h = ops::AdamWStep {
        decay_factor: (1.0 - lr * wd) as f32,
        beta1: b1 as f32,
        beta2: b2 as f32,
        eps: eps as f32,
        step_size: (lr / bc1) as f32,
        bias_correction2_sqrt: bc2s as f32,
        grad_scale: scale as f32,
    };
    let (tf, mf, vf) = ops::adamw_step(&theta, &grad, &m, &v, h)?;
    Ok(vec![
        diff("adamw theta", &tf, &th2, 1e-6)?,
        diff("adamw exp_avg", &mf, &m2, 1e-9)?,
        diff("adamw exp_avg_sq", &vf, &v2, 1e-9)?,
    ])
}

fn attention(dev: &Device) -> Result<Vec<Check>> {
    let (b, h, hkv, l, d) = (2, 4, 2, 77, 128);
    let var = |shape: (usize, usize, usize, usize)| -> Result<Var> {
        Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, dev)?)
    };
    let (q, k, v) = (
        var((b, h, l, d))?,
        var((b, hkv, l, d))?,
        var((b, hkv, l, d))?,
    );
    // Causal, plus a third of the keys dropped (as a top-k window would), with a bias.
    let bias = Tensor::randn(0f32, 1.0, (b, hkv, 1, l), dev)?.broadcast_as((b, hkv, l, l))?;
    let keep: Vec<u8> = (0..l * l)
        .map(|x| ((x % l) <= (x / l) && !(x * 7).is_multiple_of(3) || x % l == x / l) as u8)
        .collect();
    let keep = Tensor::from_vec(keep, (l, l), dev)?.broadcast_as((b, hkv, l, l))?;
    let min = Tensor::new(f32::MIN, dev)?.broadcast_as((b, hkv, l, l))?;
    let mask = Var::from_tensor(&keep.where_cond(&bias, &min)?.contiguous()?)?;
    let scale = (d as f64).powf(-0.5);
    let groups = h / hkv;
    let composed = {
        let qg = q.reshape((b, hkv, groups * l, d))?;
        let scores = (qg.matmul(&k.t()?)? * scale)?.reshape((b, hkv, groups, l, l))?;
        let scores = scores.broadcast_add(&mask.unsqueeze(2)?)?;
        let m = scores.max_keepdim(D::Minus1)?.detach();
        let e = scores.broadcast_sub(&m)?.exp()?;
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        p.reshape((b, hkv, groups * l, l))?
            .matmul(&v)?
            .reshape((b, h, l, d))?
    };
    let inference = ops::dma_attention_forward(&q, &k, &v, &mask, scale)?;
    let fused = ops::dma_attention(&q, &k, &v, &mask, scale)?;
    let r = Tensor::randn(0f32, 1.0, (b, h, l, d), dev)?;
    let gc = (&composed * &r)?.sum_all()?.backward()?;
    let gf = (&fused * &r)?.sum_all()?.backward()?;
    let mut checks = vec![
        diff("dma_attention forward", &inference, &composed, 1e-4)?,
        diff("dma_attention forward (op)", &fused, &composed, 1e-4)?,
    ];
    for (name, x) in [("dq", &q), ("dk", &k), ("dv", &v), ("dmask", &mask)] {
        let (a, c) = (gf.get(x.as_tensor()), gc.get(x.as_tensor()));
        let (Some(a), Some(c)) = (a, c) else {
            return Err(candle_core::Error::Msg(format!("dma_attention: no {name}")));
        };
        checks.push(diff(&format!("dma_attention {name}"), a, c, 1e-3)?);
    }
    Ok(checks)
}
