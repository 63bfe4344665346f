//! The experiment as typed values: what the runner reads after a KDL file is resolved.
//!
//! Keys are kebab-case so that a KDL node name, a JSON key and a `--set` path segment are the same
//! string. Every field that has a sensible default declares it here, so the resolved experiment
//! (and its run id) spells out every value that the runner uses.
//!
//! Schema extensions read by the KDL mapping (`schema.rs`):
//! - `x-kdl-arg`: the field that a node's first argument sets (`stage "sft"` sets `kind`).
//! - `x-path`: `local` (always a path), `local-or-hub` (a path when it starts with `./`, `../`
//!   or `/`, else a Hugging Face hub id) or `local-or-url` (a path unless it is a `scheme://` URL).
//!   Local paths are rebased onto the top experiment file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One experiment: a model, its data and the stages that train or evaluate it, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "Doge experiment")]
pub struct Experiment {
    /// Short name (letters, digits, `-`, `_`, `.`) of the experiment in the registry.
    pub name: String,
    /// Free text for the reader; not part of the run id.
    #[serde(default)]
    pub description: String,
    /// Seed of weight init, data order within a stage and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// `auto` (CUDA when built with it and present, else CPU), `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Matmul precision: `f32`, or `bf16` (autocast: matmuls in bf16, float32 master weights and
    /// optimizer state, as the seed trains on GPUs).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// The registry: a directory (run directories and `doge.sqlite`, relative to the experiment
    /// file), or a database server (`postgres://USER@HOST[:PORT]/DB`; run directories then go
    /// under `runs-dir`). Unset: the database is `$DOGE_REGISTRY` when set, else
    /// `registry/doge.sqlite` in the current directory. Not part of the run id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-path" = "local-or-url"))]
    pub registry: Option<String>,
    /// Where run directories (checkpoints) go when the registry is a server (default `registry`
    /// in the current directory); on a cluster, a filesystem every node sees. Not part of the run
    /// id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-path" = "local"))]
    pub runs_dir: Option<String>,
    /// SLURM resources of each run, for `doge exp plan --slurm`. Not part of the run id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<Slurm>,
    pub model: ModelSpec,
    /// tokenizer.json path, or a hub id whose tokenizer.json is used.
    #[serde(default = "default_tokenizer")]
    #[schemars(extend("x-path" = "local-or-hub"))]
    pub tokenizer: String,
    /// The data of every stage that does not have its own `data` block.
    #[serde(default)]
    pub data: Data,
    /// Stages run in file order; each starts from the weights the previous one ended with.
    #[serde(rename = "stage")]
    pub stages: Vec<Stage>,
    /// Expands this experiment into several runs (`doge exp plan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Sweep>,
    /// Directory of the top experiment file: relative paths above are relative to it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// The dtype matrix products run in during training.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// The autocast dtype (None = float32 throughout).
    pub fn matmul_dtype(&self) -> Option<candle_core::DType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(candle_core::DType::BF16),
        }
    }
}

/// The model: a preset, explicit dims, or a checkpoint to start from, with per-field overrides.
///
/// After resolution every dim is filled in, except when the dims come from a hub checkpoint
/// that has not been downloaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(extend("x-kdl-arg" = "preset"))]
pub struct ModelSpec {
    /// A name from `doge::model::PRESETS` (`doge-20m`, `doge-moe-80m`, `doge-tiny`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Start from these weights: a checkpoint directory or a hub id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-path" = "local-or-hub"))]
    pub init: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<usize>,
    /// Dynamic-mask attention top-k width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_window_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_positions: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// Tie the output head to the embedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_bias: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_bias: Option<bool>,
    /// Routed experts of every layer's CDMoE; 0 = dense MLP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts_per_tok: Option<usize>,
    /// Which published Doge layout the model computes and is saved in: `transformers` (the
    /// native DogeForCausalLM, the default) or `smalldoge` (the SmallDoge hub repos' remote code).
    /// An `init` checkpoint brings its own; naming another is an error (there is no exact
    /// conversion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<crate::model::Layout>,
}

/// Where the tokens come from and how they are cut into sequences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Data {
    /// Sources, mixed by weight.
    #[serde(rename = "source", default)]
    pub sources: Vec<Source>,
    /// Tokens per training sequence (`max_length` of DPO).
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Concatenate documents into full sequences (else one truncated document per sequence).
    #[serde(default = "yes")]
    pub packing: bool,
    /// Examples held out from the mix for evaluation loss.
    #[serde(default = "default_test_examples")]
    pub test_examples: usize,
    #[serde(default = "default_seed")]
    pub shuffle_seed: u64,
    /// Memory for preparing the data (batches in flight, one shuffle bucket), e.g. "256MiB" or
    /// "4GiB" (default 1GiB). The prepared rows do not depend on it, nor does the run id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

impl Data {
    /// `memory` in bytes (checked when the experiment is validated).
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory
            .as_deref()
            .and_then(|m| crate::data::cli::parse_size(m).ok())
    }
}

impl Default for Data {
    fn default() -> Self {
        Data {
            sources: Vec::new(),
            seq_len: default_seq_len(),
            packing: true,
            test_examples: default_test_examples(),
            shuffle_seed: default_seed(),
            memory: None,
        }
    }
}

/// One corpus of the mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(extend("x-kdl-arg" = "from"))]
pub struct Source {
    /// A local file or directory (`./`, `../` or `/`), or a hub dataset id.
    #[schemars(extend("x-path" = "local-or-hub"))]
    pub from: String,
    /// Share of the mix; weights are normalised over the sources.
    #[serde(default = "one")]
    pub weight: f64,
    /// Hub dataset configuration (e.g. `fineweb-edu-dedup` of smollm-corpus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    #[serde(default = "default_split")]
    pub split: String,
    /// Column to read; unset = the stage's usual one (`text`, `messages`, `chosen`/`rejected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    /// Next-token loss over the data.
    Pretrain,
    /// Supervised fine-tuning on chats (loss on assistant turns).
    Sft,
    /// Direct preference optimisation against a frozen copy of the starting weights.
    Dpo,
    /// Benchmarks and held-out loss; trains nothing.
    Eval,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Pretrain => "pretrain",
            StageKind::Sft => "sft",
            StageKind::Dpo => "dpo",
            StageKind::Eval => "eval",
        }
    }

    pub fn trains(self) -> bool {
        self != StageKind::Eval
    }
}

/// One step of the pipeline. Training keys have no meaning in an `eval` stage (and are rejected
/// there), `beta` only in `dpo`, `tasks` only in `eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(extend("x-kdl-arg" = "kind"))]
pub struct Stage {
    pub kind: StageKind,
    /// Names the stage for `extends` and `--set stage.NAME.key`; defaults to the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Start from this checkpoint instead of the previous stage's weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-path" = "local-or-hub"))]
    pub init: Option<String>,
    /// This stage's data, merged over the experiment's `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
    /// Peak learning rate (the schedule multiplies it). Required for training stages.
    #[serde(default)]
    pub lr: f64,
    #[serde(default)]
    pub optimizer: AdamW,
    #[serde(default)]
    pub schedule: Schedule,
    /// Sequences per forward pass.
    #[serde(default = "one_usize")]
    pub batch_size: usize,
    /// Forward passes per optimizer step.
    #[serde(default = "one_usize")]
    pub grad_accum: usize,
    /// Length of the stage: exactly one of `max-steps`, `max-tokens`, `epochs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<f64>,
    /// Max global gradient norm; `#null` turns clipping off.
    #[serde(default = "default_grad_clip")]
    pub grad_clip: Option<f64>,
    /// Optimizer steps between held-out evaluations (0 = only at the end).
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// Optimizer steps between checkpoints (0 = only at the end).
    #[serde(default = "default_save_every")]
    pub save_every: u64,
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Checkpoints kept besides the final one (0 = keep all).
    #[serde(default = "default_keep_last")]
    pub keep_last: usize,
    /// DPO temperature (TRL default 0.1); `dpo` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// Benchmarks to run; `eval` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
    /// Tasks written out in full (lm-eval's task keys in kebab-case); `eval` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task: Vec<EvalTask>,
}

/// An evaluation task written in KDL: lm-eval's task-file keys in kebab-case (`doc-to-text` =
/// `doc_to_text`), read by the same code as a task YAML (doge/eval/taskfile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(extend("x-kdl-arg" = "task"))]
pub struct EvalTask {
    /// The task's name (positional: `task "sciq" { ... }`).
    pub task: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag: Vec<String>,
    /// Hub dataset id, or a local folder of rows (`./rows/sciq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<String>,
    /// Row files per split (`data-files validation="rows/sciq.jsonl"`): lm-eval's
    /// `dataset_kwargs.data_files`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub data_files: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_split: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_split: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot_split: Option<String>,
    pub output_type: EvalOutputType,
    /// A row field's name or a Jinja template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_to_text: Option<String>,
    /// A row field's name or a Jinja template (rendering digits means a choice index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_to_target: Option<String>,
    /// The gold choice's index, when it is the same for every row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_index: Option<u32>,
    /// A row field's name or a Jinja template that renders a list (`"{{ [a, b] }}"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_to_choice: Option<String>,
    /// The same choices for every row (`choices "yes" "no"`), instead of `doc-to-choice`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_delimiter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot_delimiter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_fewshot: Option<u32>,
    /// `first_n` takes the pool's first rows as examples instead of a seeded draw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot_sampler: Option<FewshotSampler>,
    /// Metrics (repeated nodes: `metric "acc"` `metric "acc_norm"`); default lm-eval's for the
    /// output type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric: Vec<EvalMetric>,
    /// `generate_until`: stop sequences (default: the few-shot delimiter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub until: Vec<String>,
    /// `generate_until`: new tokens at most (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gen_toks: Option<u32>,
    /// Answer extraction pipelines of `generate_until` (lm-eval's `filter_list`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<EvalFilter>,
    /// Start every sequence with the beginning-of-sequence token (#true) or never (#false);
    /// unset: as the tokenizer encodes (lm-eval's behaviour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_bos: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvalOutputType {
    MultipleChoice,
    Loglikelihood,
    LoglikelihoodRolling,
    GenerateUntil,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FewshotSampler {
    Default,
    FirstN,
}

/// One metric of an evaluation task (lm-eval's `metric_list` entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(extend("x-kdl-arg" = "metric"))]
pub struct EvalMetric {
    /// acc, acc_norm, acc_bytes, acc_mutual_info, exact_match, perplexity, word_perplexity,
    /// byte_perplexity, bits_per_byte.
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub higher_is_better: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_case: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_punctuation: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_numbers: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regexes_to_ignore: Vec<String>,
}

/// A named answer-extraction pipeline: `filter "strict" { step "regex" regex-pattern="..." }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(extend("x-kdl-arg" = "name"))]
pub struct EvalFilter {
    pub name: String,
    #[serde(default)]
    pub step: Vec<EvalFilterStep>,
}

/// One step of a filter: regex, take_first, lowercase, uppercase, remove_whitespace or map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(extend("x-kdl-arg" = "function"))]
pub struct EvalFilterStep {
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_select: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub mapping_dict: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
}

/// A task file written in KDL: one or more `task` nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaskFile {
    pub task: Vec<EvalTask>,
}

impl Stage {
    /// The name `extends` and `--set` use for this stage.
    pub fn id(&self) -> &str {
        self.name.as_deref().unwrap_or(self.kind.as_str())
    }
}

/// AdamW (decoupled weight decay); defaults are torch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdamW {
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            betas: default_betas(),
            eps: default_eps(),
            weight_decay: default_weight_decay(),
        }
    }
}

/// Learning-rate multiplier over the stage's optimizer steps; warmup and decay are fractions of
/// the stage's steps, `min-lr-rate` a fraction of `lr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(extend("x-kdl-arg" = "kind"))]
pub enum Schedule {
    /// Warmup-stable-decay, linear ramps (transformers `get_wsd_schedule`).
    Wsd {
        #[serde(default)]
        warmup: f64,
        #[serde(default)]
        decay: f64,
        #[serde(default, rename = "min-lr-rate")]
        min_lr_rate: f64,
    },
    /// Linear warmup then cosine to `min-lr-rate` (transformers `cosine_with_min_lr`).
    Cosine {
        #[serde(default)]
        warmup: f64,
        #[serde(default, rename = "min-lr-rate")]
        min_lr_rate: f64,
    },
    /// Linear warmup then constant.
    Constant {
        #[serde(default)]
        warmup: f64,
    },
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Constant { warmup: 0.0 }
    }
}

/// What each array task of `doge exp plan --slurm` asks SLURM for (one task runs one run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Slurm {
    /// `--partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--qos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// Wall-clock limit per run, in SLURM's forms: `MM`, `HH:MM:SS`, `D-HH`, `D-HH:MM:SS`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// GPUs per run (`--gpus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// CPU cores per run (`--cpus-per-task`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory per run (`--mem`, e.g. `64G`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// `--constraint` (node features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// At most this many runs at once (`--array=0-N%K`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// Log file of each task (default `<runs dir>/slurm/%x-%A_%a.out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Shell lines run before doge (`module load cuda`, `source venv/bin/activate`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    /// More `#SBATCH` options as written on the sbatch command line (`--exclusive`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sbatch: Vec<String>,
}

/// Expands an experiment into runs: the product of `grid`, the rows of `zip`, and `count`
/// samples of `random`. Keys are `--set` paths (`stage.pretrain.lr`, `seed`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Sweep {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grid: BTreeMap<String, Axis>,
    /// Axes of equal length, taken together row by row.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zip: BTreeMap<String, Axis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random: Option<RandomSweep>,
}

/// Values of a grid or zip axis: a list, or a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Axis {
    Values(Vec<serde_json::Value>),
    Range(Range),
}

/// `from`..=`to`, either every `step` or `count` evenly spaced values (geometric when `log`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Range {
    pub from: f64,
    pub to: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    #[serde(default)]
    pub log: bool,
}

/// `count` samples, from a generator seeded with `seed`, of every axis given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct RandomSweep {
    pub count: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(flatten)]
    pub axes: BTreeMap<String, RandomAxis>,
}

/// A list to choose from, or `min`..`max` (log-uniform when `log`, e.g. for learning rates;
/// whole numbers when both ends are integers and not `log`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RandomAxis {
    Choice(Vec<serde_json::Value>),
    Uniform(Uniform),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Uniform {
    pub min: serde_json::Number,
    pub max: serde_json::Number,
    #[serde(default)]
    pub log: bool,
}

fn default_seed() -> u64 {
    233
}
fn default_device() -> String {
    "auto".into()
}
fn default_tokenizer() -> String {
    "SmallDoge/Doge-tokenizer".into()
}
fn default_seq_len() -> usize {
    2048
}
fn default_test_examples() -> usize {
    1000
}
fn default_split() -> String {
    "train".into()
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_weight_decay() -> f64 {
    0.01
}
fn default_grad_clip() -> Option<f64> {
    Some(1.0)
}
fn default_eval_every() -> u64 {
    100
}
fn default_save_every() -> u64 {
    1000
}
fn default_log_every() -> u64 {
    10
}
fn default_keep_last() -> usize {
    2
}
fn one() -> f64 {
    1.0
}
fn one_usize() -> usize {
    1
}
fn yes() -> bool {
    true
}
