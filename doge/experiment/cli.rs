//! `doge exp check|plan` and `doge schema`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::error::Errors;
use super::registry::status;
use super::schema::{schema_text, Shape};
use super::spec::is_local;
use super::sweep::describe;
use super::types::{Experiment, StageKind};
use super::{plan, print, run_id, Run};

#[derive(Args, Debug)]
pub struct ExpArgs {
    #[command(subcommand)]
    pub command: ExpCommand,
}

#[derive(Subcommand, Debug)]
pub enum ExpCommand {
    /// Validate an experiment and print it resolved, with parameter counts and token estimates.
    Check(FileArgs),
    /// List the runs of an experiment's sweep, one line each: id, status and the swept values.
    Plan(FileArgs),
    /// Run the experiment's stages (every run of its sweep). Rerunning continues an interrupted
    /// run from its newest checkpoint and skips finished runs. Launchers started anywhere on one
    /// registry share the sweep: each claims the next free run.
    Run(RunArgs),
    /// The sweep's runs in the registry: state, worker, stage, step, last loss and ETA.
    Status(FileArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The experiment file (KDL).
    pub file: PathBuf,
    /// Override a key, e.g. `--set stage.pretrain.lr=6e-3` (repeatable, applied in order).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Continue from the newest checkpoint (also what a plain rerun does; kept for clarity).
    #[arg(long)]
    pub resume: bool,
    /// Overrides the experiment's `device` (`cpu`, `cuda:N`).
    #[arg(long)]
    pub device: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// The accelerator's peak TFLOP/s for MFU (default: NVIDIA's datasheet number for the GPU's
    /// name and the run's precision; CPUs have none).
    #[arg(long, value_name = "TFLOPS")]
    pub peak_tflops: Option<f64>,
    /// Train N runs at once in this process, the cores split among them.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        conflicts_with = "array_index"
    )]
    pub workers: usize,
    /// Train only the I-th run of the plan (0-based, as `doge exp plan` numbers from 1: I+1);
    /// default `$SLURM_ARRAY_TASK_ID` when set.
    #[arg(long, value_name = "I")]
    pub array_index: Option<usize>,
    /// Seconds without a heartbeat after which a claimed run counts as abandoned and another
    /// launcher takes it over (a dead process on the same host is taken over at once).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::train::launcher::DEFAULT_STALE_AFTER_S)]
    pub stale_after: f64,
}

#[derive(Args, Debug)]
pub struct FileArgs {
    /// The experiment file (KDL).
    pub file: PathBuf,
    /// Override a key, e.g. `--set stage.pretrain.lr=6e-3` (repeatable, applied in order).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the resolved experiment as canonical JSON instead of KDL (`check` only).
    #[arg(long)]
    pub json: bool,
    /// Print an sbatch script with one array task per run (`plan` only), with the resources of
    /// the experiment's `slurm` block.
    #[arg(long)]
    pub slurm: bool,
}

pub fn run(args: &ExpArgs) -> anyhow::Result<()> {
    let f = match &args.command {
        ExpCommand::Run(r) => {
            let array_index = match r.array_index {
                Some(i) => Some(i),
                None => slurm_array_task()?,
            };
            let opts = crate::train::runner::RunOptions {
                sets: r.set.clone(),
                device: r.device.clone(),
                quiet: r.quiet,
                peak_tflops: r.peak_tflops,
                workers: if array_index.is_some() { 1 } else { r.workers },
                array_index,
                stale_after: r.stale_after,
                label: None,
                claim: None,
                sweep: None,
            };
            return crate::train::launcher::run_file(&r.file, &opts);
        }
        ExpCommand::Check(f) | ExpCommand::Plan(f) | ExpCommand::Status(f) => f,
    };
    // `check` vouches that the file can run here; `plan` (an sbatch script may be written
    // away from the data) and `status` only read it.
    let planned = match &args.command {
        ExpCommand::Check(_) => super::plan_to_run(&f.file, &f.set),
        _ => plan(&f.file, &f.set),
    };
    let (exp, runs) = planned.map_err(|e| report(&f.file, e))?;
    let text = match &args.command {
        ExpCommand::Check(_) if f.json => {
            serde_json::to_string_pretty(&super::canonical_json(&exp))? + "\n"
        }
        ExpCommand::Check(_) => check_text(&f.file, &exp, &runs),
        ExpCommand::Plan(_) if f.slurm => {
            let exp0 = runs.first().map_or(&exp, |r| &r.experiment);
            let out = super::slurm::default_output(exp0);
            if exp0
                .slurm
                .as_ref()
                .and_then(|s| s.output.as_ref())
                .is_none()
            {
                // sbatch opens the log before the script runs: its folder must exist.
                let dir = std::path::Path::new(&out).parent().map(|p| p.to_path_buf());
                if let Some(d) = dir {
                    std::fs::create_dir_all(&d)?;
                }
            }
            super::slurm::sbatch_script(&f.file, &f.set, exp0, runs.len())
        }
        ExpCommand::Plan(_) => plan_text(&exp, &runs),
        ExpCommand::Status(_) => {
            let first = runs.first().map_or(&exp, |r| &r.experiment);
            let location = first.database();
            anyhow::ensure!(
                location.exists(),
                "{location}: no registry yet (nothing of this experiment has run)"
            );
            let reg = crate::registry::Registry::connect(&location)?;
            super::status::status_text(&reg, &runs)?
        }
        ExpCommand::Run(_) => unreachable!("handled above"),
    };
    print!("{text}");
    Ok(())
}

/// `$SLURM_ARRAY_TASK_ID` as a plan index, when this is a SLURM array task.
fn slurm_array_task() -> anyhow::Result<Option<usize>> {
    match std::env::var("SLURM_ARRAY_TASK_ID") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
            anyhow::anyhow!("SLURM_ARRAY_TASK_ID={v:?} is not a run index (0, 1, ...)")
        }),
        _ => Ok(None),
    }
}

/// `doge schema`.
pub fn print_schema() {
    print!("{}", schema_text());
}

fn report(file: &Path, errors: Errors) -> anyhow::Error {
    eprint!("{errors}");
    let n = errors.0.len();
    anyhow::anyhow!(
        "{}: {n} error{} in the experiment; nothing was run",
        file.display(),
        if n == 1 { "" } else { "s" }
    )
}

/// 13118728 -> "13,118,728".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn short(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n => format!("{:.1}K", n as f64 / 1e3),
    }
}

/// The text `doge exp check` prints.
pub fn check_text(file: &Path, exp: &Experiment, runs: &[Run]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "ok: {} is valid: `{}`, run id {}",
        file.display(),
        exp.name,
        run_id(exp)
    );
    let _ = writeln!(o, "{}", model_line(exp));
    let mut total = 0u64;
    let mut open_ended = false;
    for (i, s) in exp.stages.iter().enumerate() {
        let data = exp.stage_data(s);
        let what = match (s.kind, s.max_steps, s.max_tokens, s.epochs) {
            (StageKind::Eval, ..) => "evaluation, no training".to_string(),
            (_, Some(steps), ..) => format!(
                "{} steps x {} tokens/step (batch {} x accum {} x seq {}) = {} tokens ({})",
                thousands(steps),
                thousands(s.tokens_per_step(data)),
                s.batch_size,
                s.grad_accum,
                thousands(data.seq_len as u64),
                thousands(steps * s.tokens_per_step(data)),
                short(steps * s.tokens_per_step(data))
            ),
            (_, None, Some(t), _) => format!("{} tokens ({})", thousands(t), short(t)),
            (_, None, None, Some(e)) => {
                format!(
                    "{e} epochs of its data, {} tokens/step (total known once the data is read)",
                    thousands(s.tokens_per_step(data))
                )
            }
            _ => String::new(),
        };
        if let Some(t) = s.planned_tokens(data) {
            total += t;
        } else if s.kind.trains() {
            open_ended = true;
        }
        let _ = writeln!(
            o,
            "stage {} `{}` ({}): {what}",
            i + 1,
            s.id(),
            s.kind.as_str()
        );
    }
    let more = if open_ended {
        " + the epoch-based stages"
    } else {
        ""
    };
    let _ = writeln!(
        o,
        "estimated training tokens: {} ({}){more}",
        thousands(total),
        short(total)
    );
    if exp.sweep.is_some() {
        let _ = writeln!(
            o,
            "sweep: {} runs, all valid (`doge exp plan {}` lists them)",
            runs.len(),
            file.display()
        );
    }
    for w in warnings(exp) {
        let _ = writeln!(o, "warning: {w}");
    }
    let _ = writeln!(o, "\n// resolved (every default filled in)");
    o.push_str(&print::to_kdl(exp, &Shape::default()));
    o
}

fn model_line(exp: &Experiment) -> String {
    let m = &exp.model;
    let what = match (&m.preset, &m.init) {
        (Some(p), Some(i)) => format!("preset {p}, weights from {i}"),
        (Some(p), None) => format!("preset {p}"),
        (None, Some(i)) => format!("from {i}"),
        (None, None) => "explicit dims".into(),
    };
    match m.to_config(&exp.base_dir) {
        Ok(Some(c)) if c.is_moe => format!(
            "model: {what}: {} parameters, {} active per token (MoE, {} experts, {} per token)",
            thousands(c.num_parameters()),
            thousands(c.num_active_parameters()),
            c.num_experts,
            c.num_experts_per_tok
        ),
        Ok(Some(c)) => format!(
            "model: {what}: {} parameters",
            thousands(c.num_parameters())
        ),
        _ => format!("model: {what}: parameters known once the checkpoint's config.json is read"),
    }
}

/// Local files that do not exist (yet): not errors, since data may be prepared later.
fn warnings(exp: &Experiment) -> Vec<String> {
    let mut paths: Vec<(&str, &str)> = vec![("tokenizer", &exp.tokenizer)];
    if let Some(i) = &exp.model.init {
        paths.push(("model.init", i));
    }
    let stage_sources = exp.stages.iter().filter_map(|s| s.data.as_ref());
    for d in std::iter::once(&exp.data).chain(stage_sources) {
        paths.extend(d.sources.iter().map(|s| ("data source", s.from.as_str())));
    }
    paths
        .into_iter()
        .filter(|(_, p)| is_local(p) && !exp.local_path(p).exists())
        .map(|(what, p)| format!("{what} {p} does not exist yet"))
        .collect()
}

/// The text `doge exp plan` prints: one line per run with its status in the registry, so a
/// rerun sweep shows what is already done.
pub fn plan_text(exp: &Experiment, runs: &[Run]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: {} run{}",
        exp.name,
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    );
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(
            o,
            "{:>4}  {}  {:<7}  {}",
            i + 1,
            r.id,
            status(&r.experiment).as_str(),
            describe(r)
        );
    }
    o
}
