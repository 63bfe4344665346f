//! `doge data ...`: prepare an experiment's data, benchmark tokenization, train a tokenizer.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};

use super::config::{DataSpec, SourceSpec, TextUnit};
use super::tokenizer::{train_bpe, DogeTokenizer, TrainOptions};
use super::{
    bench, experiment_cache_root, experiment_tokenizer, prepare_report, sources, PrepareOptions,
};

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Tokenize, mix, split and store an experiment's data (a no-op when already prepared).
    Prepare(PrepareArgs),
    /// Tokenize+pack throughput (MB/s, tokens/s) on text files or folders.
    Bench(BenchArgs),
    /// Tokenizers.
    #[command(subcommand)]
    Tokenizer(TokenizerCommand),
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// The experiment file (KDL).
    pub file: PathBuf,
    /// Override a key, e.g. `--set data.seq-len=512` (repeatable, applied in order).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Only this stage (its name or kind); default: every training stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Where datasets and trained tokenizers go [default: $DOGE_DATA_DIR or runs/data].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Use only local files and the hub cache (as HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Text files or folders (e.g. ../shared/data/corpora).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Tokenizer folder; without it, a BPE of --vocab tokens is trained on the same text first.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    #[arg(long, default_value_t = 32768)]
    pub vocab: usize,
    #[arg(long, default_value_t = 2048)]
    pub seq_len: usize,
    /// One document per file instead of per blank-line block.
    #[arg(long)]
    pub whole_files: bool,
}

#[derive(Subcommand, Debug)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE with the Doge special tokens and chat template.
    Train(TrainArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Text, JSONL, JSON or Parquet files or folders.
    #[arg(required = true)]
    pub from: Vec<String>,
    /// Vocabulary size, special tokens included (at least 512).
    #[arg(long)]
    pub vocab: usize,
    /// Output folder (tokenizer.json, tokenizer_config.json, special_tokens_map.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Row field of JSONL/JSON/Parquet files.
    #[arg(long)]
    pub field: Option<String>,
}

pub fn run(args: &DataArgs) -> Result<()> {
    match &args.command {
        DataCommand::Prepare(a) => run_prepare(a),
        DataCommand::Bench(a) => run_bench(a),
        DataCommand::Tokenizer(TokenizerCommand::Train(a)) => run_train(a),
    }
}

fn run_prepare(a: &PrepareArgs) -> Result<()> {
    let exp = crate::experiment::load(&a.file, &a.set)
        .map_err(|e| anyhow!("{}:\n{e}", a.file.display()))?;
    let mut opts = PrepareOptions::new(
        a.cache
            .clone()
            .unwrap_or_else(|| experiment_cache_root(&exp)),
    );
    opts.hub.offline |= a.offline;
    opts.progress = !a.quiet;
    let stages: Vec<_> = exp
        .stages
        .iter()
        .filter(|s| s.kind.trains())
        .filter(|s| {
            a.stage
                .as_deref()
                .is_none_or(|n| s.id() == n || s.kind.as_str() == n)
        })
        .collect();
    if stages.is_empty() {
        match &a.stage {
            Some(n) => bail!("{}: no training stage named `{n}`", a.file.display()),
            None => bail!(
                "{}: no training stage, so no data to prepare",
                a.file.display()
            ),
        }
    }
    let tok = experiment_tokenizer(&exp, &opts)?;
    let mut done: Vec<DataSpec> = Vec::new();
    for stage in stages {
        let data = DataSpec::from_experiment(&exp, Some(stage));
        if done.contains(&data) {
            continue;
        }
        let p = prepare_report(&data, &tok, &opts)?;
        println!(
            "stage {}: {} {}",
            stage.id(),
            if p.reused {
                "already prepared in"
            } else {
                "prepared"
            },
            p.dir.display()
        );
        println!("{}\n", p.manifest.summary());
        done.push(data);
    }
    Ok(())
}

fn run_bench(a: &BenchArgs) -> Result<()> {
    let unit = if a.whole_files {
        TextUnit::File
    } else {
        TextUnit::Blocks
    };
    let tok = match &a.tokenizer {
        Some(p) => DogeTokenizer::load(p)?,
        None => {
            let tmp =
                std::env::temp_dir().join(format!("doge-bench-tokenizer-{}", std::process::id()));
            let t = train_on(
                &a.paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>(),
                a.vocab,
                None,
                &tmp,
            )?;
            let _ = std::fs::remove_dir_all(&tmp);
            t
        }
    };
    let r = bench::bench(&a.paths, &tok, a.seq_len, unit)?;
    println!("tokenize+pack: {r}");
    Ok(())
}

fn run_train(a: &TrainArgs) -> Result<()> {
    train_on(&a.from, a.vocab, a.field.clone(), &a.out)?;
    println!("saved {}", a.out.display());
    Ok(())
}

/// Trains on every document of the given sources and reports the time.
fn train_on(
    from: &[String],
    vocab: usize,
    field: Option<String>,
    out: &std::path::Path,
) -> Result<DogeTokenizer> {
    let mut spec = DataSpec::pretrain(
        from.iter()
            .map(|f| SourceSpec {
                field: field.clone(),
                ..SourceSpec::new(f.clone())
            })
            .collect(),
        1,
    );
    spec.test_examples = 0;
    let resolved = sources::resolve(&spec, &super::HubOptions::from_env())?;
    let start = Instant::now();
    let mut texts = Vec::new();
    for s in &resolved {
        for d in sources::read_docs(s, spec.kind)? {
            if let super::docs::Doc::Text(t) = d {
                texts.push(t);
            }
        }
    }
    let tok = train_bpe(
        texts.iter(),
        &TrainOptions {
            vocab_size: vocab,
            min_frequency: 0,
        },
        out,
    )?;
    eprintln!(
        "trained a {}-token BPE on {} documents in {:.2} s",
        tok.vocab_size(),
        texts.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(tok)
}
