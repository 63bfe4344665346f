//! AdamW exactly as `torch.optim.AdamW` computes it (decoupled weight decay applied before the
//! moment update, bias corrections folded into the step size), and `clip_grad_norm_`.
//!
//! On the CPU (f32/f64) the update runs as three in-place passes per tensor
//! (`model::ops::adamw`) with the same arithmetic; `DOGE_FUSED=0` or `fused = false` selects the
//! composed ops, which are also the path on other devices.

use candle_core::{backprop::GradStore, Result, Tensor, Var};

use crate::model::ops::{self, adamw::AdamWScalars, fusable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// One trainable tensor with its optimizer state.
pub struct TrainParam {
    pub name: String,
    pub var: Var,
    /// Whether weight decay applies (spec 7.1: not on norms and biases).
    pub decay: bool,
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
}

pub struct AdamW {
    pub config: AdamWConfig,
    pub params: Vec<TrainParam>,
    /// Number of updates done (torch's `step` state).
    pub step: u64,
    /// Update in place with the fused kernel where the tensors allow it.
    pub fused: bool,
}

impl AdamW {
    pub fn new(config: AdamWConfig, params: Vec<(String, Var, bool)>) -> Result<Self> {
        let params = params
            .into_iter()
            .map(|(name, var, decay)| {
                // Two allocations: the fused update writes each moment in place.
                Ok(TrainParam {
                    name,
                    decay,
                    exp_avg: var.as_tensor().zeros_like()?,
                    exp_avg_sq: var.as_tensor().zeros_like()?,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            params,
            step: 0,
            fused: ops::fused_by_default(),
        })
    }

    /// Adds one micro-batch's gradients to `acc` (gradient accumulation).
    pub fn accumulate(&self, acc: &mut [Option<Tensor>], store: &GradStore) -> Result<()> {
        for (slot, p) in acc.iter_mut().zip(&self.params) {
            if let Some(g) = store.get(p.var.as_tensor()) {
                *slot = Some(match slot.take() {
                    Some(prev) => (prev + g)?,
                    None => g.clone(),
                });
            }
        }
        Ok(())
    }

    /// One update at learning rate `lr`. Gradients are scaled by `grad_scale` first (torch's
    /// clip_grad_norm_ multiplies by min(1, max_norm / (norm + 1e-6))).
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bias_correction1 = 1.0 - c.beta1.powi(t);
        let bias_correction2 = 1.0 - c.beta2.powi(t);
        let step_size = lr / bias_correction1;
        let bias_correction2_sqrt = bias_correction2.sqrt();
        for (p, g) in self.params.iter_mut().zip(grads) {
            let Some(g) = g else { continue };
            let theta = p.var.as_tensor();
            if self.fused && fusable(theta) && g.dtype() == theta.dtype() && g.device().is_cpu() {
                let decay = (p.decay && c.weight_decay != 0.0).then_some(1.0 - lr * c.weight_decay);
                let scalars = AdamWScalars {
                    beta1: c.beta1,
                    beta2: c.beta2,
                    eps: c.eps,
                    grad_scale,
                    decay,
                    step_size,
                    bias_correction2_sqrt,
                };
                ops::adamw::adamw_update(theta, &p.exp_avg, &p.exp_avg_sq, g, scalars)?;
                continue;
            }
            #[cfg(feature = "cuda")]
            if self.fused && crate::cuda::fusable(theta) && g.dtype() == theta.dtype() {
                let decay = (p.decay && c.weight_decay != 0.0).then_some(1.0 - lr * c.weight_decay);
                let h = crate::cuda::ops::AdamWStep {
                    decay_factor: decay.unwrap_or(1.0) as f32,
                    beta1: c.beta1 as f32,
                    beta2: c.beta2 as f32,
                    eps: c.eps as f32,
                    step_size: step_size as f32,
                    bias_correction2_sqrt: bias_correction2_sqrt as f32,
                    grad_scale: grad_scale as f32,
                };
                let (theta, m, v) =
                    crate::cuda::ops::adamw_step(theta, g, &p.exp_avg, &p.exp_avg_sq, h)?;
                p.var.set(&theta)?;
                (p.exp_avg, p.exp_avg_sq) = (m, v);
                continue;
            }
            let g = (g * grad_scale)?;
            let mut theta = p.var.as_tensor().detach();
            if p.decay && c.weight_decay != 0.0 {
                theta = (theta * (1.0 - lr * c.weight_decay))?;
            }
            p.exp_avg = ((&p.exp_avg * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            p.exp_avg_sq = ((&p.exp_avg_sq * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((p.exp_avg_sq.sqrt()? / bias_correction2_sqrt)? + c.eps)?;
            let update = ((&p.exp_avg / denom)? * step_size)?;
            p.var.set(&(theta - update)?)?;
        }
        Ok(())
    }
}

/// The global L2 norm of all gradients (clip_grad_norm_'s total norm).
pub fn grad_norm(grads: &[Option<Tensor>]) -> Result<f64> {
    let mut total = 0f64;
    let fused = ops::fused_by_default();
    for g in grads.iter().flatten() {
        if fused && fusable(g) {
            total += ops::adamw::sum_of_squares(g)?;
            continue;
        }
        total += g
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
    }
    Ok(total.sqrt())
}

/// torch.nn.utils.clip_grad_norm_'s factor for a global norm.
pub fn clip_scale(norm: f64, max_norm: Option<f64>) -> f64 {
    match max_norm {
        Some(m) if m > 0.0 => (m / (norm + 1e-6)).min(1.0),
        _ => 1.0,
    }
}
