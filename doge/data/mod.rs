//! The data pipeline: sources (local files, hub datasets) -> documents -> tokenizer (loaded or
//! trained) -> chat template -> held-out split -> weighted mix -> packed rows in memory-mapped
//! token shards with a manifest, in a directory named by a fingerprint of all inputs.
//! README.md beside this file describes sources and storage.
//!
//! The trainer's side: [`prepare_experiment`] (or [`tokenizer::ensure_tokenizer`] then
//! [`prepare()`]) gives a directory; [`TokenDataset::open`] reads its rows in order.

pub mod bench;
pub mod chat;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod docs;
pub mod encode;
pub mod hub;
pub mod manifest;
pub mod mix;
pub mod pack;
pub mod pieces;
pub mod plan;
pub mod prepare;
pub mod progress;
pub mod reader;
pub mod rng;
pub mod shards;
pub mod shuffle;
pub mod sources;
pub mod tokenizer;

use std::path::PathBuf;

use anyhow::Result;

pub use config::{Budget, DataSpec, Kind, SourceSpec, TextUnit};
pub use dataset::{DpoRow, TokenDataset};
pub use hub::HubOptions;
pub use manifest::Manifest;
pub use prepare::{
    merge_report, prepare, prepare_report, tokenize_part, PartReport, PrepareOptions, Prepared,
};
pub use tokenizer::{ensure_tokenizer, DogeTokenizer, TokenizerSpec};

use crate::experiment::{Experiment, Stage};

/// Where prepared data and trained tokenizers go unless told otherwise: `$DOGE_DATA_DIR`, else
/// `runs/data` (relative to the working directory).
pub fn default_cache_root() -> PathBuf {
    std::env::var_os("DOGE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("runs/data"))
}

/// Where an experiment's data goes: `$DOGE_DATA_DIR`, else `<registry>/data` beside the run
/// directories. `doge data prepare` and the trainer share it, so preparing ahead is reused.
pub fn experiment_cache_root(exp: &Experiment) -> PathBuf {
    std::env::var_os("DOGE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| exp.registry_dir().join("data"))
}

/// The experiment's tokenizer: loaded, downloaded, or trained (cached) from the experiment's
/// data (its top-level `data` block, else the first stage that has sources).
pub fn experiment_tokenizer(exp: &Experiment, opts: &PrepareOptions) -> Result<DogeTokenizer> {
    let spec = TokenizerSpec::parse(&exp.tokenizer, &exp.base_dir, exp.model.vocab)?;
    let data = if exp.data.sources.is_empty() {
        let stage = exp
            .stages
            .iter()
            .find(|s| s.data.as_ref().is_some_and(|d| !d.sources.is_empty()));
        DataSpec::from_experiment(exp, stage)
    } else {
        DataSpec::from_experiment(exp, None)
    };
    ensure_tokenizer(&spec, &data, &opts.cache_root, &opts.hub)
}

/// Prepares the data one stage reads (with the experiment's tokenizer) and returns the
/// tokenizer and the dataset directory. A no-op when both exist.
pub fn prepare_experiment(
    exp: &Experiment,
    stage: &Stage,
    opts: &PrepareOptions,
) -> Result<(DogeTokenizer, PathBuf)> {
    let tok = experiment_tokenizer(exp, opts)?;
    let data = DataSpec::from_experiment(exp, Some(stage));
    let dir = prepare(&data, &tok, opts)?;
    Ok((tok, dir))
}
