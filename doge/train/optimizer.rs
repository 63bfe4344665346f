//! AdamW exactly as `torch.optim.AdamW` computes it (decoupled weight decay applied before the
//! moment update, bias corrections folded into the step size), and `clip_grad_norm_`.

use candle_core::{backprop::GradStore, Result, Tensor, Var};
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
}

impl AdamW {
    pub fn new(config: AdamWConfig, params: Vec<(String, Var, bool)>) -> Result<Self> {
        let params = params
            .into_iter()
            .map(|(name, var, decay)| {
                let zeros = var.as_tensor().zeros_like()?;
                Ok(TrainParam {
                    name,
                    decay,
                    exp_avg: zeros.clone(),
                    exp_avg_sq: zeros,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            params,
            step: 0,
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
    for g in grads.iter().flatten() {
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
