//! Hugging Face checkpoints: a directory with `config.json` and `model.safetensors` (or shards listed
//! in `model.safetensors.index.json`), read and written in the layout they came in: transformers'
//! `DogeForCausalLM` (variant A), the SmallDoge hub repos' remote code (B, with its
//! `configuration_doge.py` / `modeling_doge.py` carried along), or small-doge's training-era names
//! (C). The layout is read from the tensors (spec 10.1) and kept in the config.
//!
//! Every tensor is checked against what the config implies before any is used, so a wrong checkpoint
//! is an error that names the tensor, never a panic deep in the forward pass.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::model::params::{param_specs, stored_name, Init};
use crate::model::{DogeConfig, DogeForCausalLM, Layout};

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
    #[error("{dir}: tensor `{name}`: {why}; doge does not load this checkpoint")]
    Layout {
        dir: PathBuf,
        name: String,
        why: String,
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

/// A model's config and its tensors by name in the model (`lm_head.weight` only when untied).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub config: DogeConfig,
    pub tensors: BTreeMap<String, Tensor>,
    /// The Python files config.json's `auto_map` names (a SmallDoge hub repo's remote code), by
    /// file name: written beside every save, so each checkpoint loads with `trust_remote_code` as
    /// the original did.
    pub remote_code: BTreeMap<String, Vec<u8>>,
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
            remote_code: BTreeMap::new(),
        })
    }

    /// Reads a Hugging Face Doge directory, converting every tensor to `dtype` on `dev`.
    pub fn load(dir: &Path, dtype: DType, dev: &Device) -> Result<Self, CheckpointError> {
        let (st, stored) = open_weights(dir)?;
        let config = config_for(dir, &stored)?;

        let specs = param_specs(&config);
        let mut tensors = BTreeMap::new();
        let mut used = std::collections::BTreeSet::new();
        for spec in &specs {
            let name = stored_name(config.layout, &spec.name);
            let Some((shape, st_dtype)) = stored.get(&name) else {
                return Err(CheckpointError::Missing {
                    dir: dir.to_path_buf(),
                    name,
                    hint: missing_hint(&spec.name, &config),
                });
            };
            if *shape != spec.shape {
                return Err(CheckpointError::Shape {
                    dir: dir.to_path_buf(),
                    name,
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
                    name,
                    dtype: format!("{st_dtype:?}"),
                });
            }
            let t = st.load(&name, dev)?.to_dtype(dtype)?;
            tensors.insert(spec.name.clone(), t);
            used.insert(name);
        }
        // A tied model's file may still carry the alias; transformers ignores it, so does doge.
        let used = |name: &str| {
            used.contains(name) || (config.tie_word_embeddings && name == "lm_head.weight")
        };
        let unexpected: Vec<&String> = stored.keys().filter(|k| !used(k)).collect();
        if let Some(first) = unexpected.first() {
            return Err(CheckpointError::Unexpected {
                dir: dir.to_path_buf(),
                count: unexpected.len(),
                first: first.to_string(),
            });
        }
        let remote_code = read_remote_code(dir, &config)?;
        Ok(Self {
            config,
            tensors,
            remote_code,
        })
    }

    /// Writes `config.json` and `model.safetensors` in the checkpoint's layout (and its remote
    /// code, if any), tensors cast to `dtype`. Each file is written under a temporary name and
    /// renamed, so a crash leaves no half file.
    pub fn save(&self, dir: &Path, dtype: DType) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut config = self.config.clone();
        config.dtype = dtype_name(dtype).to_string();
        let mut config_json = config.to_json();
        // The version whose classes read the file: transformers' own, or the one the remote code
        // was written against.
        config_json["transformers_version"] = serde_json::json!(match config.layout {
            Layout::Transformers => "5.24.0",
            Layout::SmallDoge | Layout::SmallDogeTrainingEra => config
                .transformers_version
                .as_deref()
                .unwrap_or(REMOTE_CODE_TRANSFORMERS),
        });
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
            out.push((
                stored_name(self.config.layout, &spec.name),
                t.to_dtype(dtype)?.contiguous()?,
            ));
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
        for (name, bytes) in &self.remote_code {
            write_atomically(&dir.join(name), |p| std::fs::write(p, bytes))?;
        }
        Ok(())
    }
}

/// The transformers release small-doge's current remote code imports from (spec 11).
const REMOTE_CODE_TRANSFORMERS: &str = "4.56.2";

type StoredTensors = BTreeMap<String, (Vec<usize>, safetensors::Dtype)>;

/// Maps a checkpoint's safetensors files and lists their tensors (name, shape, dtype).
fn open_weights(
    dir: &Path,
) -> Result<(candle_core::safetensors::MmapedSafetensors, StoredTensors), CheckpointError> {
    read_config_json(dir)?; // a missing or broken config.json is the first thing to report
    let files = weight_files(dir)?;
    // SAFETY: the files are mapped read-only; doge never writes to a checkpoint while reading it.
    let st =
        unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }.map_err(|e| {
            CheckpointError::Safetensors {
                path: files.first().cloned().unwrap_or_default(),
                msg: e.to_string(),
            }
        })?;
    let stored = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, (view.shape().to_vec(), view.dtype())))
        .collect();
    Ok((st, stored))
}

/// config.json with the layout its tensors are in.
fn config_for(dir: &Path, stored: &StoredTensors) -> Result<DogeConfig, CheckpointError> {
    let mut config = read_config_json(dir)?;
    config.layout = detect_layout(dir, stored)?;
    Ok(config)
}

/// The `.py` files an `auto_map` entry ("module.Class" or "repo--module.Class") names, read from
/// `dir`; a module that is not there is left out (transformers fetches it from the hub repo).
fn read_remote_code(
    dir: &Path,
    cfg: &DogeConfig,
) -> Result<BTreeMap<String, Vec<u8>>, CheckpointError> {
    let mut out = BTreeMap::new();
    let Some(map) = cfg.auto_map.as_ref().and_then(|m| m.as_object()) else {
        return Ok(out);
    };
    for reference in map.values().filter_map(|v| v.as_str()) {
        let local = reference.rsplit("--").next().unwrap_or(reference);
        let Some((module, _class)) = local.rsplit_once('.') else {
            continue;
        };
        let file = format!("{module}.py");
        let path = dir.join(&file);
        if !out.contains_key(&file) && path.is_file() {
            out.insert(file, std::fs::read(&path).map_err(io_err(&path))?);
        }
    }
    Ok(out)
}
/// Parses `dir/config.json` and reads the layout from the tensors' names and shapes. A folder
/// with a config alone (no weights yet) gets the layout its config suggests: training-era keys
/// mean C, an `auto_map` (remote code) B, else A.
pub fn read_config(dir: &Path) -> Result<DogeConfig, CheckpointError> {
    let mut config = read_config_json(dir)?;
    if weight_files(dir).is_err() {
        let text = std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        config.layout =
            if value.get("hidden_bias").is_some() || value.get("dynamic_mask_ratio").is_some() {
                Layout::SmallDogeTrainingEra
            } else if config.auto_map.is_some() {
                Layout::SmallDoge
            } else {
                Layout::Transformers
            };
        return Ok(config);
    }
    let (_, stored) = open_weights(dir)?;
    config_for(dir, &stored)
}

/// Parses `dir/config.json` alone (the layout left at its default).
fn read_config_json(dir: &Path) -> Result<DogeConfig, CheckpointError> {
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

/// Which layout a checkpoint's tensors are in (spec 10.1): training-era names mean C, q/k norms
/// mean A, attention without them means B. Refuses what none of them computes, naming the tensor.
fn detect_layout(dir: &Path, stored: &StoredTensors) -> Result<Layout, CheckpointError> {
    let refuse = |name: &str, why: &str| CheckpointError::Layout {
        dir: dir.to_path_buf(),
        name: name.to_string(),
        why: why.to_string(),
    };
    // The March-2025 CDMoE retrieved experts by query-key products and scaled both branches;
    // the router_gate CDMoE doge computes has no counterpart for those tensors.
    const OLD_MOE: [&str; 4] = [".queries_proj.", ".keys", ".mlp_scaling", ".moe_scaling"];
    if let Some(name) = stored
        .keys()
        .find(|k| OLD_MOE.iter().any(|o| k.contains(o)))
    {
        return Err(refuse(
            name,
            "small-doge's March-2025 CDMoE (query-key expert retrieval, `mlp_scaling` / \
             `moe_scaling`) computes a different function from the router_gate CDMoE; \
             use a checkpoint saved by small-doge after its 2025-03-17 router change",
        ));
    }
    let training_era = stored.contains_key("model.word_embed.weight")
        || stored.keys().any(|k| {
            [".pre_layernorm.", ".pre_residual.", ".feed_forward."]
                .iter()
                .any(|o| k.contains(o))
        });
    let has_attention = stored.keys().any(|k| k.contains(".self_attn.q_proj."));
    let has_qk_norm = stored.keys().any(|k| k.contains(".self_attn.q_norm."));
    Ok(match (training_era, has_attention && !has_qk_norm) {
        (true, _) if has_qk_norm => {
            let name = stored
                .keys()
                .find(|k| k.contains(".self_attn.q_norm."))
                .map(String::as_str)
                .unwrap_or_default();
            return Err(refuse(
                name,
                "training-era (variant C) names with transformers' q/k norms match no published layout",
            ));
        }
        (true, _) => Layout::SmallDogeTrainingEra,
        (false, true) => Layout::SmallDoge,
        (false, false) => Layout::Transformers,
    })
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
        " (layout {}; config.json: vocab_size {}, hidden_size {}, intermediate_size {}, num_attention_heads {}, num_key_value_heads {}{})",
        cfg.layout,
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
