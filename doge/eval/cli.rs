//! `doge eval`: score a checkpoint on benchmarks, print the table, record the scores.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use clap::Args;

use super::{parse_tasks_with, record, results_table, samples, EvalOptions, Evaluator};
use crate::checkpoint::Checkpoint;
use crate::cli::io::{parse_device, ModelArgs};
use crate::data::tokenizer::DogeTokenizer;
use crate::registry::cli::DEFAULT_REGISTRY;
use crate::registry::db::Location;
use crate::registry::Registry;

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated tasks: hellaswag, arc_easy, arc_challenge (`arc` = both), piqa, boolq,
    /// openbookqa, mmlu, winogrande, triviaqa, perplexity. Each may be `NAME[:SHOTS][=SOURCE]`,
    /// SOURCE a local file/folder or `hub:ID[:CONFIG]`; or a task file (lm-eval's YAML, or KDL):
    /// `path/to/task.yaml[:SHOTS]`; or a task, group or tag defined under --include-path.
    #[arg(long, required = true, value_delimiter = ',')]
    pub tasks: Vec<String>,
    /// Folders of task files (lm-eval's `--include-path`): their tasks, groups and tags can be
    /// named in --tasks, before the built-in tasks of the same name. Repeatable.
    #[arg(long, value_name = "DIR")]
    pub include_path: Vec<PathBuf>,
    /// Start every scored sequence with the beginning-of-sequence token (`true`) or encode without
    /// special tokens (`false`). Default: each task's own setting, else as the tokenizer encodes
    /// (lm-eval's behaviour; the Doge tokenizer puts bos first). Recorded with every score.
    #[arg(long, value_name = "BOOL")]
    pub add_bos: Option<bool>,
    /// Few-shot examples per item for every task (default: the seed's, 5; boolq 0).
    #[arg(long)]
    pub shots: Option<usize>,
    /// Only the first N items of each task.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Sequences per forward pass; scores do not depend on it.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Longest sequence the model reads (default: the model's max_position_embeddings).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Seed of the few-shot draw.
    #[arg(long, default_value_t = super::fewshot::DEFAULT_SEED)]
    pub seed: u64,
    /// Folder with a sub-folder per task (`hellaswag/validation.jsonl`, `mmlu/{dev,test}/*.jsonl`);
    /// default $DOGE_EVAL_DATA; tasks without one are downloaded from the hub.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Tokenizer folder or tokenizer.json (default: the model directory's).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Write one JSON line per item (context, each choice's log-likelihood, prediction).
    #[arg(long, value_name = "FILE")]
    pub log_samples: Option<PathBuf>,
    /// Registry for checkpoints outside a registry run (an eval-only run is created there): an
    /// SQLite file or a `postgres://` URL (default: $DOGE_REGISTRY, else registry/doge.sqlite).
    #[arg(long, value_name = "FILE|URL")]
    pub registry: Option<String>,
    /// Record nothing in any registry.
    #[arg(long)]
    pub no_registry: bool,
    /// Write lm-eval's results.json here: a `.json` file, or a folder (gets
    /// `results_<time>.json`). Default: `evals/<run>/` beside the registry file.
    #[arg(long, value_name = "FILE|DIR")]
    pub output: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let cwd = std::env::current_dir()?;
    let requests = parse_tasks_with(&args.tasks, &cwd, &args.include_path)?;
    let dev = parse_device(&args.model.device)?;
    let model = Checkpoint::load(&args.model.model, args.model.dtype()?, &dev)?.model()?;
    let tok_path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| args.model.model.clone());
    if tok_path.is_dir() && !tok_path.join("tokenizer.json").is_file() {
        bail!(
            "{}: no tokenizer.json; pass --tokenizer PATH (a folder with tokenizer.json)",
            tok_path.display()
        );
    }
    let tok = DogeTokenizer::load(&tok_path)?;
    let vocab = model.config().vocab_size;
    if tok.vocab_size() > vocab {
        bail!(
            "the tokenizer ({}) has {} tokens but the model's vocabulary is {vocab}",
            tok_path.display(),
            tok.vocab_size()
        );
    }
    let opts = EvalOptions {
        batch_size: args.batch_size.max(1),
        max_len: args.max_length,
        shots: args.shots,
        limit: args.limit,
        seed: args.seed,
        data_dir: args
            .data_dir
            .clone()
            .or_else(|| std::env::var_os("DOGE_EVAL_DATA").map(PathBuf::from)),
        show_progress: !args.quiet,
        add_bos: args.add_bos,
        ..EvalOptions::default()
    };
    let ev = Evaluator {
        model: &model,
        tok: &tok,
        opts: &opts,
    };
    // The run is recorded before the work starts, so a failed evaluation shows as failed.
    let target = if args.no_registry {
        None
    } else {
        Some(match record::owning_run(&args.model.model)? {
            Some((db, run)) => (db, run, false),
            None => {
                let location = match &args.registry {
                    Some(s) => Location::parse(s),
                    None => Location::from_env_or(Path::new(DEFAULT_REGISTRY)),
                };
                let reg = Registry::connect(&location)?;
                let run = record::eval_only_run(&reg, &args.model.model, &args.model.device)?;
                (location, run, true)
            }
        })
    };
    // A failed task records nothing; the others still run and are recorded, and the command
    // then fails naming the failed tasks.
    let (results, errors) = ev.run_all(&requests);
    let failure = (!errors.is_empty()).then(|| {
        let all: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
        all.join("\n")
    });
    if results.is_empty() {
        if let Some((db, run, true)) = &target {
            record::finish(&Registry::connect(db)?, run, false, failure.as_deref())?;
        }
        bail!(
            "{}",
            failure.unwrap_or_else(|| "no task produced a score".into())
        );
    }
    print!("{}", results_table(&results));
    for r in &results {
        if r.seconds > 0.0 {
            let items = r.scores.first().map_or(0, |s| s.n);
            eprintln!(
                "{}: {items} items in {:.1} s ({:.1} items/s), {} split of {}",
                r.task,
                r.seconds,
                items as f64 / r.seconds,
                r.split,
                r.source
            );
        }
    }
    if let Some(path) = &args.log_samples {
        let n = samples::write(path, &results)?;
        eprintln!("{n} samples written to {}", path.display());
    }
    let out = match (&args.output, &target) {
        (Some(p), _) => Some(p.clone()),
        (None, Some((db, run, _))) => Some(beside(db).join("evals").join(run)),
        (None, None) => None,
    };
    if let Some(out) = out {
        let info = super::results_file::RunInfo {
            model: &args.model.model,
            batch_size: opts.batch_size,
            device: &args.model.device,
            limit: args.limit,
            seed: args.seed,
            run_id: target.as_ref().map(|t| t.1.as_str()),
            seconds: started.elapsed().as_secs_f64(),
        };
        let path = super::results_file::write(&out, &results, &info)?;
        eprintln!("results written to {}", path.display());
    }
    if let Some((db, run, eval_only)) = target {
        let reg = Registry::connect(&db)?;
        let n = record::add_results(&reg, &run, &args.model.model, &results)
            .map_err(|e| anyhow!("recording the scores in {db}: {e:#}"))?;
        if eval_only {
            record::finish(&reg, &run, failure.is_none(), failure.as_deref())?;
        }
        eprintln!(
            "{n} scores recorded for run {run} in {db} (`doge runs show {run} --registry {db}`)"
        );
    }
    match failure {
        None => Ok(()),
        Some(f) => bail!(
            "{} of {} tasks failed (nothing recorded for them):\n{f}",
            errors.len(),
            requests.len()
        ),
    }
}

/// The folder a registry's files sit in: the SQLite file's, or `registry/` for a server.
fn beside(db: &Location) -> PathBuf {
    match db {
        Location::Sqlite(p) => p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        Location::Postgres(_) => PathBuf::from("registry"),
    }
}
