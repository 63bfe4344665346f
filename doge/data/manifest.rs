//! `manifest.json` of a prepared dataset: what it holds, where, and from what.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::config::{DataSpec, Kind};
use super::shards::{Dtype, ShardFile};

/// Version of the on-disk layout; part of every fingerprint.
/// 2: SFT masks stop at the end-of-turn token (1 also covered the newlines after it).
/// 3: streaming preparation; every order is a sort by seeded per-document keys.
pub const FORMAT: u32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// sha256 of the inputs (file contents), the tokenizer and the settings; the directory is
    /// named by its first 16 hex digits.
    pub fingerprint: String,
    pub kind: Kind,
    pub seq_len: usize,
    /// Tokens per stored row: `seq_len + 1` (inputs and shifted labels); 0 for DPO (ragged).
    pub row_len: usize,
    pub packing: bool,
    pub dtype: Dtype,
    pub vocab_size: usize,
    pub bos_id: u32,
    pub eos_id: u32,
    pub pad_id: u32,
    pub tokenizer: TokenizerInfo,
    /// Rows per shard file (the last may hold fewer).
    pub rows_per_shard: u64,
    pub train: SplitInfo,
    pub test: SplitInfo,
    pub sources: Vec<SourceInfo>,
    pub settings: DataSpec,
    /// Seconds the preparation took.
    pub seconds: f64,
    /// How it ran (not part of the fingerprint: the rows do not depend on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<PrepareStats>,
}

/// How a preparation ran: its resources and what it reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareStats {
    pub input_bytes: u64,
    /// Tokenized pieces (see `doge::data::pieces`), and how many a killed run had finished.
    pub pieces: u64,
    pub pieces_reused: u64,
    pub tokenize_seconds: f64,
    /// The memory budget (bytes) and tokenizer threads.
    pub memory: u64,
    pub threads: usize,
    /// Documents through the out-of-core shuffle (training copies and test documents).
    pub shuffle_entries: u64,
    /// Peak resident memory of the process (VmHWM), where /proc tells it.
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    pub dir: String,
    pub fingerprint: String,
}

/// One split (train or test).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    pub rows: u64,
    /// Documents that went in (counting repeats).
    pub documents: u64,
    /// Document tokens stored (padding excluded).
    pub tokens: u64,
    /// Tokens cut off: the packing tail, or truncated document ends.
    pub dropped_tokens: u64,
    pub shards: Vec<ShardFile>,
    /// SFT: per-token assistant masks, same layout as `shards`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masks: Vec<ShardFile>,
    /// Unpacked rows: u32 true lengths, one per row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lens: Option<String>,
    /// DPO: u64 element offsets of the segments (prompt, chosen, rejected per row), plus the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
}

/// One source's part of the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub name: String,
    pub from: String,
    pub weight: f64,
    pub files: usize,
    pub bytes: u64,
    /// Documents read.
    pub documents: u64,
    pub test_documents: u64,
    /// Training documents in the mix, counting repeats.
    pub train_documents: u64,
    pub train_tokens: u64,
    /// Share of the mix's training tokens.
    pub share: f64,
    /// Passes over the source's training documents (above 1: repeated; below: cut).
    pub epochs: f64,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest> {
        let p = dir.join("manifest.json");
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("{}: not a prepared dataset (no manifest.json); run `doge data prepare EXPERIMENT.kdl`", dir.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: unreadable manifest", p.display()))
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let p = dir.join("manifest.json");
        std::fs::write(&p, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", p.display()))
    }

    /// The summary table printed after preparing.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let w = self
            .sources
            .iter()
            .map(|x| x.name.len())
            .max()
            .unwrap_or(6)
            .clamp(6, 40);
        let _ = writeln!(
            s,
            "{:<w$}  {:>6}  {:>9}  {:>6}  {:>10}  {:>13}  {:>7}  {:>6}",
            "source", "weight", "docs", "test", "train docs", "train tokens", "share", "epochs"
        );
        for x in &self.sources {
            let _ = writeln!(
                s,
                "{:<w$}  {:>6.2}  {:>9}  {:>6}  {:>10}  {:>13}  {:>6.2}%  {:>6.2}",
                x.name,
                x.weight,
                x.documents,
                x.test_documents,
                x.train_documents,
                x.train_tokens,
                100.0 * x.share,
                x.epochs
            );
        }
        let row = if self.row_len > 0 {
            format!(" x {} tokens", self.row_len)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "train: {} rows{row} ({} documents, {} tokens, {} dropped); test: {} rows ({} documents, {} tokens)",
            self.train.rows, self.train.documents, self.train.tokens, self.train.dropped_tokens, self.test.rows, self.test.documents, self.test.tokens
        );
        let _ = write!(
            s,
            "{} {}, {}, vocab {}, fingerprint {}",
            self.kind.as_str(),
            if self.packing { "packed" } else { "unpacked" },
            format!("{:?}", self.dtype).to_lowercase(),
            self.vocab_size,
            &self.fingerprint[..16]
        );
        s
    }
}
