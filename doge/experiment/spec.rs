//! `ModelSpec` -> `DogeConfig`: a preset, a checkpoint's config.json or explicit dims, with the
//! spec's fields written on top.

use std::path::Path;

use crate::model::{preset, DogeConfig};

use super::types::ModelSpec;

/// Why a model spec gives no config: the key at fault and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub key: &'static str,
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`model.{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for SpecError {}

fn spec_err(key: &'static str, message: impl Into<String>) -> SpecError {
    SpecError {
        key,
        message: message.into(),
    }
}

/// The dims a spec without a preset or checkpoint must write.
pub const REQUIRED_DIMS: [&str; 5] = ["vocab", "hidden", "intermediate", "layers", "heads"];

/// `init` values starting like this are local paths; anything else is a hub id.
pub fn is_local(s: &str) -> bool {
    s.starts_with("./") || s.starts_with("../") || s.starts_with('/') || s == "." || s == ".."
}

impl ModelSpec {
    /// The config this spec describes, relative paths taken from `base_dir`. `Ok(None)`: the dims
    /// come from a hub checkpoint that is only known once downloaded.
    pub fn to_config(&self, base_dir: &Path) -> Result<Option<DogeConfig>, SpecError> {
        let mut cfg = if let Some(name) = &self.preset {
            preset(name)
                .ok_or_else(|| spec_err("preset", format!("unknown preset `{name}`")))?
                .config()
        } else if let Some(init) = &self.init {
            if !is_local(init) {
                return Ok(None);
            }
            // The layout (transformers or SmallDoge) is read from the checkpoint's tensors.
            crate::checkpoint::read_config(&base_dir.join(init))
                .map_err(|e| spec_err("init", e.to_string()))?
        } else {
            let missing: Vec<&str> = REQUIRED_DIMS
                .iter()
                .zip([
                    self.vocab,
                    self.hidden,
                    self.intermediate,
                    self.layers,
                    self.heads,
                ])
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| *k)
                .collect();
            if !missing.is_empty() {
                return Err(spec_err(
                    "preset",
                    format!("the model needs a preset, an `init` checkpoint, or explicit dims; missing {}", missing.join(", ")),
                ));
            }
            // Explicit dims share the seed's settings (tied, dynamic-NTK RoPE, Doge tokenizer ids).
            let mut c = crate::model::presets::DOGE_20M.config();
            c.num_key_value_heads = self.heads.unwrap_or(1);
            c
        };
        if let Some(layout) = self.layout {
            if self.init.is_some() && cfg.layout != layout {
                return Err(spec_err(
                    "layout",
                    format!(
                        "the init checkpoint is in the {} layout, not {layout}; the layouts compute \
                         different functions, so drop `layout` or start from a {} checkpoint",
                        cfg.layout,
                        layout.name()
                    ),
                ));
            }
            cfg.layout = layout;
        }
        self.apply(&mut cfg);
        Ok(Some(cfg))
    }

    fn apply(&self, c: &mut DogeConfig) {
        let set = |dst: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut c.vocab_size, self.vocab);
        set(&mut c.hidden_size, self.hidden);
        set(&mut c.intermediate_size, self.intermediate);
        set(&mut c.num_hidden_layers, self.layers);
        set(&mut c.num_attention_heads, self.heads);
        set(&mut c.num_key_value_heads, self.kv_heads);
        set(&mut c.keep_window_size, self.keep_window_size);
        if let Some(m) = self.max_positions {
            c.max_position_embeddings = m;
            if c.rope.original_max_position_embeddings.is_some() {
                c.rope.original_max_position_embeddings = Some(m);
            }
        }
        if let Some(t) = self.rope_theta {
            c.rope.rope_theta = t;
        }
        if let Some(t) = self.tie {
            c.tie_word_embeddings = t;
        }
        if let Some(b) = self.attention_bias {
            c.attention_bias = b;
        }
        if let Some(b) = self.mlp_bias {
            c.mlp_bias = b;
        }
        match self.experts {
            Some(0) => c.is_moe = false,
            Some(e) => {
                c.is_moe = true;
                c.num_experts = e;
            }
            None => {}
        }
        set(&mut c.num_experts_per_tok, self.experts_per_tok);
    }

    /// This spec with every dim spelled out from `cfg` (the resolved form).
    pub fn filled(&self, cfg: &DogeConfig) -> ModelSpec {
        ModelSpec {
            preset: self.preset.clone(),
            init: self.init.clone(),
            vocab: Some(cfg.vocab_size),
            hidden: Some(cfg.hidden_size),
            intermediate: Some(cfg.intermediate_size),
            layers: Some(cfg.num_hidden_layers),
            heads: Some(cfg.num_attention_heads),
            kv_heads: Some(cfg.num_key_value_heads),
            keep_window_size: Some(cfg.keep_window_size),
            max_positions: Some(cfg.max_position_embeddings),
            rope_theta: Some(cfg.rope.rope_theta),
            tie: Some(cfg.tie_word_embeddings),
            attention_bias: Some(cfg.attention_bias),
            mlp_bias: Some(cfg.mlp_bias),
            experts: Some(if cfg.is_moe { cfg.num_experts } else { 0 }),
            experts_per_tok: Some(if cfg.is_moe {
                cfg.num_experts_per_tok
            } else {
                0
            }),
            // Only a non-default layout is spelled out, so native runs keep their ids.
            layout: (cfg.layout != crate::model::Layout::Transformers).then_some(cfg.layout),
        }
    }
}

/// The checks of the model's dims, each naming the spec key to fix (`heads`, `kv-heads`, ...).
pub fn check_dims(c: &DogeConfig) -> Vec<SpecError> {
    let mut out = Vec::new();
    let dims = [
        ("vocab", c.vocab_size),
        ("hidden", c.hidden_size),
        ("intermediate", c.intermediate_size),
        ("layers", c.num_hidden_layers),
        ("heads", c.num_attention_heads),
        ("kv-heads", c.num_key_value_heads),
        ("keep-window-size", c.keep_window_size),
        ("max-positions", c.max_position_embeddings),
    ];
    for (k, v) in dims {
        if v == 0 {
            out.push(spec_err(k, format!("`{k}` must be at least 1")));
        }
    }
    if !out.is_empty() {
        return out;
    }
    let (h, kv, d) = (c.num_attention_heads, c.num_key_value_heads, c.hidden_size);
    if d % h != 0 {
        out.push(spec_err(
            "heads",
            format!("{h} heads do not divide hidden size {d}"),
        ));
    } else if (d / h) % 2 != 0 {
        out.push(spec_err(
            "heads",
            format!(
                "head dim {d}/{h} = {} is odd; rotary embeddings need an even one",
                d / h
            ),
        ));
    }
    if h % kv != 0 {
        out.push(spec_err(
            "kv-heads",
            format!("{kv} kv heads do not divide {h} attention heads"),
        ));
    }
    if c.is_moe {
        let k = c.num_router_keys();
        if c.num_experts_per_tok == 0 || c.num_experts_per_tok > k * k {
            out.push(spec_err(
                "experts-per-tok",
                format!(
                    "{} experts per token cannot be chosen: {} experts give {k}x{k} = {} reachable by the router",
                    c.num_experts_per_tok,
                    c.num_experts,
                    k * k
                ),
            ));
        }
    }
    if out.is_empty() {
        if let Err(e) = c.validate() {
            out.push(spec_err("preset", e.to_string()));
        }
    }
    out
}
