//! The parameter tensors a `DogeConfig` implies (spec 3.1): names as in the checkpoint, shapes,
//! and how each is initialised (spec 4). Loading, saving and initialisation all read this one list.

use super::config::{DogeConfig, Layout};

/// How a tensor is initialised by transformers' `_init_weights`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// N(0, initializer_range²): every Linear and Embedding weight.
    Normal,
    /// An embedding whose `padding_idx` row is zeroed after the normal draw.
    NormalPaddedEmbedding,
    Zeros,
    Ones,
}

/// What a tensor is, for optimizers (decay groups, spec 7.1) and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Embedding,
    Linear,
    Bias,
    Norm,
    /// The DMA `A` vector.
    DynamicA,
    Residual,
    ExpertEmbedding,
}

#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    pub kind: Kind,
}

impl ParamSpec {
    fn new(name: String, shape: &[usize], init: Init, kind: Kind) -> Self {
        Self {
            name,
            shape: shape.to_vec(),
            init,
            kind,
        }
    }

    /// transformers' weight-decay rule (names with bias / norm are not decayed).
    pub fn decays(&self) -> bool {
        !matches!(self.kind, Kind::Bias | Kind::Norm)
    }
}

/// Every parameter of the model in a stable order (the checkpoint's). `lm_head.weight` is listed
/// only for untied models.
pub fn param_specs(cfg: &DogeConfig) -> Vec<ParamSpec> {
    let (v, d, ff) = (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size);
    let (h, kv, hd) = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim(),
    );
    let mut out = vec![ParamSpec::new(
        "model.embed_tokens.weight".into(),
        &[v, d],
        embedding_init(cfg),
        Kind::Embedding,
    )];
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let mut push = |suffix: &str, shape: &[usize], init: Init, kind: Kind| {
            out.push(ParamSpec::new(format!("{p}.{suffix}"), shape, init, kind))
        };
        push("input_layernorm.weight", &[d], Init::Ones, Kind::Norm);
        for (proj, rows, cols) in [
            ("q_proj", h * hd, d),
            ("k_proj", kv * hd, d),
            ("v_proj", kv * hd, d),
        ] {
            push(
                &format!("self_attn.{proj}.weight"),
                &[rows, cols],
                Init::Normal,
                Kind::Linear,
            );
            if cfg.attention_bias {
                push(
                    &format!("self_attn.{proj}.bias"),
                    &[rows],
                    Init::Zeros,
                    Kind::Bias,
                );
            }
        }
        // One bias row per key/value head (transformers) or per attention head (SmallDoge).
        let nb = cfg.bias_heads();
        push("self_attn.A", &[nb], Init::Zeros, Kind::DynamicA);
        push(
            "self_attn.dt_proj.weight",
            &[nb, kv * hd],
            Init::Normal,
            Kind::Linear,
        );
        if cfg.attention_bias {
            push("self_attn.dt_proj.bias", &[nb], Init::Zeros, Kind::Bias);
        }
        push(
            "self_attn.o_proj.weight",
            &[d, h * hd],
            Init::Normal,
            Kind::Linear,
        );
        if cfg.attention_bias {
            push("self_attn.o_proj.bias", &[d], Init::Zeros, Kind::Bias);
        }
        if cfg.layout.has_qk_norm() {
            push("self_attn.q_norm.weight", &[hd], Init::Ones, Kind::Norm);
            push("self_attn.k_norm.weight", &[hd], Init::Ones, Kind::Norm);
        }
        push("input_residual", &[d], Init::Ones, Kind::Residual);
        push(
            "post_attention_layernorm.weight",
            &[d],
            Init::Ones,
            Kind::Norm,
        );
        for (proj, rows, cols) in [
            ("gate_proj", ff, d),
            ("up_proj", ff, d),
            ("down_proj", d, ff),
        ] {
            push(
                &format!("mlp.{proj}.weight"),
                &[rows, cols],
                Init::Normal,
                Kind::Linear,
            );
            if cfg.mlp_bias {
                push(
                    &format!("mlp.{proj}.bias"),
                    &[rows],
                    Init::Zeros,
                    Kind::Bias,
                );
            }
        }
        if cfg.is_moe {
            push(
                "mlp.router_gate.weight",
                &[2 * cfg.num_router_keys(), d],
                Init::Normal,
                Kind::Linear,
            );
            push(
                "mlp.down_embed.weight",
                &[cfg.num_experts, d],
                Init::Normal,
                Kind::ExpertEmbedding,
            );
            push(
                "mlp.up_embed.weight",
                &[cfg.num_experts, d],
                Init::Normal,
                Kind::ExpertEmbedding,
            );
        }
        push("post_attention_residual", &[d], Init::Ones, Kind::Residual);
    }
    out.push(ParamSpec::new(
        "model.norm.weight".into(),
        &[d],
        Init::Ones,
        Kind::Norm,
    ));
    if !cfg.tie_word_embeddings {
        out.push(ParamSpec::new(
            "lm_head.weight".into(),
            &[v, d],
            Init::Normal,
            Kind::Linear,
        ));
    }
    out
}

/// The training-era (variant C) name of a tensor, from its name in the other layouts (spec 3.4;
/// attention tensors keep their names). Loading and saving that layout both go through it.
pub fn training_era_name(name: &str) -> String {
    const GLOBAL: [(&str, &str); 2] = [
        ("model.embed_tokens.", "model.word_embed."),
        ("model.norm.", "model.final_layernorm."),
    ];
    for (now, then) in GLOBAL {
        if let Some(rest) = name.strip_prefix(now) {
            return format!("{then}{rest}");
        }
    }
    let Some((layer, rest)) = name
        .strip_prefix("model.layers.")
        .and_then(|r| r.split_once('.'))
    else {
        return name.to_string();
    };
    const IN_LAYER: [(&str, &str); 5] = [
        ("input_layernorm.", "pre_layernorm."),
        ("post_attention_layernorm.", "post_layernorm."),
        ("mlp.", "feed_forward."),
        ("input_residual", "pre_residual.weight"),
        ("post_attention_residual", "post_residual.weight"),
    ];
    for (now, then) in IN_LAYER {
        if let Some(tail) = rest.strip_prefix(now) {
            return format!("model.layers.{layer}.{then}{tail}");
        }
    }
    name.to_string()
}

/// A tensor's name in a checkpoint of `layout`, from its name in the model.
pub fn stored_name(layout: Layout, name: &str) -> String {
    match layout {
        Layout::SmallDogeTrainingEra => training_era_name(name),
        Layout::Transformers | Layout::SmallDoge => name.to_string(),
    }
}

fn embedding_init(cfg: &DogeConfig) -> Init {
    match cfg.pad_token_id {
        Some(p) if (p as usize) < cfg.vocab_size => Init::NormalPaddedEmbedding,
        _ => Init::Normal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::presets::*;

    #[test]
    fn specs_sum_to_the_closed_form_count() {
        for p in PRESETS {
            let cfg = p.config();
            let n: u64 = param_specs(&cfg)
                .iter()
                .map(|s| s.shape.iter().product::<usize>() as u64)
                .sum();
            assert_eq!(n, cfg.num_parameters(), "{}", p.name);
        }
    }

    #[test]
    fn smalldoge_layout_counts_match_the_spec_table() {
        // spec 3.3, column "B tied": A and dt_proj per attention head, no q/k norms.
        for (p, want) in [
            (&DOGE_20M, 13_117_712u64),
            (&DOGE_MOE_20M, 15_304_976),
            (&DOGE_60M, 54_575_680),
            (&DOGE_MOE_80M, 71_877_184),
            (&DOGE_160M, 152_697_744),
            (&DOGE_MOE_220M, 210_758_544),
            (&DOGE_320M, 335_807_744),
            (&DOGE_MOE_500M, 472_974_592),
        ] {
            let mut cfg = p.config();
            cfg.layout = Layout::SmallDoge;
            assert_eq!(cfg.num_parameters(), want, "{}", p.name);
            let n: u64 = param_specs(&cfg)
                .iter()
                .map(|s| s.shape.iter().product::<usize>() as u64)
                .sum();
            assert_eq!(n, want, "{}", p.name);
        }
    }

    #[test]
    fn training_era_names_follow_the_conversion_table() {
        // spec 3.4 (transformers' convert_doge_weights_to_hf.py, read in reverse).
        for (now, then) in [
            ("model.embed_tokens.weight", "model.word_embed.weight"),
            ("model.norm.weight", "model.final_layernorm.weight"),
            (
                "model.layers.3.input_layernorm.weight",
                "model.layers.3.pre_layernorm.weight",
            ),
            (
                "model.layers.3.post_attention_layernorm.weight",
                "model.layers.3.post_layernorm.weight",
            ),
            (
                "model.layers.0.input_residual",
                "model.layers.0.pre_residual.weight",
            ),
            (
                "model.layers.0.post_attention_residual",
                "model.layers.0.post_residual.weight",
            ),
            (
                "model.layers.1.mlp.router_gate.weight",
                "model.layers.1.feed_forward.router_gate.weight",
            ),
            (
                "model.layers.1.self_attn.dt_proj.weight",
                "model.layers.1.self_attn.dt_proj.weight",
            ),
            ("lm_head.weight", "lm_head.weight"),
        ] {
            assert_eq!(training_era_name(now), then);
        }
    }
}
