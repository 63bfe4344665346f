//! `doge exp run`: turns an experiment into runs and runs their stages in order, recording each in
//! the registry. A run that was interrupted or crashed continues from its newest checkpoint when run
//! again; a finished run is not run twice (its directory is keyed by the hash of its config).
//!
//! On disk: `<registry>/<name>-<id>/experiment.json`, one directory per stage holding its
//! checkpoints (`checkpoint-NNNNNNNN/`, Hugging Face layout plus optimizer state), `done.json` in a
//! stage directory once the stage has finished, and in the run directory once all have.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::mfu::{self, Utilisation};
use super::optimizer::AdamWConfig;
use super::pretrain::{self, StageObserver, StageOutcome, StageSettings};
use super::schedule::Schedule;
use crate::checkpoint::Checkpoint;
use crate::experiment::{self, Experiment, Stage, StageKind};
use crate::model::flops::train_flops_per_token;
use crate::model::DogeConfig;
use crate::registry::{NewRun, Registry, RunStatus};

/// Non-finite steps in a row that abort a stage.
pub const MAX_BAD_STEPS: u32 = 5;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--set KEY=VALUE` overrides, in order.
    pub sets: Vec<String>,
    /// Overrides the experiment's `device`.
    pub device: Option<String>,
    /// No progress bar (logs only).
    pub quiet: bool,
    /// The device's peak TFLOP/s for MFU, overriding the datasheet table.
    pub peak_tflops: Option<f64>,
    /// Runs trained at once by this process (threads split among them); 0 or 1: one at a time.
    pub workers: usize,
    /// Run only the I-th run of the sweep's plan (a SLURM array task).
    pub array_index: Option<usize>,
    /// Seconds without a heartbeat after which another worker takes a claimed run over.
    pub stale_after: f64,
    /// Prefix of this run's log lines (set when several runs share the terminal).
    pub label: Option<String>,
    /// The claim (run name, worker id) this run is trained under: metrics are written only while
    /// it is still this worker's.
    pub claim: Option<(String, String)>,
    /// The sweep this run belongs to (the experiment's name when the file declares a sweep).
    pub sweep: Option<String>,
}

impl RunOptions {
    /// Prints a log line, prefixed with the run's label when runs share the terminal.
    pub(crate) fn say(&self, line: &str) {
        match &self.label {
            Some(l) => eprintln!("[{l}] {line}"),
            None => eprintln!("{line}"),
        }
    }
}

/// The error a run ends with when Ctrl-C stopped it (after saving a checkpoint).
#[derive(Debug, thiserror::Error)]
#[error("interrupted at step {step}; checkpoint saved in {}; run the same command again to resume", dir.display())]
pub struct Interrupted {
    pub step: u64,
    pub dir: PathBuf,
}

/// Raised on Ctrl-C or SIGTERM (SLURM's preemption, a launcher ending the job); the loop saves
/// and stops at the next step boundary. A second signal exits.
pub(crate) fn stop_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let _ = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond Ctrl-C: exiting without saving");
                std::process::exit(130);
            }
            if let Some(mark) = ON_SIGNAL.lock().unwrap().take() {
                mark();
            }
            eprintln!(
                "\nstopping (Ctrl-C or SIGTERM): saving a checkpoint at the end of this step (Ctrl-C again to abort)"
            );
        });
        flag
    })
    .clone()
}

type SignalHook = Box<dyn FnOnce() + Send>;

/// Run at the first signal. In a job of several ranks a signal usually means the launcher is
/// ending it (a rank died: SIGTERM, then SIGKILL a moment later, before the step could end), so
/// rank 0 marks its run interrupted at once over a connection of its own.
static ON_SIGNAL: std::sync::Mutex<Option<SignalHook>> = std::sync::Mutex::new(None);

fn mark_interrupted_on_signal(registry: &Registry, run_id: &str) {
    if crate::dist::world().size == 1 {
        return;
    }
    let (location, run_id) = (registry.location().clone(), run_id.to_string());
    *ON_SIGNAL.lock().unwrap() = Some(Box::new(move || {
        let marked = Registry::connect(&location).and_then(|r| {
            r.finish_run(
                &run_id,
                RunStatus::Interrupted,
                Some("signal: the job was stopped (a rank died, or the launcher or scheduler ended it); run it again to resume from the newest checkpoint"),
            )
        });
        if let Err(e) = marked {
            eprintln!("warning: marking run {run_id} interrupted: {e:#}");
        }
    }));
}

fn clear_signal_hook() {
    ON_SIGNAL.lock().unwrap().take();
}

/// What rank 0 decided for a stage, sent to the other ranks of a data-parallel job (which read
/// no `done.json` and no registry).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum Turn {
    /// Done before (or reused): nothing to do.
    Skip,
    /// Train it, every rank together.
    Train,
    /// Rank 0 alone (an eval stage).
    RootOnly,
}

/// Rank 0 tells the other ranks what this stage is (nothing in one process).
fn tell(turn: Turn) -> Result<()> {
    if crate::dist::world().size > 1 {
        crate::dist::from_root(Some(&turn), crate::dist::Wait::ForRoot)?;
    }
    Ok(())
}

/// Refuses, before any compute, what this version cannot run.
pub(crate) fn check_runnable(exp: &Experiment) -> Result<()> {
    for stage in &exp.stages {
        // Every kind runs today; a new kind must be accepted here before it can.
        match stage.kind {
            StageKind::Pretrain | StageKind::Sft | StageKind::Dpo | StageKind::Eval => {}
        }
    }
    Ok(())
}

fn pick_device(name: &str) -> Result<Device> {
    let dev = match name {
        "auto" if candle_core::utils::cuda_is_available() => Device::new_cuda(0)?,
        "auto" => Device::Cpu,
        other => crate::cli::io::parse_device(other)?,
    };
    // The ranks of a data-parallel job on one machine drive one GPU each, by local rank.
    let w = crate::dist::world();
    match dev {
        Device::Cuda(_) if w.size > 1 && !name.contains(':') => Ok(Device::new_cuda(w.local_rank)?),
        d => Ok(d),
    }
}

fn device_label(dev: &Device) -> String {
    match dev {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        other => format!("{other:?}"),
    }
}

/// Trains one run of the experiment (every stage not yet done) into its run directory.
pub(crate) fn run_one(
    path: &Path,
    exp: &Experiment,
    id: &str,
    registry: &mut Registry,
    opts: &RunOptions,
    stop: &AtomicBool,
) -> Result<()> {
    let run_dir = experiment::registry::run_dir(exp);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let cfg = model_config(exp)?;
    let mut config = experiment::canonical_json(exp);
    // A hub `init` is only read now: record the layout it brought (the run id stays the spec's).
    if cfg.layout != crate::model::Layout::Transformers {
        if let Some(model) = config.get_mut("model").and_then(|m| m.as_object_mut()) {
            model.insert("layout".into(), json!(cfg.layout.name()));
        }
    }
    let config_json = serde_json::to_string_pretty(&config)?;
    std::fs::write(run_dir.join("experiment.json"), &config_json)?;
    let dev = pick_device(opts.device.as_deref().unwrap_or(&exp.device))?;
    opts.say(&format!("run {}-{id} in {}", exp.name, run_dir.display()));

    let mut previous: Option<(PathBuf, String)> = None; // (final checkpoint, registry run id)
    for (index, stage) in exp.stages.iter().enumerate() {
        let stage_dir = run_dir.join(stage.id());
        let run_id = format!("{id}-{}", stage.id());
        if let Some((done, owner)) = read_stage_done(&stage_dir) {
            tell(Turn::Skip)?;
            previous = Some((done, owner.unwrap_or(run_id)));
            continue;
        }
        let mut stage_key = experiment::stage_key(exp, index);
        // Ranks change the global batch (the result): a data-parallel stage is reused only by a
        // job of as many ranks.
        let ranks = crate::dist::world().size;
        if ranks > 1 {
            stage_key = format!("{stage_key}-w{ranks}");
        }
        // The same stage (settings, data, init and every stage before it) done by another
        // experiment, e.g. the instruct quick start's pre-training: its result is this one's.
        if let Some((owner, final_dir)) = registry.find_done_stage(&stage_key, &run_id)? {
            std::fs::create_dir_all(&stage_dir)?;
            std::fs::write(
                stage_dir.join("done.json"),
                json!({"final": final_dir, "reused": owner}).to_string(),
            )?;
            tell(Turn::Skip)?;
            opts.say(&format!(
                "stage {}: reused run {owner} (the same stage, done before): {}",
                stage.id(),
                final_dir.display()
            ));
            previous = Some((final_dir, owner));
            continue;
        }
        registry.start_run(&NewRun {
            id: run_id.clone(),
            experiment: exp.name.clone(),
            experiment_path: Some(path.display().to_string()),
            sweep: opts.sweep.clone(),
            parent_id: previous.as_ref().map(|p| p.1.clone()),
            stage: stage.kind.as_str().into(),
            config_json: config_json.clone(),
            config_hash: id.to_string(),
            device: device_label(&dev),
            stage_key: Some(stage_key),
        })?;
        tell(match stage.kind {
            StageKind::Eval => Turn::RootOnly,
            _ => Turn::Train,
        })?;
        mark_interrupted_on_signal(registry, &run_id);
        let result = run_stage(
            exp,
            stage,
            &cfg,
            previous.as_ref().map(|p| p.0.as_path()),
            &stage_dir,
            &run_id,
            registry,
            &dev,
            opts,
            stop,
        );
        clear_signal_hook();
        match result {
            Ok(StageOutcome::Done(final_dir)) => {
                copy_tokenizer(exp, &final_dir);
                std::fs::write(
                    stage_dir.join("done.json"),
                    json!({"final": final_dir}).to_string(),
                )?;
                registry.add_artifact(&run_id, "final", &final_dir, None)?;
                registry.finish_run(&run_id, RunStatus::Done, None)?;
                opts.say(&format!(
                    "stage {} done: {}",
                    stage.id(),
                    final_dir.display()
                ));
                previous = Some((final_dir, run_id));
            }
            Ok(StageOutcome::Interrupted(dir)) => {
                registry.finish_run(&run_id, RunStatus::Interrupted, Some("Ctrl-C"))?;
                let step = super::state::list(&stage_dir)
                    .last()
                    .map(|c| c.0)
                    .unwrap_or(0);
                return Err(Interrupted { step, dir }.into());
            }
            // The run is another worker's now: its registry rows are that worker's to write.
            Err(e) if e.is::<crate::registry::claims::ClaimLost>() => return Err(e),
            Err(e) => {
                registry.finish_run(&run_id, RunStatus::Failed, Some(&format!("{e:#}")))?;
                return Err(e.context(format!("stage `{}` of {}", stage.id(), path.display())));
            }
        }
    }
    std::fs::write(
        run_dir.join("done.json"),
        json!({"final": previous.map(|p| p.0)}).to_string(),
    )?;
    Ok(())
}

/// A rank other than 0 of a data-parallel job: trains the stages rank 0 says to, with rank 0's
/// starting weights, and writes nothing (no files, no registry).
pub(crate) fn follow_one(exp: &Experiment, opts: &RunOptions, stop: &AtomicBool) -> Result<()> {
    let cfg = model_config(exp)?;
    let dev = pick_device(opts.device.as_deref().unwrap_or(&exp.device))?;
    let run_dir = experiment::registry::run_dir(exp);
    for stage in &exp.stages {
        let turn: Turn = crate::dist::from_root(None, crate::dist::Wait::ForRoot)?;
        if !matches!(turn, Turn::Train) {
            continue;
        }
        // Rank 0's weights replace these: only the shapes count.
        let mut start = Checkpoint::init(&cfg, exp.seed, DType::F32, &dev)?;
        share_start(&mut start)?;
        let stage_dir = run_dir.join(stage.id());
        match train_stage(
            exp, stage, &cfg, start, &stage_dir, "", None, &dev, opts, stop,
        )? {
            StageOutcome::Done(_) => {}
            StageOutcome::Interrupted(dir) => {
                return Err(Interrupted { step: 0, dir }.into());
            }
        }
    }
    Ok(())
}

/// Rank 0's starting weights on every rank.
fn share_start(start: &mut Checkpoint) -> Result<()> {
    if crate::dist::world().size == 1 {
        return Ok(());
    }
    let tensors: Vec<_> = start.tensors.values().cloned().collect();
    let shared = crate::dist::tensors::broadcast_tensors(&tensors)?;
    for (slot, t) in start.tensors.values_mut().zip(shared) {
        *slot = t;
    }
    Ok(())
}

/// The registry run holding a stage's rows: `<id>-<stage>`, or the other experiment's run whose
/// result the stage reused.
pub(crate) fn stage_run_id(exp: &Experiment, id: &str, stage: &Stage) -> String {
    let dir = experiment::registry::run_dir(exp).join(stage.id());
    read_stage_done(&dir)
        .and_then(|d| d.1)
        .unwrap_or_else(|| format!("{id}-{}", stage.id()))
}

/// A finished stage's final checkpoint, and the run that trained it when that was another
/// experiment's (a reused stage).
fn read_stage_done(stage_dir: &Path) -> Option<(PathBuf, Option<String>)> {
    let text = std::fs::read_to_string(stage_dir.join("done.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let dir = v["final"]
        .as_str()
        .map(PathBuf::from)
        .filter(|p| p.exists())?;
    Some((dir, v["reused"].as_str().map(str::to_string)))
}

/// So that `doge generate --model FINAL --prompt ...` has a tokenizer.
fn copy_tokenizer(exp: &Experiment, final_dir: &Path) {
    if let Ok(tok) = super::data_bridge::tokenizer_dir(exp) {
        for name in crate::checkpoint::COMPANION_FILES {
            let (src, dst) = (tok.join(name), final_dir.join(name));
            // An eval stage's final directory is the checkpoint it read, which may hold the
            // tokenizer itself: copying a file onto itself would empty it.
            let same = match (std::fs::canonicalize(&src), std::fs::canonicalize(&dst)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            if src.exists() && !same {
                let _ = std::fs::copy(&src, dst);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_stage(
    exp: &Experiment,
    stage: &Stage,
    cfg: &DogeConfig,
    previous: Option<&Path>,
    stage_dir: &Path,
    run_id: &str,
    registry: &mut Registry,
    dev: &Device,
    opts: &RunOptions,
    stop: &AtomicBool,
) -> Result<StageOutcome> {
    if stage.kind == StageKind::Eval {
        std::fs::create_dir_all(stage_dir)?; // for done.json
        let dir = crate::eval::stage::run(
            exp, stage, previous, registry, run_id, stage_dir, dev, opts.quiet,
        )?;
        return Ok(StageOutcome::Done(dir));
    }
    let (mut start, init_dir) = initial_weights(exp, stage, cfg, previous, dev)?;
    share_start(&mut start)?;
    // Lineage: the checkpoint this stage starts from (the previous stage's final one, or `init`),
    // recorded once, when the stage starts rather than resumes.
    if let Some(dir) = init_dir.filter(|_| super::state::list(stage_dir).is_empty()) {
        registry.add_artifact(run_id, "init", &dir, None)?;
    }
    train_stage(
        exp,
        stage,
        cfg,
        start,
        stage_dir,
        run_id,
        Some(registry),
        dev,
        opts,
        stop,
    )
}

/// A training stage (pretrain, SFT or DPO) from `start`: on rank 0 reporting to the registry,
/// on the other ranks of a data-parallel job (`registry` None) silently.
#[allow(clippy::too_many_arguments)]
fn train_stage(
    exp: &Experiment,
    stage: &Stage,
    cfg: &DogeConfig,
    start: Checkpoint,
    stage_dir: &Path,
    run_id: &str,
    registry: Option<&mut Registry>,
    dev: &Device,
    opts: &RunOptions,
    stop: &AtomicBool,
) -> Result<StageOutcome> {
    let world = crate::dist::world();
    if stage.kind == StageKind::Dpo {
        return run_dpo_stage(
            exp, stage, cfg, start, stage_dir, run_id, registry, dev, opts, stop,
        );
    }
    let rows = super::data_bridge::stage_rows(exp, stage)?;
    let settings = stage_settings(
        stage,
        rows.num_train_rows(),
        rows.row_len().saturating_sub(1),
        format!("{run_id}:{}", rows.row_len()),
        world.size,
    )?;
    let mut observer = match registry {
        Some(registry) => {
            opts.say(&format!(
                "stage {}: {} steps x {} rows of {} tokens ({} train rows, {} test rows)",
                stage.id(),
                settings.total_steps,
                global_batch(&settings, world.size),
                rows.row_len(),
                rows.num_train_rows(),
                rows.num_test_rows()
            ));
            stage_observer(registry, run_id, &settings, opts)?
                .with_utilisation(utilisation(exp, cfg, rows.row_len(), dev, opts))
                .boxed()
        }
        None => Box::new(Silent) as Box<dyn StageObserver>,
    };
    let _autocast = crate::model::autocast::enable(exp.precision.matmul_dtype());
    if stage.kind == StageKind::Sft {
        return super::sft::train(
            start,
            rows.as_ref(),
            &settings,
            stage_dir,
            observer.as_mut(),
            stop,
        );
    }
    pretrain::train(
        start,
        rows.as_ref(),
        &settings,
        stage_dir,
        observer.as_mut(),
        stop,
    )
}

/// `4 = 2 ranks x 2 x 1` style: the rows of one optimizer step over every rank.
fn global_batch(s: &StageSettings, world_size: usize) -> String {
    let rows = world_size * s.batch_size * s.grad_accum;
    if world_size == 1 {
        return rows.to_string();
    }
    format!(
        "{rows} (= {world_size} ranks x batch {} x grad-accum {})",
        s.batch_size, s.grad_accum
    )
}

/// Rank 0's observer: the registry (which also records the world size and global batch) and the
/// progress bar.
fn stage_observer<'a>(
    registry: &'a mut Registry,
    run_id: &str,
    s: &StageSettings,
    opts: &RunOptions,
) -> Result<RegistryObserver<'a>> {
    let world = crate::dist::world().size;
    registry.set_parallelism(
        run_id,
        world as u64,
        (world * s.batch_size * s.grad_accum) as u64,
    )?;
    RegistryObserver::new(registry, run_id, s.total_steps, opts)
}

/// The other ranks' observer: they report nothing (rank 0 reports the job's numbers).
struct Silent;

impl StageObserver for Silent {
    fn metrics(&mut self, _: u64, _: &[(&str, f64)]) -> Result<()> {
        Ok(())
    }
    fn checkpoint(&mut self, _: &Path, _: u64) -> Result<()> {
        Ok(())
    }
    fn println(&mut self, _: &str) {}
}

/// A DPO stage: preference pairs, the starting weights as the frozen reference, `data.seq-len`
/// as the length limit of prompt + answer.
#[allow(clippy::too_many_arguments)]
fn run_dpo_stage(
    exp: &Experiment,
    stage: &Stage,
    cfg: &DogeConfig,
    start: Checkpoint,
    stage_dir: &Path,
    run_id: &str,
    registry: Option<&mut Registry>,
    dev: &Device,
    opts: &RunOptions,
    stop: &AtomicBool,
) -> Result<StageOutcome> {
    let world = crate::dist::world();
    let pairs = super::data_bridge::stage_dataset(exp, stage)?;
    let max_len = pairs.seq_len();
    let beta = stage.beta.unwrap_or(0.1);
    let settings = stage_settings(
        stage,
        pairs.num_train_rows(),
        2 * max_len,
        format!("{run_id}:dpo:{max_len}:{beta}"),
        world.size,
    )?;
    let mut observer = match registry {
        Some(registry) => {
            opts.say(&format!(
                "stage {}: {} steps x {} pairs of at most {max_len} tokens ({} train pairs, {} test pairs), beta {beta}",
                stage.id(),
                settings.total_steps,
                global_batch(&settings, world.size),
                pairs.num_train_rows(),
                pairs.num_test_rows()
            ));
            stage_observer(registry, run_id, &settings, opts)?
                .with_utilisation(utilisation(exp, cfg, max_len, dev, opts))
                .boxed()
        }
        None => Box::new(Silent) as Box<dyn StageObserver>,
    };
    let _autocast = crate::model::autocast::enable(exp.precision.matmul_dtype());
    super::dpo::train(
        start,
        &pairs,
        beta,
        max_len,
        &settings,
        stage_dir,
        observer.as_mut(),
        stop,
    )
}

/// Where a stage starts: its own `init`, else the previous stage's result, else the model's `init`,
/// else a fresh initialisation from the experiment's seed.
/// An `init` checkpoint: a path relative to the experiment file, or a hub id (`owner/name`,
/// `owner/name@revision`) downloaded into the hub cache (read from it alone when offline).
fn init_dir(exp: &Experiment, init: &str) -> Result<PathBuf> {
    if experiment::spec::is_local(init) {
        return Ok(exp.local_path(init));
    }
    let dir =
        crate::data::hub::model_dir(Path::new(init), &crate::data::hub::HubOptions::from_env())
            .with_context(|| format!("model init `{init}`"))?;
    // Absolute, so that it reads as a local path wherever the experiment file is.
    Ok(std::path::absolute(&dir)?)
}

/// The model's config: from the spec (preset, dims, or a local `init`), or from the `init`
/// checkpoint on the hub once downloaded.
fn model_config(exp: &Experiment) -> Result<DogeConfig> {
    if let Some(cfg) = exp
        .model
        .to_config(&exp.base_dir)
        .map_err(|e| anyhow!("model: {e}"))?
    {
        return Ok(cfg);
    }
    let init = exp.model.init.as_deref().unwrap_or_default();
    let mut spec = exp.model.clone();
    spec.init = Some(init_dir(exp, init)?.display().to_string());
    spec.to_config(&exp.base_dir)
        .map_err(|e| anyhow!("model: {e}"))?
        .ok_or_else(|| anyhow!("model init `{init}`: no config"))
}

fn initial_weights(
    exp: &Experiment,
    stage: &Stage,
    cfg: &DogeConfig,
    previous: Option<&Path>,
    dev: &Device,
) -> Result<(Checkpoint, Option<PathBuf>)> {
    let source = match (&stage.init, previous, &exp.model.init) {
        (Some(p), _, _) => Some(init_dir(exp, p)?),
        (None, Some(prev), _) => Some(prev.to_path_buf()),
        (None, None, Some(p)) => Some(init_dir(exp, p)?),
        (None, None, None) => None,
    };
    match source {
        None => Ok((Checkpoint::init(cfg, exp.seed, DType::F32, dev)?, None)),
        Some(dir) => {
            let loaded = Checkpoint::load(&dir, DType::F32, dev)?;
            Ok((adapt(loaded, cfg, exp.seed, &dir)?, Some(dir)))
        }
    }
}

/// Loaded weights in the shape of `cfg`: as they are when the dims agree, or upcycled (a dense
/// checkpoint into a CDMoE model: every dense tensor copied, router and experts initialised).
fn adapt(loaded: Checkpoint, cfg: &DogeConfig, seed: u64, dir: &Path) -> Result<Checkpoint> {
    if loaded.config == *cfg {
        return Ok(loaded);
    }
    let dev = loaded
        .tensors
        .values()
        .next()
        .map(|t| t.device().clone())
        .unwrap_or(Device::Cpu);
    let mut target = Checkpoint::init(cfg, seed, DType::F32, &dev)?;
    target.remote_code = loaded.remote_code;
    for (name, t) in loaded.tensors {
        match target.tensors.get(&name) {
            Some(slot) if slot.dims() == t.dims() => {
                target.tensors.insert(name, t);
            }
            Some(slot) => bail!(
                "{}: tensor `{name}` has shape {:?} but the experiment's model needs {:?}",
                dir.display(),
                t.dims(),
                slot.dims()
            ),
            None => bail!(
                "{}: tensor `{name}` has no place in the experiment's model",
                dir.display()
            ),
        }
    }
    Ok(target)
}

/// Turns the stage's fractions and lengths into optimizer steps.
fn stage_settings(
    stage: &Stage,
    num_train: usize,
    tokens_per_example: usize,
    config_hash: String,
    world_size: usize,
) -> Result<StageSettings> {
    // `batch-size` is each rank's; max-tokens and epochs count the rows of all ranks.
    let rows_per_step = (world_size * stage.batch_size * stage.grad_accum) as u64;
    let tokens_per_step = (rows_per_step * tokens_per_example as u64).max(1);
    let total_steps = match (stage.max_steps, stage.max_tokens, stage.epochs) {
        (Some(s), _, _) => s,
        (None, Some(t), _) => t.div_ceil(tokens_per_step),
        (None, None, Some(e)) => ((e * num_train as f64) / rows_per_step as f64).ceil() as u64,
        (None, None, None) => bail!(
            "stage `{}` needs max-steps, max-tokens or epochs",
            stage.id()
        ),
    };
    // transformers rounds warmup (and decay) step counts up from their ratios.
    let steps = |ratio: f64| (ratio * total_steps as f64).ceil() as u64;
    let schedule = match stage.schedule {
        experiment::Schedule::Wsd {
            warmup,
            decay,
            min_lr_rate,
        } => Schedule::Wsd {
            warmup_steps: steps(warmup),
            decay_steps: steps(decay),
            min_lr_rate,
        },
        experiment::Schedule::Cosine {
            warmup,
            min_lr_rate,
        } => Schedule::Cosine {
            warmup_steps: steps(warmup),
            min_lr_rate,
        },
        experiment::Schedule::Constant { warmup } => Schedule::Constant {
            warmup_steps: steps(warmup),
        },
    };
    Ok(StageSettings {
        adamw: AdamWConfig {
            lr: stage.lr,
            beta1: stage.optimizer.betas[0],
            beta2: stage.optimizer.betas[1],
            eps: stage.optimizer.eps,
            weight_decay: stage.optimizer.weight_decay,
        },
        schedule,
        total_steps,
        batch_size: stage.batch_size,
        grad_accum: stage.grad_accum,
        grad_clip: stage.grad_clip,
        log_every: stage.log_every,
        eval_every: stage.eval_every,
        save_every: stage.save_every,
        keep_last: stage.keep_last,
        max_bad_steps: MAX_BAD_STEPS,
        decay_all: false,
        config_hash,
    })
}

/// Sends a stage's metrics and checkpoints to the registry and its progress to a bar.
struct RegistryObserver<'a> {
    registry: &'a mut Registry,
    run_id: String,
    bar: ProgressBar,
    /// Turns tokens/s into MFU, on devices with a known peak.
    utilisation: Option<Utilisation>,
    /// Prefix of log lines when runs share the terminal.
    label: Option<String>,
    /// (run name, worker id) of the claim the metrics are written under.
    claim: Option<(String, String)>,
    total: u64,
    /// When and at which step this process started the stage (for the ETA of log lines).
    started: Option<(std::time::Instant, u64)>,
}

/// FLOPs per token of this model at this context, and the device's peak for the run's precision
/// (`--peak-tflops` wins over the datasheet table).
fn utilisation(
    exp: &Experiment,
    cfg: &DogeConfig,
    row_len: usize,
    dev: &Device,
    opts: &RunOptions,
) -> Option<Utilisation> {
    let matmul = exp.precision.matmul_dtype().unwrap_or(DType::F32);
    let peak = match opts.peak_tflops {
        Some(t) => t * 1e12,
        None => mfu::peak_flops(&mfu::device_name(dev)?, matmul)?,
    };
    // tokens/s is the job's (all ranks): so is the peak.
    Some(Utilisation {
        flops_per_token: train_flops_per_token(cfg, row_len),
        peak_flops: peak * crate::dist::world().size as f64,
    })
}

impl<'a> RegistryObserver<'a> {
    fn new(
        registry: &'a mut Registry,
        run_id: &str,
        total: u64,
        opts: &RunOptions,
    ) -> Result<Self> {
        registry.set_total_steps(run_id, total)?;
        let bar = if opts.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
            )
            .expect("a valid template"),
        );
        Ok(Self {
            registry,
            run_id: run_id.into(),
            bar,
            utilisation: None,
            label: opts.label.clone(),
            claim: opts.claim.clone(),
            total,
            started: None,
        })
    }

    fn with_utilisation(mut self, utilisation: Option<Utilisation>) -> Self {
        self.utilisation = utilisation;
        self
    }

    fn boxed(self) -> Box<dyn StageObserver + 'a> {
        Box::new(self)
    }
}

impl StageObserver for RegistryObserver<'_> {
    fn metrics(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let mut rows: Vec<(u64, &str, f64)> = values.iter().map(|(n, v)| (step, *n, *v)).collect();
        let tokens_per_s = values.iter().find(|(n, _)| *n == "tokens_per_s");
        if let (Some(u), Some((_, tps))) = (self.utilisation, tokens_per_s) {
            rows.push((step, "mfu", u.mfu(*tps)));
        }
        let claim = self.claim.as_ref().map(|(r, w)| (r.as_str(), w.as_str()));
        self.registry.log_metrics_as(&self.run_id, &rows, claim)?;
        // Without a bar (stderr not a terminal: nohup, SLURM; or --quiet) the log-every rows
        // are the progress: one line each.
        if self.bar.is_hidden() {
            if let Some(line) = self.log_line(step, values) {
                self.println(&line);
            }
        }
        Ok(())
    }
    fn checkpoint(&mut self, dir: &Path, step: u64) -> Result<()> {
        self.registry
            .add_artifact(&self.run_id, "checkpoint", dir, Some(step))
    }
    fn pruned(&mut self, dirs: &[PathBuf]) -> Result<()> {
        for d in dirs {
            self.registry.mark_artifact_deleted(&self.run_id, d)?;
        }
        Ok(())
    }
    fn resumed(&mut self, step: u64, total_steps: u64) -> Result<()> {
        if total_steps != self.total {
            self.total = total_steps;
            self.bar.set_length(total_steps);
            self.registry.set_total_steps(&self.run_id, total_steps)?;
        }
        // Steps after the checkpoint are redone: their earlier metrics would be duplicates.
        self.registry.truncate_metrics_after(&self.run_id, step)
    }
    fn progress(&mut self, step: u64, _total: u64, line: &str) {
        if self.started.is_none() {
            self.started = Some((std::time::Instant::now(), step.saturating_sub(1)));
        }
        self.bar.set_position(step);
        // The loop's line ends in "<N> tok/s"; the MFU follows it where the peak is known.
        let tokens_per_s = line
            .strip_suffix(" tok/s")
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok());
        match (self.utilisation, tokens_per_s) {
            (Some(u), Some(tps)) => self
                .bar
                .set_message(format!("{line} MFU {:.1}%", 100.0 * u.mfu(tps))),
            _ => self.bar.set_message(line.to_string()),
        }
    }
    fn println(&mut self, line: &str) {
        // A hidden bar (quiet, or stderr not a terminal) swallows println: logs must still show.
        if let Some(l) = &self.label {
            eprintln!("[{l}] {line}");
        } else if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

impl RegistryObserver<'_> {
    /// `step 40/300 loss 5.1234 lr 3.00e-3 2150 tok/s ETA 0:02:01` for a training log row
    /// (eval rows, which have no lr, print their own line).
    fn log_line(&self, step: u64, values: &[(&str, f64)]) -> Option<String> {
        let get = |n: &str| values.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        let (loss, lr) = (get("loss")?, get("lr")?);
        let mut line = format!("step {step}/{} loss {loss:.4} lr {lr:.2e}", self.total);
        if let Some(tps) = get("tokens_per_s") {
            line += &format!(" {tps:.0} tok/s");
        }
        if let Some((t0, s0)) = self.started {
            let done = step.saturating_sub(s0);
            if done > 0 {
                let eta = t0.elapsed().as_secs_f64() / done as f64
                    * self.total.saturating_sub(step) as f64;
                let eta = eta.round() as u64;
                line += &format!(" ETA {}:{:02}:{:02}", eta / 3600, eta / 60 % 60, eta % 60);
            }
        }
        Some(line)
    }
}

impl Drop for RegistryObserver<'_> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::presets::DOGE_TINY;

    fn small(is_moe: bool) -> DogeConfig {
        let mut c = DOGE_TINY.config();
        c.vocab_size = 300;
        c.num_hidden_layers = 2;
        c.is_moe = is_moe;
        c.num_experts = 16;
        c.num_experts_per_tok = 2;
        c
    }

    #[test]
    fn upcycling_copies_every_dense_tensor_and_adds_experts() {
        let dense = Checkpoint::init(&small(false), 1, DType::F32, &Device::Cpu).unwrap();
        let moe = adapt(dense.clone(), &small(true), 2, Path::new("dense")).unwrap();
        assert!(moe.config.is_moe);
        for (name, t) in &dense.tensors {
            let got = moe.tensors[name]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(
                got,
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "{name}"
            );
        }
        for name in [
            "mlp.router_gate.weight",
            "mlp.down_embed.weight",
            "mlp.up_embed.weight",
        ] {
            assert!(
                moe.tensors.contains_key(&format!("model.layers.1.{name}")),
                "{name}"
            );
        }
        assert_eq!(moe.tensors.len(), dense.tensors.len() + 2 * 3);
    }

    #[test]
    fn a_smalldoge_checkpoint_upcycles_in_its_layout_with_its_remote_code() {
        let layout = |is_moe| DogeConfig {
            layout: crate::model::Layout::SmallDoge,
            ..small(is_moe)
        };
        let mut dense = Checkpoint::init(&layout(false), 1, DType::F32, &Device::Cpu).unwrap();
        dense
            .remote_code
            .insert("modeling_doge.py".into(), b"# remote".to_vec());
        let moe = adapt(dense.clone(), &layout(true), 2, Path::new("dense")).unwrap();
        assert_eq!(moe.config.layout, crate::model::Layout::SmallDoge);
        assert_eq!(moe.remote_code, dense.remote_code);
        assert!(!moe.tensors.keys().any(|k| k.contains("q_norm")));
        let heads = moe.config.num_attention_heads;
        assert_eq!(moe.tensors["model.layers.0.self_attn.A"].dims(), [heads]);
        for (name, t) in &dense.tensors {
            assert_eq!(
                moe.tensors[name]
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "{name}"
            );
        }
        assert_eq!(moe.tensors.len(), dense.tensors.len() + 2 * 3);
    }

    #[test]
    fn a_checkpoint_of_other_dims_is_refused_by_tensor() {
        let dense = Checkpoint::init(&small(false), 1, DType::F32, &Device::Cpu).unwrap();
        let mut wider = small(false);
        wider.intermediate_size = 512;
        let err = adapt(dense, &wider, 2, Path::new("dense"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mlp.down_proj.weight")
                && err.contains("[128, 256]")
                && err.contains("[128, 512]"),
            "{err}"
        );
    }
}
