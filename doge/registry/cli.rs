//! Arguments of `doge runs ...` and `doge registry ...`, and their dispatch.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};

use super::commands::{self, ListQuery};
use super::db::Location;
use super::merge::merge;
use super::render::Format;
use super::{NewRun, Registry, RunStatus};

/// Where the registry lives unless `--registry` says otherwise.
pub const DEFAULT_REGISTRY: &str = "registry/doge.sqlite";

#[derive(Args, Debug, Clone)]
pub struct RegistryPath {
    /// The registry: an SQLite file, or a server (`postgres://USER@HOST[:PORT]/DB`). Default:
    /// `$DOGE_REGISTRY`, else registry/doge.sqlite.
    #[arg(long = "registry", global = true, value_name = "FILE|URL")]
    pub registry: Option<String>,
}

impl RegistryPath {
    /// `--registry`, else `$DOGE_REGISTRY`, else the default file.
    pub fn location(&self) -> Location {
        match &self.registry {
            Some(s) => Location::parse(s),
            None => Location::from_env_or(Path::new(DEFAULT_REGISTRY)),
        }
    }
}

#[derive(Args, Debug)]
pub struct RunsArgs {
    #[command(flatten)]
    pub path: RegistryPath,
    #[command(subcommand)]
    pub command: RunsCommand,
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// List runs, e.g. `--where "stage.pretrain.lr < 6e-3 and status = done" --sort metric.loss`.
    List(ListArgs),
    /// One run: config, lineage, last metrics, evals and artifacts.
    Show {
        /// The run id (first column of `doge runs list`).
        id: String,
    },
    /// Runs side by side: the config keys that differ, final metrics and evals.
    Compare {
        /// Run ids to compare.
        ids: Vec<String>,
        /// Compare every run of this sweep instead.
        #[arg(long, conflicts_with = "ids")]
        sweep: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Filter: config paths (`seed`, `model.hidden-size`, `stage.pretrain.lr`), `status`,
    /// `stage`, `experiment`, `id`, `metric.NAME`, `eval.TASK.METRIC`; = != < <= > >= in (...),
    /// and/or/not, parentheses.
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Sort by a key (as in --where); prefix `-` for descending, e.g. `--sort=-metric.loss`.
    #[arg(long, allow_hyphen_values = true)]
    pub sort: Option<String>,
    /// Show at most N runs.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct RegistryArgs {
    #[command(flatten)]
    pub path: RegistryPath,
    #[command(subcommand)]
    pub command: RegistryCommand,
}

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Import the runs of another registry (runs already present are skipped), e.g. a file from
    /// another machine into a server, or a server's runs into a local file.
    Merge {
        /// The other registry: an SQLite file or a `postgres://` URL.
        other: String,
    },
    /// Test helper: write one run and N metric rows in batches (the concurrency test runs several).
    #[command(hide = true)]
    Stress {
        #[arg(long)]
        run: String,
        #[arg(long, default_value_t = 2000)]
        rows: usize,
        #[arg(long, default_value_t = 100)]
        batch: usize,
    },
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub path: RegistryPath,
    /// Runs to report on (default: every run).
    pub ids: Vec<String>,
    /// Report on every run of this sweep instead.
    #[arg(long, conflicts_with = "ids")]
    pub sweep: Option<String>,
    /// Directory for report.md, report.html and the SVG/PNG charts.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run_report(args: &ReportArgs) -> Result<()> {
    let reg = open_existing(&args.path)?;
    let files = super::report::write_report(&reg, &args.ids, args.sweep.as_deref(), &args.out)?;
    println!(
        "wrote {} and {} ({} charts)",
        files.html.display(),
        files.markdown.display(),
        files.charts.len()
    );
    Ok(())
}

pub fn run_runs(args: &RunsArgs) -> Result<()> {
    let reg = open_existing(&args.path)?;
    let out = match &args.command {
        RunsCommand::List(l) => commands::list(
            &reg,
            &ListQuery {
                filter: l.filter.clone(),
                sort: l.sort.clone(),
                limit: l.limit,
                format: l.format,
            },
        )?,
        RunsCommand::Show { id } => commands::show(&reg, id)?,
        RunsCommand::Compare { ids, sweep } => commands::compare(&reg, ids, sweep.as_deref())?,
    };
    print!("{out}");
    Ok(())
}

/// Queries need an existing file: creating an empty registry would hide a wrong path.
fn open_existing(p: &RegistryPath) -> Result<Registry> {
    let location = p.location();
    anyhow::ensure!(
        location.exists(),
        "{location}: no registry here (runs record into {DEFAULT_REGISTRY} by default; pass --registry PATH or a postgres:// URL, or set DOGE_REGISTRY)"
    );
    Registry::connect(&location)
}

pub fn run_registry(args: &RegistryArgs) -> Result<()> {
    match &args.command {
        RegistryCommand::Merge { other } => {
            let reg = Registry::connect(&args.path.location())?;
            let other = Location::parse(other);
            let s = merge(&reg, &other)?;
            println!(
                "merged {other}: {} new runs ({} already present), {} metrics, {} evals, {} artifacts",
                s.runs,
                s.skipped,
                s.metrics,
                s.evals,
                s.artifacts
            );
            Ok(())
        }
        RegistryCommand::Stress { run, rows, batch } => stress(&args.path, run, *rows, *batch),
    }
}

fn stress(p: &RegistryPath, run: &str, rows: usize, batch: usize) -> Result<()> {
    let mut reg = Registry::connect(&p.location())?;
    reg.start_run(&NewRun {
        id: run.into(),
        experiment: "stress".into(),
        experiment_path: None,
        sweep: Some("stress-sweep".into()),
        parent_id: None,
        stage: "pretrain".into(),
        config_json: format!(r#"{{"seed":{}}}"#, run.len()),
        config_hash: run.into(),
        device: "cpu".into(),
    })?;
    let names = ["loss", "lr"];
    let all: Vec<(u64, &str, f64)> = (0..rows)
        .map(|i| ((i / 2) as u64, names[i % 2], i as f64))
        .collect();
    for chunk in all.chunks(batch.max(1)) {
        reg.log_metrics(run, chunk)?;
    }
    reg.finish_run(run, RunStatus::Done, None)
}
