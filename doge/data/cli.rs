//! `doge data ...`: prepare an experiment's data, benchmark tokenization, train a tokenizer.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};

use super::config::{DataSpec, SourceSpec, TextUnit};
use super::tokenizer::{train_bpe, DogeTokenizer, TrainOptions};
use super::{
    bench, experiment_cache_root, experiment_tokenizer, merge_report, prepare_report, sources,
    tokenize_part, PrepareOptions,
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
    /// Join the pieces that `prepare --part I/N` runs tokenized into one prepared directory.
    Merge(MergeArgs),
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
    /// Memory for preparation's buffers (batches in flight, one shuffle bucket), e.g. `256MiB`,
    /// `4GiB` [default: 1GiB]; the corpus size does not change what is used.
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Tokenizer threads [default: every core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Tokenize only part I of N of the input files (every N-th file from file I-1, e.g. one
    /// SLURM array task each: `--part $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT`),
    /// then `doge data merge` joins them.
    #[arg(long, value_parser = parse_part, value_name = "I/N")]
    pub part: Option<(usize, usize)>,
    /// Free each downloaded hub file once tokenized (its pieces keep the tokens).
    #[arg(long)]
    pub delete_raw: bool,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    #[command(flatten)]
    pub prepare: PrepareArgs,
    /// Other caches whose `pieces/` the parts wrote (when the parts did not share this cache).
    #[arg(long = "from", value_name = "DIR")]
    pub from: Vec<PathBuf>,
}

/// `256MiB`, `1GiB`, `64MB`, `1.5G`, or bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a size such as 256MiB, 4GiB or 1000000"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}`; write a size such as 256MiB or 4GiB (units B, KiB, MiB, GiB, TiB, kB, MB, GB)"
            ))
        }
    };
    Ok((n * mult) as u64)
}

fn parse_part(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{s}`: expected I/N with 1 <= I <= N, e.g. 3/16");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
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
        DataCommand::Prepare(a) => run_prepare(a, false),
        DataCommand::Merge(a) => {
            for from in &a.from {
                import_pieces(from, &cache_of(&a.prepare)?)?;
            }
            run_prepare(&a.prepare, true)
        }
        DataCommand::Bench(a) => run_bench(a),
        DataCommand::Tokenizer(TokenizerCommand::Train(a)) => run_train(a),
    }
}

/// The cache a prepare/merge command writes to.
fn cache_of(a: &PrepareArgs) -> Result<PathBuf> {
    if let Some(c) = &a.cache {
        return Ok(c.clone());
    }
    let exp = crate::experiment::load(&a.file, &a.set)
        .map_err(|e| anyhow!("{}:\n{e}", a.file.display()))?;
    Ok(experiment_cache_root(&exp))
}

/// Links (or copies) the finished file folders of `from/pieces` into `to/pieces`.
fn import_pieces(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    let src = super::pieces::pieces_root(from);
    let dst = super::pieces::pieces_root(to);
    let entries = std::fs::read_dir(&src).with_context(|| {
        format!(
            "{}: no tokenized pieces here; --from takes the cache (--cache) a `prepare --part` run used",
            src.display()
        )
    })?;
    let mut n = 0;
    for e in entries {
        let dir = e?.path();
        let target = dst.join(dir.file_name().expect("a folder name"));
        if super::pieces::file_done(&dir).is_none() || super::pieces::file_done(&target).is_some() {
            continue;
        }
        let tmp = target.with_extension("importing");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        for f in std::fs::read_dir(&dir)? {
            let f = f?.path();
            let t = tmp.join(f.file_name().expect("a file name"));
            if std::fs::hard_link(&f, &t).is_err() {
                std::fs::copy(&f, &t).with_context(|| format!("copying {}", f.display()))?;
            }
        }
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&tmp, &target).with_context(|| format!("moving {}", target.display()))?;
        n += 1;
    }
    eprintln!("imported {n} tokenized file(s) from {}", src.display());
    Ok(())
}

fn run_prepare(a: &PrepareArgs, merge: bool) -> Result<()> {
    let exp = crate::experiment::load(&a.file, &a.set)
        .map_err(|e| anyhow!("{}:\n{e}", a.file.display()))?;
    let mut opts = PrepareOptions::new(
        a.cache
            .clone()
            .unwrap_or_else(|| experiment_cache_root(&exp)),
    );
    opts.hub.offline |= a.offline;
    opts.progress = !a.quiet;
    if let Some(m) = a.memory.or(exp.data.memory_bytes()) {
        opts.memory = m;
    }
    opts.threads = a.threads;
    opts.delete_raw = a.delete_raw;
    if merge && a.part.is_some() {
        bail!("`doge data merge` joins every part; drop --part");
    }
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
        if let Some((i, n)) = a.part {
            let r = tokenize_part(&data, &tok, &opts, i, n)?;
            println!(
                "stage {}: part {i}/{n}: {} file(s), {:.1} MB, {} tokens in {:.1} s ({} pieces, {} finished before); run `doge data merge {}` once every part is done",
                stage.id(),
                r.files,
                r.bytes as f64 / 1e6,
                r.tokens,
                r.seconds,
                r.pieces,
                r.pieces_reused,
                a.file.display()
            );
            done.push(data);
            continue;
        }
        let p = if merge {
            merge_report(&data, &tok, &opts)?
        } else {
            prepare_report(&data, &tok, &opts)?
        };
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
