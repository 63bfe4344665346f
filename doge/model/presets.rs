//! The named model sizes of the seed (spec 3.3 and 7.1) as compile-time constants.
//!
//! Each preset is checked by const assertions, so a typo in a dim fails the build rather than a run.
//! The model itself takes its dims at run time (`DogeConfig`); presets only fill one in.

use super::config::{DogeConfig, RopeParameters};

/// A preset's dims. MoE presets are their dense family plus routed experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub keep_window_size: usize,
    pub max_position_embeddings: usize,
    /// 0 for a dense model.
    pub num_experts: usize,
    pub num_experts_per_tok: usize,
}

const fn isqrt(n: usize) -> usize {
    let mut k = 0;
    while (k + 1) * (k + 1) <= n {
        k += 1;
    }
    k
}

impl Preset {
    pub const fn is_moe(&self) -> bool {
        self.num_experts > 0
    }

    pub const fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The build-time checks; `const _: () = P.check();` turns a failure into a compile error.
    pub const fn check(&self) {
        assert!(self.num_attention_heads > 0 && self.num_key_value_heads > 0);
        assert!(
            self.head_dim() * self.num_attention_heads == self.hidden_size,
            "heads must divide hidden_size"
        );
        assert!(
            self.num_attention_heads
                .is_multiple_of(self.num_key_value_heads),
            "kv heads must divide heads"
        );
        assert!(
            self.head_dim().is_multiple_of(2),
            "rotary needs an even head dim"
        );
        assert!(self.keep_window_size > 0 && self.keep_window_size <= self.max_position_embeddings);
        if self.is_moe() {
            let k = isqrt(self.num_experts);
            assert!(
                self.num_experts_per_tok > 0 && self.num_experts_per_tok <= k * k,
                "top-k exceeds reachable experts"
            );
        } else {
            assert!(self.num_experts_per_tok == 0);
        }
    }

    const fn dense(
        name: &'static str,
        d: usize,
        ff: usize,
        layers: usize,
        h: usize,
        kv: usize,
    ) -> Self {
        Preset {
            name,
            vocab_size: 32768,
            hidden_size: d,
            intermediate_size: ff,
            num_hidden_layers: layers,
            num_attention_heads: h,
            num_key_value_heads: kv,
            keep_window_size: 2048,
            max_position_embeddings: 2048,
            num_experts: 0,
            num_experts_per_tok: 0,
        }
    }

    const fn with_experts(self, name: &'static str, experts: usize, per_tok: usize) -> Self {
        Preset {
            name,
            num_experts: experts,
            num_experts_per_tok: per_tok,
            ..self
        }
    }

    /// The full config, with the seed's shared settings (tied embeddings, dynamic-NTK RoPE, Doge
    /// tokenizer ids).
    pub fn config(&self) -> DogeConfig {
        let d = DogeConfig::default();
        DogeConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads,
            keep_window_size: self.keep_window_size,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: true,
            rope: RopeParameters {
                rope_type: "dynamic".into(),
                rope_theta: 10_000.0,
                factor: Some(4.0),
                original_max_position_embeddings: Some(self.max_position_embeddings),
            },
            is_moe: self.is_moe(),
            num_experts: if self.is_moe() {
                self.num_experts
            } else {
                d.num_experts
            },
            num_experts_per_tok: if self.is_moe() {
                self.num_experts_per_tok
            } else {
                d.num_experts_per_tok
            },
            bos_token_id: Some(0),
            eos_token_id: Some(1),
            pad_token_id: Some(2),
            ..d
        }
    }
}

pub const DOGE_20M: Preset = Preset::dense("doge-20m", 256, 512, 8, 2, 1);
pub const DOGE_60M: Preset = Preset::dense("doge-60m", 512, 1024, 16, 4, 2);
pub const DOGE_160M: Preset = Preset::dense("doge-160m", 768, 1536, 24, 6, 3);
pub const DOGE_320M: Preset = Preset::dense("doge-320m", 1024, 2048, 32, 8, 4);
/// Seed table: n_experts 512, 1 head x 2 experts per head.
pub const DOGE_MOE_20M: Preset = DOGE_20M.with_experts("doge-moe-20m", 512, 2);
/// Seed table: n_experts 1024, 2 heads x 4.
pub const DOGE_MOE_80M: Preset = DOGE_60M.with_experts("doge-moe-80m", 1024, 8);
/// Seed table: n_experts 1536, 3 heads x 6.
pub const DOGE_MOE_220M: Preset = DOGE_160M.with_experts("doge-moe-220m", 1536, 18);
/// Seed table: n_experts 2048, 4 heads x 8.
pub const DOGE_MOE_500M: Preset = DOGE_320M.with_experts("doge-moe-500m", 2048, 32);
/// A model that trains on a laptop CPU in minutes; its keep window is shorter than the
/// quick-start sequence length so the dynamic-mask top-k is exercised.
pub const DOGE_TINY: Preset = Preset {
    name: "doge-tiny",
    vocab_size: 4096,
    hidden_size: 128,
    intermediate_size: 256,
    num_hidden_layers: 4,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    keep_window_size: 128,
    max_position_embeddings: 2048,
    num_experts: 0,
    num_experts_per_tok: 0,
};

pub const PRESETS: [Preset; 9] = [
    DOGE_TINY,
    DOGE_20M,
    DOGE_MOE_20M,
    DOGE_60M,
    DOGE_MOE_80M,
    DOGE_160M,
    DOGE_MOE_220M,
    DOGE_320M,
    DOGE_MOE_500M,
];

const _: () = {
    let mut i = 0;
    while i < PRESETS.len() {
        PRESETS[i].check();
        i += 1;
    }
};

/// Looks a preset up by name, case-insensitively (`Doge-60M` and `doge-60m` both work).
pub fn preset(name: &str) -> Option<Preset> {
    PRESETS
        .iter()
        .copied()
        .find(|p| p.name.eq_ignore_ascii_case(name))
}

pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec 3.3, "A tied" column.
    #[test]
    fn parameter_counts_match_the_spec() {
        assert_eq!(DOGE_20M.config().num_parameters(), 13_118_728);
        assert_eq!(DOGE_60M.config().num_parameters(), 54_571_552);
        assert_eq!(DOGE_160M.config().num_parameters(), 152_676_168);
        assert_eq!(DOGE_320M.config().num_parameters(), 335_750_272);
        assert_eq!(DOGE_MOE_20M.config().num_parameters(), 15_305_992);
        assert_eq!(DOGE_MOE_80M.config().num_parameters(), 71_873_056);
        assert_eq!(DOGE_MOE_220M.config().num_parameters(), 210_736_968);
        assert_eq!(DOGE_MOE_500M.config().num_parameters(), 472_917_120);
    }

    #[test]
    fn untied_counts_match_the_spec() {
        let mut c = DOGE_20M.config();
        c.tie_word_embeddings = false;
        assert_eq!(c.num_parameters(), 21_507_336);
    }
}
