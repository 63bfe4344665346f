//! Which tokenizer an experiment uses, and getting it: a local folder, a hub repository, or one
//! trained from the experiment's own sources and cached by a fingerprint of them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::train::{train_bpe, TrainOptions};
use super::DogeTokenizer;
use crate::data::config::{is_local, looks_like_hub_id, DataSpec};
use crate::data::docs::Doc;
use crate::data::hub::{self, HubOptions};
use crate::data::{mix, sources};

/// At most this much text trains a tokenizer (the seed used 2M documents); beyond it the
/// shuffled training documents are cut, each source in proportion to its weight.
const MAX_TRAIN_BYTES: usize = 1 << 30;

/// Bump when training changes what it produces, so caches are not reused across versions.
const TRAIN_VERSION: &str = "doge-bpe-1";

#[derive(Debug, Clone, PartialEq)]
pub enum TokenizerSpec {
    /// A folder with tokenizer.json (+ tokenizer_config.json), or a tokenizer.json path.
    Path(PathBuf),
    /// A hub model repository holding tokenizer.json.
    Hub {
        id: String,
        revision: Option<String>,
    },
    /// A byte-level BPE of this size trained from the data's sources (training split only).
    Train { vocab_size: usize },
}

impl TokenizerSpec {
    /// Reads an experiment's `tokenizer` value: `train` (size = the model's vocab) or
    /// `train:SIZE`; a local path (relative to `base_dir`); or a hub id `owner/name[@revision]`.
    pub fn parse(value: &str, base_dir: &Path, model_vocab: Option<usize>) -> Result<Self> {
        let v = value.trim();
        if v == "train" || v.starts_with("train:") {
            let vocab_size = match v.strip_prefix("train:") {
                Some(n) => n.parse().with_context(|| format!("tokenizer \"{v}\": the size after `train:` is not a number"))?,
                None => match model_vocab {
                    Some(n) => n,
                    None => bail!("tokenizer \"train\" takes its size from the model's `vocab`, which is not known; write `train:SIZE`"),
                },
            };
            return Ok(TokenizerSpec::Train { vocab_size });
        }
        let local = base_dir.join(v);
        if is_local(v) || local.exists() || !looks_like_hub_id(v.split('@').next().unwrap_or(v)) {
            return Ok(TokenizerSpec::Path(local));
        }
        let (id, revision) = match v.split_once('@') {
            Some((id, rev)) => (id.to_string(), Some(rev.to_string())),
            None => (v.to_string(), None),
        };
        Ok(TokenizerSpec::Hub { id, revision })
    }
}

/// Loads the tokenizer, downloading or training it first when needed. A trained tokenizer lives
/// in `<cache_root>/tokenizers/<fingerprint>/` and is reused while the sources, the split and
/// the size are unchanged.
pub fn ensure_tokenizer(
    spec: &TokenizerSpec,
    data: &DataSpec,
    cache_root: &Path,
    hub_opts: &HubOptions,
) -> Result<DogeTokenizer> {
    match spec {
        TokenizerSpec::Path(p) => DogeTokenizer::load(p),
        TokenizerSpec::Hub { id, revision } => {
            let json = hub::model_file(id, revision.as_deref(), "tokenizer.json", hub_opts)?;
            // The config is optional on the hub; without it the Doge special-token names apply.
            let _ = hub::model_file(id, revision.as_deref(), "tokenizer_config.json", hub_opts);
            DogeTokenizer::load(&json)
        }
        TokenizerSpec::Train { vocab_size } => {
            train_cached(*vocab_size, data, cache_root, hub_opts)
        }
    }
}

fn train_cached(
    vocab_size: usize,
    data: &DataSpec,
    cache_root: &Path,
    hub_opts: &HubOptions,
) -> Result<DogeTokenizer> {
    data.check()?;
    if vocab_size < super::min_vocab_size() {
        bail!(
            "tokenizer \"train:{vocab_size}\": vocab size {vocab_size} is smaller than the 256 special tokens plus 256 byte symbols; use at least {}",
            super::min_vocab_size()
        );
    }
    let resolved = sources::resolve(data, hub_opts)?;
    let mut h = Sha256::new();
    h.update(format!(
        "{TRAIN_VERSION}\n{vocab_size}\n{}\n{}\n{}\n",
        data.kind.as_str(),
        data.test_examples,
        data.shuffle_seed
    ));
    for s in &resolved {
        h.update(format!(
            "{:?}|{:?}|{:?}|{}\n",
            s.spec.field, s.spec.unit, s.spec.subset, s.spec.weight
        ));
        for f in &s.files {
            h.update(format!("{}\n", f.sha256));
        }
    }
    let fp = format!("{:x}", h.finalize());
    let dir = cache_root.join("tokenizers").join(&fp[..16]);
    if dir.join("tokenizer.json").exists() {
        return DogeTokenizer::load(&dir);
    }
    let start = Instant::now();
    let docs: Vec<Vec<Doc>> = resolved
        .iter()
        .map(|s| sources::read_docs(s, data.kind))
        .collect::<Result<_>>()?;
    let weights: Vec<f64> = data.sources.iter().map(|s| s.weight).collect();
    let holdouts = mix::holdout(&docs, &weights, data.test_examples, data.shuffle_seed)?;
    let wsum: f64 = weights.iter().sum();
    let mut texts: Vec<String> = Vec::new();
    let mut bytes = 0usize;
    for (s, h) in holdouts.iter().enumerate() {
        let cap = (MAX_TRAIN_BYTES as f64 * weights[s] / wsum) as usize;
        let mut taken = 0usize;
        for &j in &h.train {
            let t = training_text(&docs[s][j]);
            if taken + t.len() > cap && taken > 0 {
                break;
            }
            taken += t.len();
            texts.push(t);
        }
        bytes += taken;
    }
    let tmp =
        cache_root
            .join("tokenizers")
            .join(format!(".{}-tmp-{}", &fp[..16], std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let opts = TrainOptions {
        vocab_size,
        min_frequency: 0,
    };
    train_bpe(texts.iter(), &opts, &tmp)?;
    let note = serde_json::json!({
        "trained_by": "doge data",
        "version": TRAIN_VERSION,
        "vocab_size": vocab_size,
        "fingerprint": fp,
        "documents": texts.len(),
        "bytes": bytes,
        "sources": resolved.iter().map(|s| serde_json::json!({"from": s.spec.from, "files": s.files.len(), "bytes": s.bytes()})).collect::<Vec<_>>(),
        "seconds": start.elapsed().as_secs_f64(),
    });
    std::fs::write(
        tmp.join("training.json"),
        serde_json::to_string_pretty(&note)?,
    )?;
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        // Another process finished the same tokenizer first: use theirs.
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join("tokenizer.json").exists() {
            return Err(e)
                .with_context(|| format!("moving the trained tokenizer to {}", dir.display()));
        }
    }
    eprintln!(
        "trained a {vocab_size}-token BPE on {} documents ({:.1} MB) in {:.1} s -> {}",
        texts.len(),
        bytes as f64 / 1e6,
        start.elapsed().as_secs_f64(),
        dir.display()
    );
    DogeTokenizer::load(&dir)
}

/// The text of a document that a tokenizer learns from (chats: their contents, no template).
fn training_text(doc: &Doc) -> String {
    let contents = |m: &[serde_json::Value]| {
        m.iter()
            .filter_map(|v| v.get("content").and_then(|c| c.as_str()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match doc {
        Doc::Text(t) => t.clone(),
        Doc::Chat(m) => contents(m),
        Doc::Pair {
            prompt,
            chosen,
            rejected,
        } => format!("{}\n{chosen}\n{rejected}", contents(prompt)),
    }
}
