//! Autoregressive decoding with a KV cache: greedy, or sampling with temperature, top-k, top-p and
//! repetition penalty (transformers' logits processors, applied in that order).

use candle_core::{DType, Result, Tensor};
use rand::{Rng, SeedableRng};

use crate::model::DogeForCausalLM;

#[derive(Debug, Clone)]
pub struct GenerationSettings {
    pub max_new_tokens: usize,
    /// None: greedy (argmax).
    pub sampling: Option<Sampling>,
    pub repetition_penalty: f32,
    /// Stop at this token (it is kept in the output) unless None.
    pub eos_token_id: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub seed: u64,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self {
            max_new_tokens: 100,
            sampling: None,
            repetition_penalty: 1.0,
            eos_token_id: None,
        }
    }
}

/// Index of the largest value; the first one on ties, as torch's argmax.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// transformers' RepetitionPenaltyLogitsProcessor: seen tokens' logits are divided by the penalty
/// when positive and multiplied when negative.
pub fn apply_repetition_penalty(logits: &mut [f32], seen: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut done = vec![false; logits.len()];
    for &t in seen {
        let t = t as usize;
        if t < logits.len() && !done[t] {
            done[t] = true;
            logits[t] = if logits[t] < 0.0 {
                logits[t] * penalty
            } else {
                logits[t] / penalty
            };
        }
    }
}

/// Samples one token from `logits` after temperature, top-k and top-p filtering.
pub fn sample(logits: &[f32], s: &Sampling, rng: &mut impl Rng) -> u32 {
    let t = s.temperature.max(1e-6);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if let Some(k) = s.top_k {
        order.truncate(k.max(1));
    }
    let max = logits[order[0]] / t;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] / t - max) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    // Top-p keeps the smallest prefix whose probability mass reaches p.
    let mut keep = weights.len();
    if let Some(p) = s.top_p {
        let mut cum = 0.0;
        for (n, w) in weights.iter().enumerate() {
            cum += w / total;
            if cum >= p as f64 {
                keep = n + 1;
                break;
            }
        }
    }
    let kept_total: f64 = weights[..keep].iter().sum();
    let mut r = rng.random::<f64>() * kept_total;
    for n in 0..keep {
        r -= weights[n];
        if r <= 0.0 {
            return order[n] as u32;
        }
    }
    order[keep - 1] as u32
}

/// Generates up to `max_new_tokens` after `prompt`, calling `on_token` with each new token as it is
/// chosen (for streaming). Returns the new tokens.
pub fn generate(
    model: &DogeForCausalLM,
    prompt: &[u32],
    settings: &GenerationSettings,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        candle_core::bail!("generation needs a prompt of at least one token");
    }
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(settings.sampling.as_ref().map(|s| s.seed).unwrap_or(0));
    let mut cache = model.new_cache();
    let mut seen: Vec<u32> = prompt.to_vec();
    let mut out = Vec::with_capacity(settings.max_new_tokens);
    let mut input = Tensor::new(prompt, model.device())?.unsqueeze(0)?;
    for _ in 0..settings.max_new_tokens {
        let logits = model.forward_last(&input, Some(&mut cache))?;
        let mut logits = logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        apply_repetition_penalty(&mut logits, &seen, settings.repetition_penalty);
        let next = match &settings.sampling {
            None => argmax(&logits),
            Some(s) => sample(&logits, s, &mut rng),
        };
        out.push(next);
        seen.push(next);
        on_token(next)?;
        if settings.eos_token_id == Some(next) {
            break;
        }
        input = Tensor::new(&[next], model.device())?.unsqueeze(0)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_penalty_follows_transformers() {
        let mut l = vec![2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 1], 2.0);
        assert_eq!(l, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_restricts_support() {
        let logits = [0.1, 3.0, 2.9, -1.0];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let s = Sampling {
            temperature: 1.0,
            top_k: Some(1),
            top_p: None,
            seed: 1,
        };
        assert!((0..50).all(|_| sample(&logits, &s, &mut rng) == 1));
        // p(1) ≈ 0.50, p(2) ≈ 0.45: top_p 0.9 keeps exactly tokens 1 and 2.
        let s = Sampling {
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.9),
            seed: 1,
        };
        let draws: Vec<u32> = (0..400).map(|_| sample(&logits, &s, &mut rng)).collect();
        assert!(draws.iter().all(|&t| t == 1 || t == 2));
        assert!(draws.contains(&1) && draws.contains(&2));
    }
}
