//! `DogeConfig`: the fields of a Hugging Face `config.json` with `model_type: doge`.
//!
//! Reading accepts every spelling transformers has written (spec 1.2): `rope_theta`/`rope_scaling` or
//! `rope_parameters`, `torch_dtype` or `dtype`, a missing `num_key_value_heads`, unknown extra keys.
//! Writing produces the layout the checkpoint came in: transformers 5.x keys for the native layout,
//! the 4.x keys small-doge's remote `configuration_doge.py` reads (with its `auto_map`) for SmallDoge
//! layouts (spec 0, 1.2).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// RoPE settings, normalised from either the 4.x or the 5.x spelling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeParameters {
    pub rope_type: String,
    pub rope_theta: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<usize>,
}

impl Default for RopeParameters {
    fn default() -> Self {
        Self {
            rope_type: "default".into(),
            rope_theta: 10_000.0,
            factor: None,
            original_max_position_embeddings: None,
        }
    }
}

/// Which of the published Doge layouts a checkpoint is in (spec 0). They are one model with three
/// switches, so one forward serves them all: whether queries and keys are RMS-normed per head, how
/// many heads the dynamic bias has, and whether the top-k keep window applies.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Layout {
    /// Variant A, transformers' native `DogeForCausalLM`: q/k norms, `A` and `dt_proj` per
    /// key/value head.
    #[default]
    #[serde(rename = "transformers")]
    Transformers,
    /// Variant B, the SmallDoge hub repos' remote code (`trust_remote_code`): no q/k norms, `A` and
    /// `dt_proj` per attention (query) head, so the bias is not shared across a key/value group.
    #[serde(rename = "smalldoge")]
    SmallDoge,
    /// Variant C, small-doge's training-era code (Feb-Apr 2025): B's maths under other tensor names
    /// (`word_embed`, `pre_residual`, `feed_forward`, ...), the bias added to the causal mask, and no
    /// top-k window (keep_window_size only mattered with `dynamic_mask_ratio` > 0, which doge refuses).
    #[serde(rename = "smalldoge-training-era")]
    SmallDogeTrainingEra,
}

impl Layout {
    pub const ALL: [Layout; 3] = [
        Layout::Transformers,
        Layout::SmallDoge,
        Layout::SmallDogeTrainingEra,
    ];

    /// The name used in experiments, the registry and messages.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Transformers => "transformers",
            Layout::SmallDoge => "smalldoge",
            Layout::SmallDogeTrainingEra => "smalldoge-training-era",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The spec's letter for it.
    pub fn variant(self) -> char {
        match self {
            Layout::Transformers => 'A',
            Layout::SmallDoge => 'B',
            Layout::SmallDogeTrainingEra => 'C',
        }
    }

    /// Queries and keys go through `q_norm` / `k_norm` before RoPE.
    pub fn has_qk_norm(self) -> bool {
        self == Layout::Transformers
    }

    /// The dynamic bias has one row per attention head (else one per key/value head).
    pub fn bias_per_query_head(self) -> bool {
        self != Layout::Transformers
    }

    /// Rows that see more than keep_window_size keys keep only the largest biases.
    pub fn has_keep_window(self) -> bool {
        self != Layout::SmallDogeTrainingEra
    }

    /// A SmallDoge layout, read by the hub repo's own Python (`auto_map`).
    pub fn is_remote_code(self) -> bool {
        self != Layout::Transformers
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (variant {})", self.name(), self.variant())
    }
}

/// The model's hyper-parameters, as run-time values (any checkpoint's dims load).
#[derive(Debug, Clone, PartialEq)]
pub struct DogeConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Explicit head dim; `None` means hidden_size / num_attention_heads.
    pub head_dim: Option<usize>,
    pub hidden_dropout: f64,
    pub hidden_act: String,
    pub initializer_range: f64,
    pub rms_norm_eps: f64,
    pub use_cache: bool,
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
    pub rope: RopeParameters,
    pub attention_bias: bool,
    pub attention_dropout: f64,
    pub mlp_bias: bool,
    pub sliding_window: Option<usize>,
    pub keep_window_size: usize,
    pub is_moe: bool,
    pub num_experts: usize,
    pub num_experts_per_tok: usize,
    pub norm_topk_prob: bool,
    pub output_router_logits: bool,
    pub router_aux_loss_coef: f64,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
    /// The dtype the weights were saved in ("float32", "bfloat16", ...).
    pub dtype: String,
    /// Which published layout this model computes and is saved in; read from the checkpoint's
    /// tensors (`checkpoint::read_config`), not from config.json, which does not say.
    pub layout: Layout,
    /// config.json's `auto_map` (the remote-code classes of a SmallDoge hub repo), written back
    /// unchanged so the saved folder loads with `trust_remote_code` as the original did.
    pub auto_map: Option<Value>,
    /// config.json's `transformers_version`: a remote-code layout is saved with the version its
    /// code targets.
    pub transformers_version: Option<String>,
}

impl Default for DogeConfig {
    /// transformers' `DogeConfig()` defaults (spec 1.1).
    fn default() -> Self {
        Self {
            vocab_size: 32768,
            hidden_size: 1024,
            intermediate_size: 2048,
            num_hidden_layers: 32,
            num_attention_heads: 8,
            num_key_value_heads: 8,
            head_dim: None,
            hidden_dropout: 0.0,
            hidden_act: "silu".into(),
            initializer_range: 0.02,
            rms_norm_eps: 1e-6,
            use_cache: true,
            tie_word_embeddings: false,
            max_position_embeddings: 2048,
            rope: RopeParameters::default(),
            attention_bias: false,
            attention_dropout: 0.0,
            mlp_bias: false,
            sliding_window: None,
            keep_window_size: 2048,
            is_moe: false,
            num_experts: 16384,
            num_experts_per_tok: 64,
            norm_topk_prob: false,
            output_router_logits: false,
            router_aux_loss_coef: 0.001,
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
            dtype: "float32".into(),
            layout: Layout::Transformers,
            auto_map: None,
            transformers_version: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config.json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("config.json: key `{key}`: {msg}")]
    Field { key: String, msg: String },
}

fn field_err(key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        key: key.into(),
        msg: msg.into(),
    }
}

/// Typed getters over a JSON object that name the key on error.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn usize(&self, key: &str, default: usize) -> Result<usize, ConfigError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| {
                field_err(key, format!("expected a non-negative integer, found {v}"))
            }),
        }
    }
    fn opt_usize(&self, key: &str) -> Result<Option<usize>, ConfigError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.usize(key, 0).map(Some),
        }
    }
    fn opt_u32(&self, key: &str) -> Result<Option<u32>, ConfigError> {
        match self.0.get(key) {
            // transformers allows a list of eos ids; the first one is the primary.
            Some(Value::Array(a)) if !a.is_empty() => a[0]
                .as_u64()
                .map(|x| Some(x as u32))
                .ok_or_else(|| field_err(key, "expected a list of integers")),
            _ => Ok(self.opt_usize(key)?.map(|x| x as u32)),
        }
    }
    fn f64(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| field_err(key, format!("expected a number, found {v}"))),
        }
    }
    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| field_err(key, format!("expected true or false, found {v}"))),
        }
    }
    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(field_err(key, format!("expected a string, found {v}"))),
        }
    }
}

impl DogeConfig {
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Number of router keys per key set, K = floor(sqrt(E)).
    pub fn num_router_keys(&self) -> usize {
        (self.num_experts as f64).sqrt().floor() as usize
    }

    /// Parse a `config.json` text.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(text)?;
        Self::from_json(&value)
    }

    pub fn from_json(value: &Value) -> Result<Self, ConfigError> {
        let obj = value
            .as_object()
            .ok_or_else(|| field_err("<root>", "expected a JSON object"))?;
        if let Some(mt) = obj.get("model_type").and_then(Value::as_str) {
            if mt != "doge" {
                return Err(field_err(
                    "model_type",
                    format!("expected \"doge\", found \"{mt}\""),
                ));
            }
        }
        let f = Fields(obj);
        let d = DogeConfig::default();
        // small-doge's training-era kthvalue masking drops a share of keys by rank; doge computes
        // the top-k keep window only (spec 2.9).
        let ratio = f.f64("dynamic_mask_ratio", 0.0)?;
        if ratio != 0.0 {
            return Err(field_err(
                "dynamic_mask_ratio",
                format!(
                    "{ratio} masks a share of the keys by kthvalue (small-doge's training-era code), \
                     which doge does not compute; only checkpoints with dynamic_mask_ratio 0.0 load"
                ),
            ));
        }
        // The training-era config has one `hidden_bias` for every linear layer.
        let hidden_bias = f.bool("hidden_bias", false)?;
        let num_attention_heads = f.usize("num_attention_heads", d.num_attention_heads)?;
        let cfg = DogeConfig {
            vocab_size: f.usize("vocab_size", d.vocab_size)?,
            hidden_size: f.usize("hidden_size", d.hidden_size)?,
            intermediate_size: f.usize("intermediate_size", d.intermediate_size)?,
            num_hidden_layers: f.usize("num_hidden_layers", d.num_hidden_layers)?,
            num_attention_heads,
            num_key_value_heads: f.usize("num_key_value_heads", num_attention_heads)?,
            head_dim: f.opt_usize("head_dim")?,
            hidden_dropout: f.f64("hidden_dropout", d.hidden_dropout)?,
            hidden_act: f.string("hidden_act")?.unwrap_or(d.hidden_act),
            initializer_range: f.f64("initializer_range", d.initializer_range)?,
            rms_norm_eps: f.f64("rms_norm_eps", d.rms_norm_eps)?,
            use_cache: f.bool("use_cache", d.use_cache)?,
            tie_word_embeddings: f.bool("tie_word_embeddings", d.tie_word_embeddings)?,
            max_position_embeddings: f
                .usize("max_position_embeddings", d.max_position_embeddings)?,
            rope: parse_rope(obj)?,
            attention_bias: f.bool("attention_bias", hidden_bias)?,
            attention_dropout: f.f64("attention_dropout", d.attention_dropout)?,
            mlp_bias: f.bool("mlp_bias", hidden_bias)?,
            sliding_window: f.opt_usize("sliding_window")?,
            keep_window_size: f.usize("keep_window_size", d.keep_window_size)?,
            is_moe: f.bool("is_moe", d.is_moe)?,
            num_experts: f.usize("num_experts", d.num_experts)?,
            num_experts_per_tok: f.usize("num_experts_per_tok", d.num_experts_per_tok)?,
            norm_topk_prob: f.bool("norm_topk_prob", d.norm_topk_prob)?,
            output_router_logits: f.bool("output_router_logits", d.output_router_logits)?,
            router_aux_loss_coef: f.f64("router_aux_loss_coef", d.router_aux_loss_coef)?,
            bos_token_id: f.opt_u32("bos_token_id")?,
            eos_token_id: f.opt_u32("eos_token_id")?,
            pad_token_id: f.opt_u32("pad_token_id")?,
            dtype: f
                .string("dtype")?
                .or(f.string("torch_dtype")?)
                .unwrap_or(d.dtype),
            layout: Layout::Transformers,
            auto_map: obj.get("auto_map").filter(|v| !v.is_null()).cloned(),
            transformers_version: f.string("transformers_version")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the relations between dims that the model relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let h = self.num_attention_heads;
        let kv = self.num_key_value_heads;
        if h == 0 || kv == 0 {
            return Err(field_err("num_attention_heads", "heads must be at least 1"));
        }
        if !h.is_multiple_of(kv) {
            return Err(field_err(
                "num_key_value_heads",
                format!("{kv} kv heads do not divide {h} attention heads"),
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(h) {
            return Err(field_err(
                "num_attention_heads",
                format!("{h} heads do not divide hidden_size {}", self.hidden_size),
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(field_err(
                "head_dim",
                format!("rotary needs an even head dim, found {}", self.head_dim()),
            ));
        }
        if self.hidden_act != "silu" {
            return Err(field_err(
                "hidden_act",
                format!("only \"silu\" is supported, found \"{}\"", self.hidden_act),
            ));
        }
        if !matches!(self.rope.rope_type.as_str(), "default" | "dynamic") {
            return Err(field_err(
                "rope_parameters.rope_type",
                format!(
                    "only \"default\" and \"dynamic\" are supported, found \"{}\"",
                    self.rope.rope_type
                ),
            ));
        }
        if self.keep_window_size == 0 {
            return Err(field_err("keep_window_size", "must be at least 1"));
        }
        if self.is_moe {
            let k = self.num_router_keys();
            if k == 0 || self.num_experts_per_tok == 0 || self.num_experts_per_tok > k * k {
                return Err(field_err(
                    "num_experts_per_tok",
                    format!(
                        "{} experts per token cannot be chosen from {} reachable experts (num_experts {})",
                        self.num_experts_per_tok,
                        k * k,
                        self.num_experts
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The config.json of this model in its layout: what transformers 5.x writes for the native
    /// layout, what small-doge's remote `configuration_doge.py` reads for the SmallDoge ones.
    pub fn to_json(&self) -> Value {
        let mut v = match self.layout {
            Layout::Transformers => self.transformers_json(),
            Layout::SmallDoge => self.smalldoge_json(),
            Layout::SmallDogeTrainingEra => self.training_era_json(),
        };
        if let Some(hd) = self.head_dim {
            v["head_dim"] = json!(hd);
        }
        if let Some(map) = &self.auto_map {
            v["auto_map"] = map.clone();
        }
        v
    }

    /// `rope_type` and the scaling keys that are set, shared by the 4.x and 5.x spellings.
    fn rope_json(&self) -> Value {
        let mut rope = json!({"rope_type": self.rope.rope_type});
        if let Some(f) = self.rope.factor {
            rope["factor"] = json!(f);
        }
        if let Some(o) = self.rope.original_max_position_embeddings {
            rope["original_max_position_embeddings"] = json!(o);
        }
        rope
    }

    /// 4.x RoPE keys (`rope_theta` + `rope_scaling`), which small-doge's config class reads.
    fn rope_scaling_json(&self) -> Value {
        if self.rope.rope_type == "default" {
            return Value::Null;
        }
        self.rope_json()
    }

    fn smalldoge_json(&self) -> Value {
        let mut v = self.transformers_json();
        let obj = v.as_object_mut().expect("an object");
        obj.remove("rope_parameters");
        obj.insert("rope_theta".into(), json!(self.rope.rope_theta));
        obj.insert("rope_scaling".into(), self.rope_scaling_json());
        v
    }

    fn training_era_json(&self) -> Value {
        json!({
            "architectures": ["DogeForCausalLM"],
            "model_type": "doge",
            "attention_dropout": self.attention_dropout,
            "bos_token_id": self.bos_token_id,
            "dynamic_mask_ratio": 0.0,
            "eos_token_id": self.eos_token_id,
            "hidden_act": self.hidden_act,
            "hidden_bias": self.attention_bias,
            "hidden_dropout": self.hidden_dropout,
            "hidden_size": self.hidden_size,
            "initializer_range": self.initializer_range,
            "intermediate_size": self.intermediate_size,
            "is_moe": self.is_moe,
            "keep_window_size": self.keep_window_size,
            "max_position_embeddings": self.max_position_embeddings,
            "num_attention_heads": self.num_attention_heads,
            "num_experts": self.num_experts,
            "num_experts_per_tok": self.num_experts_per_tok,
            "num_hidden_layers": self.num_hidden_layers,
            "num_key_value_heads": self.num_key_value_heads,
            "pad_token_id": self.pad_token_id,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_scaling": self.rope_scaling_json(),
            "rope_theta": self.rope.rope_theta,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": self.dtype,
            "use_cache": self.use_cache,
            "vocab_size": self.vocab_size,
        })
    }

    /// The config.json that transformers (5.x) writes for this model.
    fn transformers_json(&self) -> Value {
        let mut rope = self.rope_json();
        rope["rope_theta"] = json!(self.rope.rope_theta);
        json!({
            "architectures": ["DogeForCausalLM"],
            "model_type": "doge",
            "attention_bias": self.attention_bias,
            "attention_dropout": self.attention_dropout,
            "bos_token_id": self.bos_token_id,
            "dtype": self.dtype,
            "eos_token_id": self.eos_token_id,
            "hidden_act": self.hidden_act,
            "hidden_dropout": self.hidden_dropout,
            "hidden_size": self.hidden_size,
            "initializer_range": self.initializer_range,
            "intermediate_size": self.intermediate_size,
            "is_moe": self.is_moe,
            "keep_window_size": self.keep_window_size,
            "max_position_embeddings": self.max_position_embeddings,
            "mlp_bias": self.mlp_bias,
            "norm_topk_prob": self.norm_topk_prob,
            "num_attention_heads": self.num_attention_heads,
            "num_experts": self.num_experts,
            "num_experts_per_tok": self.num_experts_per_tok,
            "num_hidden_layers": self.num_hidden_layers,
            "num_key_value_heads": self.num_key_value_heads,
            "output_router_logits": self.output_router_logits,
            "pad_token_id": self.pad_token_id,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": rope,
            "router_aux_loss_coef": self.router_aux_loss_coef,
            "sliding_window": self.sliding_window,
            "tie_word_embeddings": self.tie_word_embeddings,
            "use_cache": self.use_cache,
            "vocab_size": self.vocab_size,
        })
    }

    /// Rows of the dynamic bias: one per attention head (SmallDoge layouts) or per key/value head.
    pub fn bias_heads(&self) -> usize {
        if self.layout.bias_per_query_head() {
            self.num_attention_heads
        } else {
            self.num_key_value_heads
        }
    }

    /// Total parameter count (tied embeddings counted once).
    pub fn num_parameters(&self) -> u64 {
        let (d, ff, v) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.vocab_size as u64,
        );
        let (h, kv, hd) = (
            self.num_attention_heads as u64,
            self.num_key_value_heads as u64,
            self.head_dim() as u64,
        );
        let nb = self.bias_heads() as u64;
        let ab = self.attention_bias as u64;
        let mb = self.mlp_bias as u64;
        let attn = d * h * hd + h * hd * ab // q
            + 2 * (d * kv * hd + kv * hd * ab) // k, v
            + nb * kv * hd + nb * ab // dt_proj
            + nb // A
            + h * hd * d + d * ab // o
            + if self.layout.has_qk_norm() { 2 * hd } else { 0 }; // q_norm, k_norm
        let mlp = 2 * (d * ff + ff * mb) + ff * d + d * mb;
        let moe = if self.is_moe {
            2 * self.num_router_keys() as u64 * d + 2 * self.num_experts as u64 * d
        } else {
            0
        };
        let per_layer = attn + mlp + moe + 4 * d; // two norms, two residual vectors
        let head = if self.tie_word_embeddings { 0 } else { v * d };
        v * d + self.num_hidden_layers as u64 * per_layer + d + head
    }

    /// Parameters used per token: MoE layers use k of their E experts.
    pub fn num_active_parameters(&self) -> u64 {
        if !self.is_moe {
            return self.num_parameters();
        }
        let unused =
            (self.num_experts - self.num_experts_per_tok) as u64 * 2 * self.hidden_size as u64;
        self.num_parameters() - self.num_hidden_layers as u64 * unused
    }
}

fn parse_rope(obj: &Map<String, Value>) -> Result<RopeParameters, ConfigError> {
    let mut rope = RopeParameters::default();
    if let Some(theta) = obj.get("rope_theta").and_then(Value::as_f64) {
        rope.rope_theta = theta;
    }
    // 4.x `rope_scaling` and 5.x `rope_parameters` share their inner keys.
    for key in ["rope_scaling", "rope_parameters"] {
        let Some(v) = obj.get(key) else { continue };
        if v.is_null() {
            continue;
        }
        let inner = v
            .as_object()
            .ok_or_else(|| field_err(key, "expected an object"))?;
        if let Some(t) = inner
            .get("rope_type")
            .or(inner.get("type"))
            .and_then(Value::as_str)
        {
            rope.rope_type = t.to_string();
        }
        if let Some(t) = inner.get("rope_theta").and_then(Value::as_f64) {
            rope.rope_theta = t;
        }
        if let Some(f) = inner.get("factor").and_then(Value::as_f64) {
            rope.factor = Some(f);
        }
        if let Some(o) = inner
            .get("original_max_position_embeddings")
            .and_then(Value::as_u64)
        {
            rope.original_max_position_embeddings = Some(o as usize);
        }
    }
    Ok(rope)
}
