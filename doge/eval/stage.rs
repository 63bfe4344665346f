//! The `eval` stage of an experiment: scores the weights the stage starts from (its `init`, else
//! the previous stage's final checkpoint, else the model's `init`) on the stage's `tasks`, and
//! records them against the stage's run in the registry. It trains nothing; the next stage starts
//! from the same weights.
//!
//! `tasks` entries are `NAME[:SHOTS][=SOURCE]` as for `doge eval` (SOURCE relative to the
//! experiment file, or `hub:ID[:CONFIG]`); tasks without a source read `$DOGE_EVAL_DATA/<task>/`
//! when that is set, else the hub. `batch-size` is the scoring batch (16 when left at 1).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use candle_core::{DType, Device};

use super::{parse_tasks, record, results_table, EvalOptions, Evaluator};
use crate::checkpoint::Checkpoint;
use crate::data::tokenizer::DogeTokenizer;
use crate::experiment::{self, Experiment, Stage};
use crate::registry::Registry;

/// Runs the stage; returns the evaluated checkpoint directory (the stage's result). lm-eval's
/// results.json goes into `stage_dir`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    exp: &Experiment,
    stage: &Stage,
    previous: Option<&Path>,
    registry: &Registry,
    run_id: &str,
    stage_dir: &Path,
    dev: &Device,
    quiet: bool,
) -> Result<PathBuf> {
    let started = std::time::Instant::now();
    let dir = weights_dir(exp, stage, previous)?;
    let mut requests = if stage.tasks.is_empty() {
        Vec::new()
    } else {
        parse_tasks(&stage.tasks, &exp.base_dir)?
    };
    // `task` blocks: the same reader as task files; relative data paths are the experiment's.
    let at = exp.base_dir.join(format!("{}.kdl", exp.name));
    for t in &stage.task {
        let node = super::taskfile::kdl::to_node(t, &super::taskfile::tree::Pos::new(&at, 1, 1));
        let config = super::taskfile::config::read(&node)
            .map_err(|e| anyhow!("stage `{}`, task `{}`: {e}", stage.id(), t.task))?;
        requests.push(super::TaskRequest {
            kind: super::TaskKind::File(std::sync::Arc::new(config)),
            shots: None,
            source: None,
            group: None,
        });
    }
    if requests.is_empty() {
        bail!("stage `{}` has no `tasks` and no `task` blocks", stage.id());
    }
    let model = Checkpoint::load(&dir, DType::F32, dev)?.model()?;
    let tok = if dir.join("tokenizer.json").is_file() {
        DogeTokenizer::load(&dir)?
    } else {
        DogeTokenizer::load(&crate::train::data_bridge::tokenizer_dir(exp)?)?
    };
    let opts = EvalOptions {
        batch_size: if stage.batch_size > 1 {
            stage.batch_size
        } else {
            16
        },
        data_dir: std::env::var_os("DOGE_EVAL_DATA").map(PathBuf::from),
        show_progress: !quiet,
        ..EvalOptions::default()
    };
    let ev = Evaluator {
        model: &model,
        tok: &tok,
        opts: &opts,
    };
    eprintln!("stage {}: evaluating {}", stage.id(), dir.display());
    let results = ev.run(&requests)?;
    let n = record::add_results(registry, run_id, &dir, &results)?;
    let info = super::results_file::RunInfo {
        model: &dir,
        batch_size: opts.batch_size,
        device: &format!("{dev:?}"),
        limit: None,
        seed: opts.seed,
        run_id: Some(run_id),
        seconds: started.elapsed().as_secs_f64(),
    };
    super::results_file::write(&stage_dir.join("results.json"), &results, &info)?;
    eprint!("{}", results_table(&results));
    eprintln!("stage {}: {n} scores recorded for run {run_id}", stage.id());
    Ok(dir)
}

/// The checkpoint an eval stage scores.
fn weights_dir(exp: &Experiment, stage: &Stage, previous: Option<&Path>) -> Result<PathBuf> {
    let local = |p: &str| -> Result<PathBuf> {
        if experiment::spec::is_local(p) {
            Ok(exp.local_path(p))
        } else {
            bail!("init `{p}` is a hub id; download it and point `init` at the directory")
        }
    };
    match (&stage.init, previous, &exp.model.init) {
        (Some(p), _, _) => local(p),
        (None, Some(prev), _) => Ok(prev.to_path_buf()),
        (None, None, Some(p)) => local(p),
        (None, None, None) => Err(anyhow!(
            "stage `{}` has no weights to evaluate: put it after a training stage, or give it `init \"path/to/checkpoint\"`",
            stage.id()
        )),
    }
}
