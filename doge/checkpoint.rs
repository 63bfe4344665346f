//! Hugging Face checkpoints: a directory with `config.json` and `model.safetensors` (or shards listed
//! in `model.safetensors.index.json`), read and written in transformers' `DogeForCausalLM` layout.
//!
//! Every tensor is checked against what the config implies before any is used, so a wrong checkpoint
//! is an error that names the tensor, never a panic deep in the forward pass.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::model::params::{param_specs, Init};
use crate::model::{DogeConfig, DogeForCausalLM};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// Files next to the weights that `convert` carries over unchanged.
pub const COMPANION_FILES: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
];

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error(
        "{path}: not a readable safetensors file ({msg}); is it truncated or still downloading?"
    )]
    Safetensors { path: PathBuf, msg: String },
    #[error("{dir}: tensor `{name}` is missing from the checkpoint (the config implies it{hint})")]
    Missing {
        dir: PathBuf,
        name: String,
        hint: String,
    },
    #[error(
        "{dir}: tensor `{name}` has shape {found:?} but config.json implies {expected:?}{hint}"
    )]
    Shape {
        dir: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        hint: String,
    },
    #[error(
        "{dir}: tensor `{name}` has dtype {dtype:?}; doge reads F32, BF16, F16 and F64 weights"
    )]
    Dtype {
        dir: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("{dir}: {count} tensor(s) the config does not use, e.g. `{first}`; is config.json from another model?")]
    Unexpected {
        dir: PathBuf,
        count: usize,
        first: String,
    },
    #[error("{dir}: this is the {layout} layout, which doge does not load; {advice}")]
    Layout {
        dir: PathBuf,
        layout: &'static str,
        advice: &'static str,
    },
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |error| CheckpointError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A model's config and its tensors by checkpoint name (`lm_head.weight` only when untied).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub config: DogeConfig,
    pub tensors: BTreeMap<String, Tensor>,
}

impl Checkpoint {
    /// The model computing with these tensors (they are shared, not copied: for training, pass
    /// tensors that are `Var`s and gradients reach them).
    pub fn model(&self) -> candle_core::Result<DogeForCausalLM> {
        let (dtype, dev) = match self.tensors.values().next() {
            Some(t) => (t.dtype(), t.device().clone()),
            None => (DType::F32, Device::Cpu),
        };
        let map: HashMap<String, Tensor> = self
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        DogeForCausalLM::load(&self.config, VarBuilder::from_tensors(map, dtype, &dev))
    }

    /// A freshly initialised model as transformers' `_init_weights` does it (spec 4), from a seed.
    pub fn init(
        config: &DogeConfig,
        seed: u64,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, config.initializer_range as f32)
            .map_err(candle_core::Error::wrap)?;
        let mut tensors = BTreeMap::new();
        for spec in param_specs(config) {
            let n: usize = spec.shape.iter().product();
            let mut values: Vec<f32> = match spec.init {
                Init::Normal | Init::NormalPaddedEmbedding => {
                    (0..n).map(|_| normal.sample(&mut rng)).collect()
                }
                Init::Zeros => vec![0.0; n],
                Init::Ones => vec![1.0; n],
            };
            if let (Init::NormalPaddedEmbedding, Some(pad)) = (spec.init, config.pad_token_id) {
                let d = spec.shape[1];
                values[pad as usize * d..(pad as usize + 1) * d].fill(0.0);
            }
            let t = Tensor::from_vec(values, spec.shape.as_slice(), dev)?.to_dtype(dtype)?;
            tensors.insert(spec.name, t);
        }
        Ok(Self {
            config: config.clone(),
            tensors,
        })
    }

    /// Reads a Hugging Face Doge directory, converting every tensor to `dtype` on `dev`.
    pub fn load(dir: &Path, dtype: DType, dev: &Device) -> Result<Self, CheckpointError> {
        let config = read_config(dir)?;
        let files = weight_files(dir)?;
        // SAFETY: the files are mapped read-only; doge never writes to a checkpoint while reading it.
        let st =
            unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }.map_err(|e| {
                CheckpointError::Safetensors {
                    path: files.first().cloned().unwrap_or_default(),
                    msg: e.to_string(),
                }
            })?;
        let stored: BTreeMap<String, (Vec<usize>, safetensors::Dtype)> = st
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, (view.shape().to_vec(), view.dtype())))
            .collect();
        detect_foreign_layout(dir, &config, &stored)?;

        let specs = param_specs(&config);
        let mut tensors = BTreeMap::new();
        for spec in &specs {
            let Some((shape, st_dtype)) = stored.get(&spec.name) else {
                return Err(CheckpointError::Missing {
                    dir: dir.to_path_buf(),
                    name: spec.name.clone(),
                    hint: missing_hint(&spec.name, &config),
                });
            };
            if *shape != spec.shape {
                return Err(CheckpointError::Shape {
                    dir: dir.to_path_buf(),
                    name: spec.name.clone(),
                    expected: spec.shape.clone(),
                    found: shape.clone(),
                    hint: shape_hint(&spec.name, &config),
                });
            }
            if !matches!(
                st_dtype,
                safetensors::Dtype::F32
                    | safetensors::Dtype::BF16
                    | safetensors::Dtype::F16
                    | safetensors::Dtype::F64
            ) {
                return Err(CheckpointError::Dtype {
                    dir: dir.to_path_buf(),
                    name: spec.name.clone(),
                    dtype: format!("{st_dtype:?}"),
                });
            }
            let t = st.load(&spec.name, dev)?.to_dtype(dtype)?;
            tensors.insert(spec.name.clone(), t);
        }
        // A tied model's file may still carry the alias; transformers ignores it, so does doge.
        let used = |name: &str| {
            tensors.contains_key(name) || (config.tie_word_embeddings && name == "lm_head.weight")
        };
        let unexpected: Vec<&String> = stored.keys().filter(|k| !used(k)).collect();
        if let Some(first) = unexpected.first() {
            return Err(CheckpointError::Unexpected {
                dir: dir.to_path_buf(),
                count: unexpected.len(),
                first: first.to_string(),
            });
        }
        Ok(Self { config, tensors })
    }

    /// Writes `config.json` and `model.safetensors` in transformers' layout, tensors cast to `dtype`.
    /// Each file is written under a temporary name and renamed, so a crash leaves no half file.
    pub fn save(&self, dir: &Path, dtype: DType) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut config = self.config.clone();
        config.dtype = dtype_name(dtype).to_string();
        let mut config_json = config.to_json();
        config_json["transformers_version"] = serde_json::json!("5.24.0");
        let text =
            serde_json::to_string_pretty(&config_json).expect("a JSON value serialises") + "\n";
        write_atomically(&dir.join(CONFIG_FILE), |p| std::fs::write(p, &text))?;

        let mut out: Vec<(String, Tensor)> = Vec::new();
        for spec in param_specs(&self.config) {
            let t = self
                .tensors
                .get(&spec.name)
                .ok_or_else(|| CheckpointError::Missing {
                    dir: dir.to_path_buf(),
                    name: spec.name.clone(),
                    hint: String::new(),
                })?;
            out.push((spec.name, t.to_dtype(dtype)?.contiguous()?));
        }
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        let weights = dir.join(WEIGHTS_FILE);
        write_atomically(&weights, |p| {
            safetensors::serialize_to_file(
                out.iter().map(|(n, t)| (n.as_str(), t)),
                Some(metadata.clone()),
                p,
            )
            .map_err(std::io::Error::other)
        })?;
        // A stale shard index would shadow the file just written.
        let index = dir.join(WEIGHTS_INDEX_FILE);
        if index.exists() {
            std::fs::remove_file(&index).map_err(io_err(&index))?;
        }
        Ok(())
    }
}

/// Parses `dir/config.json`.
pub fn read_config(dir: &Path) -> Result<DogeConfig, CheckpointError> {
    let path = dir.join(CONFIG_FILE);
    if !dir.is_dir() {
        return Err(CheckpointError::Config {
            path: dir.to_path_buf(),
            msg:
                "not a directory; pass a model directory holding config.json and model.safetensors"
                    .into(),
        });
    }
    if !path.exists() {
        return Err(CheckpointError::Config {
            path: dir.to_path_buf(),
            msg: "no config.json here; pass a Hugging Face model directory (config.json + model.safetensors)".into(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    DogeConfig::from_json_str(&text).map_err(|e| CheckpointError::Config {
        path,
        msg: e.to_string(),
    })
}

/// The safetensors files of a checkpoint: the single file, or the shards its index names.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let single = dir.join(WEIGHTS_FILE);
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join(WEIGHTS_INDEX_FILE);
    if !index.exists() {
        return Err(CheckpointError::Config {
            path: dir.to_path_buf(),
            msg: format!("neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE} is here"),
        });
    }
    let text = std::fs::read_to_string(&index).map_err(io_err(&index))?;
    let bad = |msg: String| CheckpointError::Config {
        path: index.clone(),
        msg,
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Refuses the SmallDoge layouts that differ from transformers' in math, not just names (spec 0, 2.9).
fn detect_foreign_layout(
    dir: &Path,
    cfg: &DogeConfig,
    stored: &BTreeMap<String, (Vec<usize>, safetensors::Dtype)>,
) -> Result<(), CheckpointError> {
    let old_names = [
        "word_embed",
        "pre_residual",
        "feed_forward",
        "final_layernorm",
        "pre_layernorm",
    ];
    if stored
        .keys()
        .any(|k| old_names.iter().any(|o| k.contains(o)))
    {
        return Err(CheckpointError::Layout {
            dir: dir.to_path_buf(),
            layout: "SmallDoge training-era (variant C: `word_embed` / `pre_residual` / `feed_forward` names, no q/k norm)",
            advice: "it computes a different function from transformers' DogeForCausalLM, so renaming keys is not enough",
        });
    }
    let has_attention = stored.keys().any(|k| k.contains("self_attn.q_proj"));
    let has_q_norm = stored.keys().any(|k| k.contains("self_attn.q_norm"));
    let a_per_query_head = stored
        .get("model.layers.0.self_attn.A")
        .map(|(s, _)| s.as_slice())
        == Some(&[cfg.num_attention_heads][..])
        && cfg.num_attention_heads != cfg.num_key_value_heads;
    if has_attention && (!has_q_norm || a_per_query_head) {
        return Err(CheckpointError::Layout {
            dir: dir.to_path_buf(),
            layout: "SmallDoge remote-code (variant B: no q_norm/k_norm, `A` and dt_proj per attention head)",
            advice: "it needs trust_remote_code in transformers too; doge reads the transformers-native layout (variant A)",
        });
    }
    Ok(())
}

fn missing_hint(name: &str, cfg: &DogeConfig) -> String {
    if name == "lm_head.weight" {
        return ": tie_word_embeddings is false".into();
    }
    if name.contains(".bias") {
        return ": attention_bias / mlp_bias is true".into();
    }
    if name.contains("router_gate") || name.contains("_embed.") && cfg.is_moe {
        return ": is_moe is true".into();
    }
    String::new()
}

fn shape_hint(name: &str, cfg: &DogeConfig) -> String {
    format!(
        " (config.json: vocab_size {}, hidden_size {}, intermediate_size {}, num_attention_heads {}, num_key_value_heads {}{})",
        cfg.vocab_size,
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        if name.contains("mlp.") && cfg.is_moe { format!(", num_experts {}", cfg.num_experts) } else { String::new() }
    )
}

pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        DType::F64 => "float64",
        _ => "float32",
    }
}

/// Parses `f32`, `bf16`, `f16` (and the transformers spellings).
pub fn parse_dtype(s: &str) -> Option<DType> {
    match s {
        "f32" | "float32" => Some(DType::F32),
        "bf16" | "bfloat16" => Some(DType::BF16),
        "f16" | "float16" => Some(DType::F16),
        "f64" | "float64" => Some(DType::F64),
        _ => None,
    }
}

/// Runs `write` on a temporary sibling of `path`, then renames it into place.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), CheckpointError> {
    let tmp = path.with_extension(format!(
        "{}.tmp-{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    write(&tmp).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}
