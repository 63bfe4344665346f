//! What to prepare: the data pipeline's own settings, independent of the experiment file format.
//!
//! `doge::experiment` maps its `data` block onto these (see [`DataSpec::from_experiment`]); tests
//! and the `bench` command build them directly.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// What the rows are for; decides how a source row becomes tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Plain next-token rows (chats are rendered to text with the chat template).
    Pretrain,
    /// Chats with a mask of the assistant's tokens.
    Sft,
    /// Prompt, chosen and rejected completions.
    Dpo,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pretrain => "pretrain",
            Kind::Sft => "sft",
            Kind::Dpo => "dpo",
        }
    }
}

/// How a plain-text file is cut into documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextUnit {
    /// The whole file is one document.
    File,
    /// Every block of lines between blank lines is a document (paragraphs, verses).
    Blocks,
}

/// How much of each source the mix takes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Budget {
    /// As much as possible without repeating any source: the source that is smallest relative to
    /// its weight is used once, the others are cut to keep the weights.
    NoRepeat,
    /// This many training tokens in all (sources repeat when they are too small).
    Tokens(u64),
    /// This many training documents in all.
    Examples(u64),
}

/// One corpus of the mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSpec {
    /// A local file or folder, or a hub dataset id (`HuggingFaceTB/smollm-corpus`).
    pub from: String,
    /// Share of the mix (normalised over the sources).
    pub weight: f64,
    /// Hub dataset configuration (`fineweb-edu-dedup`).
    pub subset: Option<String>,
    /// Hub split (`train`).
    pub split: String,
    /// Hub revision (branch, tag or commit); `main` when unset.
    pub revision: Option<String>,
    /// Field of a JSONL/JSON/Parquet row: `text`, `messages`, or `PROMPT+ANSWER` (two fields
    /// rendered as a user/assistant chat, as the seed does for cosmopedia-v2). Unset: `text`
    /// (pretrain), `messages` (SFT), `chosen`/`rejected` (DPO).
    pub field: Option<String>,
    /// How text files become documents.
    pub unit: TextUnit,
}

impl SourceSpec {
    /// A local or hub source with weight 1 and the usual defaults.
    pub fn new(from: impl Into<String>) -> Self {
        SourceSpec {
            from: from.into(),
            weight: 1.0,
            subset: None,
            split: "train".into(),
            revision: None,
            field: None,
            unit: TextUnit::Blocks,
        }
    }

    pub fn weight(mut self, w: f64) -> Self {
        self.weight = w;
        self
    }

    pub fn field(mut self, f: impl Into<String>) -> Self {
        self.field = Some(f.into());
        self
    }

    pub fn unit(mut self, u: TextUnit) -> Self {
        self.unit = u;
        self
    }

    /// A short name for tables and the manifest: the last path component or the hub id.
    pub fn name(&self) -> String {
        let base = self.from.trim_end_matches('/');
        let name = if is_local(base) {
            base.rsplit('/').next().unwrap_or(base)
        } else {
            base
        };
        match &self.subset {
            Some(s) => format!("{name}/{s}"),
            None => name.to_string(),
        }
    }
}

/// The resolved `data` block: sources and how they become rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub kind: Kind,
    pub sources: Vec<SourceSpec>,
    /// Tokens per training sequence; packed rows hold `seq_len + 1` tokens (inputs and the
    /// shifted labels).
    pub seq_len: usize,
    /// Concatenate documents into full rows (else one truncated, padded document per row).
    pub packing: bool,
    /// Documents held out of training for the evaluation loss.
    pub test_examples: usize,
    pub shuffle_seed: u64,
    pub budget: Budget,
    /// Relative local `from` paths are relative to this directory.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl DataSpec {
    /// Pretraining data with the seed's defaults (packed, seed 233, 1000 test documents).
    pub fn pretrain(sources: Vec<SourceSpec>, seq_len: usize) -> Self {
        DataSpec {
            kind: Kind::Pretrain,
            sources,
            seq_len,
            packing: true,
            test_examples: 1000,
            shuffle_seed: 233,
            budget: Budget::NoRepeat,
            base_dir: PathBuf::from("."),
        }
    }

    /// Checks what can be checked without reading anything; errors name the key.
    pub fn check(&self) -> Result<()> {
        if self.sources.is_empty() {
            bail!("data: no sources; add `source \"./path\"` (a file, a folder or a hub id) to the data block");
        }
        for (i, s) in self.sources.iter().enumerate() {
            if !(s.weight.is_finite() && s.weight > 0.0) {
                bail!(
                    "data.source[{i}] ({}): weight {} must be a positive number",
                    s.from,
                    s.weight
                );
            }
            if s.from.trim().is_empty() {
                bail!("data.source[{i}]: `from` is empty; give a path or a hub dataset id");
            }
        }
        if self.seq_len == 0 {
            bail!("data.seq-len must be at least 1");
        }
        match self.budget {
            Budget::Tokens(0) | Budget::Examples(0) => {
                bail!("data: a token or example budget of 0 leaves nothing to train on")
            }
            _ => Ok(()),
        }
    }

    /// The path of a local source.
    pub fn local_path(&self, from: &str) -> PathBuf {
        let p = Path::new(from);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Whether a source names a local path (a hub id is `owner/name` and does not exist here).
    pub fn is_local_source(&self, s: &SourceSpec) -> bool {
        is_local(&s.from) || self.local_path(&s.from).exists() || !looks_like_hub_id(&s.from)
    }

    /// The `data` block of an experiment (or of one of its stages) as the pipeline's settings.
    ///
    /// Not expressible in the experiment file yet (so left at defaults): a token/example budget
    /// (`NoRepeat`), hub revisions (`main`), and how text files split (`Blocks`).
    pub fn from_experiment(
        exp: &crate::experiment::Experiment,
        stage: Option<&crate::experiment::Stage>,
    ) -> DataSpec {
        use crate::experiment::StageKind;
        let data = match stage {
            Some(s) => exp.stage_data(s),
            None => &exp.data,
        };
        let kind = match stage.map(|s| s.kind) {
            Some(StageKind::Sft) => Kind::Sft,
            Some(StageKind::Dpo) => Kind::Dpo,
            _ => Kind::Pretrain,
        };
        DataSpec {
            kind,
            sources: data
                .sources
                .iter()
                .map(|s| SourceSpec {
                    from: s.from.clone(),
                    weight: s.weight,
                    subset: s.subset.clone(),
                    split: s.split.clone(),
                    revision: None,
                    field: s.text.clone(),
                    unit: TextUnit::Blocks,
                })
                .collect(),
            seq_len: data.seq_len,
            packing: data.packing,
            test_examples: data.test_examples,
            shuffle_seed: data.shuffle_seed,
            budget: Budget::NoRepeat,
            base_dir: exp.base_dir.clone(),
        }
    }
}

/// Paths written as paths: `./x`, `../x`, `/x`, `~/x`.
pub fn is_local(s: &str) -> bool {
    s.starts_with("./")
        || s.starts_with("../")
        || s.starts_with('/')
        || s.starts_with("~/")
        || s == "."
        || s == ".."
}

/// `owner/name` with the characters the hub allows.
pub fn looks_like_hub_id(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match s.split_once('/') {
        Some((owner, name)) => ok(owner) && ok(name),
        None => false,
    }
}
