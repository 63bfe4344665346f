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
        /// A run id (first column of `doge runs list`), a unique prefix of one, or the id
        /// `doge exp run` prints (every stage of that run is shown).
        id: String,
    },
    /// Delete runs: their registry rows and their stage directories (checkpoints).
    Delete {
        /// Run ids (or unique prefixes, or experiment run ids).
        #[arg(required = true)]
        ids: Vec<String>,
        /// Do not ask (needed when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Delete the registry rows only; leave the files.
        #[arg(long)]
        keep_files: bool,
    },
    /// Archive runs: hidden from `runs list` and reports (`--all` shows them), rows and files kept.
    Archive {
        #[arg(required = true)]
        ids: Vec<String>,
        /// Restore archived runs instead.
        #[arg(long)]
        undo: bool,
    },
    /// Tag a run (`--where "tag = baseline"` finds it).
    Tag {
        id: String,
        #[arg(required = true)]
        tags: Vec<String>,
        /// Remove these tags instead.
        #[arg(long)]
        remove: bool,
    },
    /// Set a run's note (an empty text clears it).
    Note { id: String, text: String },
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
    /// Include archived runs.
    #[arg(long)]
    pub all: bool,
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
        files.chart_names.len()
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
                all: l.all,
            },
        )?,
        RunsCommand::Show { id } => commands::show(&reg, id)?,
        RunsCommand::Delete {
            ids,
            yes,
            keep_files,
        } => delete(&reg, ids, *yes, *keep_files)?,
        RunsCommand::Archive { ids, undo } => {
            let ids = commands::resolve_all(&reg, ids)?;
            for id in &ids {
                reg.set_archived(id, !undo)?;
            }
            let verb = if *undo { "restored" } else { "archived" };
            format!("{verb} {}\n", ids.join(", "))
        }
        RunsCommand::Tag { id, tags, remove } => {
            let id = one_run(&reg, id)?;
            if *remove {
                reg.tag(&id, &[], tags)?;
            } else {
                reg.tag(&id, tags, &[])?;
            }
            format!("{id}: tags {}\n", reg.tags(&id)?.join(", "))
        }
        RunsCommand::Note { id, text } => {
            let id = one_run(&reg, id)?;
            let text = text.trim();
            reg.set_note(&id, (!text.is_empty()).then_some(text))?;
            format!(
                "{id}: note {}\n",
                if text.is_empty() { "cleared" } else { "set" }
            )
        }
        RunsCommand::Compare { ids, sweep } => commands::compare(&reg, ids, sweep.as_deref())?,
    };
    print!("{out}");
    Ok(())
}

/// The single run an id names (a prefix must be unique; an experiment run id names several).
fn one_run(reg: &Registry, given: &str) -> Result<String> {
    let ids = super::query::resolve_ids(reg.db(), given)?;
    anyhow::ensure!(
        ids.len() == 1,
        "`{given}` names {} runs ({}); give one of them",
        ids.len(),
        ids.join(", ")
    );
    Ok(ids[0].clone())
}

/// `doge runs delete`: says what goes, asks unless `--yes`, then deletes rows and files.
fn delete(reg: &Registry, given: &[String], yes: bool, keep_files: bool) -> Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let ids = commands::resolve_all(reg, given)?;
    let orphans = reg.children_outside(&ids)?;
    let files = if keep_files {
        Vec::new()
    } else {
        ids.iter()
            .map(|id| reg.run_files(id))
            .collect::<Result<Vec<_>>>()?
            .concat()
    };
    let mut plan = format!("delete {} run(s): {}\n", ids.len(), ids.join(", "));
    for f in &files {
        plan += &format!("  and {}\n", f.display());
    }
    if !orphans.is_empty() {
        plan += &format!(
            "  (their child runs {} stay, without a parent)\n",
            orphans.join(", ")
        );
    }
    if !yes {
        anyhow::ensure!(
            std::io::stdin().is_terminal(),
            "{plan}nothing deleted: pass --yes to delete without asking (stdin is not a terminal)"
        );
        eprint!("{plan}delete? [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok("nothing deleted\n".into());
        }
    }
    let d = reg.delete_runs(&ids, !keep_files)?;
    Ok(format!(
        "deleted {} run(s) and {} director{}\n",
        d.runs.len(),
        d.files.len(),
        if d.files.len() == 1 { "y" } else { "ies" }
    ))
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
        stage_key: None,
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
