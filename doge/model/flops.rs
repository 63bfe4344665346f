//! Floating-point operations per token, for tokens/s → MFU.
//!
//! The convention is PaLM's (Chowdhery et al. 2022, appendix B): a training token costs
//! 6·N + 12·L·H·hd·T, where N counts the weights that take part in a matrix product for that token
//! (every Linear, the LM head, and for CDMoE only the k retrieved rank-1 experts; not the embedding
//! lookup, norms or element-wise vectors) and the second term is attention's QKᵀ and AV over a
//! context of T keys, counted in full (the causal half is not subtracted, as in PaLM and in
//! nanoGPT/llm.c's MFU). The forward pass is a third of it.

use super::config::DogeConfig;
use super::params::{param_specs, Kind};

/// Weights used in matrix products per token (see the module comment).
pub fn matmul_weights_per_token(cfg: &DogeConfig) -> u64 {
    let mut n: u64 = 0;
    for spec in param_specs(cfg) {
        let count: u64 = spec.shape.iter().map(|&d| d as u64).product();
        n += match spec.kind {
            Kind::Linear => count,
            // The rank-1 experts' rows: only the k retrieved ones are multiplied.
            Kind::ExpertEmbedding => (cfg.num_experts_per_tok * cfg.hidden_size) as u64,
            _ => 0,
        };
    }
    if cfg.tie_word_embeddings {
        // The head reuses the embedding matrix, which `param_specs` lists once as an embedding.
        n += (cfg.vocab_size * cfg.hidden_size) as u64;
    }
    n
}

/// FLOPs of one training step (forward + backward) per token, at context length `seq_len`.
pub fn train_flops_per_token(cfg: &DogeConfig, seq_len: usize) -> f64 {
    let n = matmul_weights_per_token(cfg) as f64;
    let attention =
        (cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim()) as f64 * seq_len as f64;
    6.0 * n + 12.0 * attention
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::presets::{DOGE_20M, DOGE_MOE_80M};

    #[test]
    fn doge_20m_counts_by_hand() {
        // Doge-20M (spec 3.2): V 32768, d 256, ff 512, 8 layers, H 2, Hkv 1, hd 128, tied.
        // Per layer: q 256·256, k 128·256, v 128·256, dt_proj 1·128 (out = Hkv),
        // o 256·256, gate/up 512·256 each, down 256·512.
        let cfg = DOGE_20M.config();
        let (d, ff, hd) = (256u64, 512u64, 128u64);
        let per_layer = d * 2 * hd
            + 2 * (d * hd)
            + hd * cfg.num_key_value_heads as u64
            + 2 * hd * d
            + 3 * d * ff;
        let expected = 8 * per_layer + 32768 * d;
        assert_eq!(matmul_weights_per_token(&cfg), expected);
        let attention = 12.0 * 8.0 * 2.0 * 128.0 * 2048.0;
        assert_eq!(
            train_flops_per_token(&cfg, 2048),
            6.0 * expected as f64 + attention
        );
    }

    #[test]
    fn moe_counts_only_the_retrieved_experts() {
        let cfg = DOGE_MOE_80M.config();
        let mut dense = cfg.clone();
        dense.is_moe = false;
        let extra = matmul_weights_per_token(&cfg) - matmul_weights_per_token(&dense);
        // Router (d → 2·√E keys) plus k experts of down+up rows of d each, per layer.
        let keys = 2 * (cfg.num_experts as f64).sqrt() as u64;
        let router = keys * cfg.hidden_size as u64;
        let experts = 2 * (cfg.num_experts_per_tok * cfg.hidden_size) as u64;
        assert_eq!(extra, cfg.num_hidden_layers as u64 * (router + experts));
    }
}
