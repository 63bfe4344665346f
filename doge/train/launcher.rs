//! `doge exp run`: turns an experiment into runs and lets workers share them through the
//! registry's claims (`registry::claims`).
//!
//! Every launcher walks the sweep's plan in order and trains the first run it can claim, then the
//! next, until none is left: any number of launchers (`--workers N` threads of one process, more
//! processes, other machines on the same registry server) cooperate, each run trained once. A run
//! whose worker died is taken over and continues from its newest checkpoint. `--array-index I`
//! (or `$SLURM_ARRAY_TASK_ID`) trains only the I-th run: one SLURM array task per run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};

use super::runner::{check_runnable, run_one, stop_flag, Interrupted, RunOptions};
use crate::experiment::{self, Run};
use crate::registry::claims::{self, ClaimStatus, Heartbeat, Outcome, Worker};
use crate::registry::db::Location;
use crate::registry::Registry;

/// Default seconds without a heartbeat before a claim counts as abandoned. Workers beat every
/// quarter of it, from a thread of their own, so long steps and checkpoint saves do not matter.
pub const DEFAULT_STALE_AFTER_S: f64 = 120.0;

/// What the workers of this process did.
#[derive(Default)]
struct Tally {
    trained: Vec<String>,
    failed: Vec<(String, String)>,
    /// Runs another worker took over while this one trained them.
    lost: Vec<String>,
    interrupted: Option<Interrupted>,
}

/// The shared state of one launch.
struct Launch<'a> {
    path: &'a Path,
    runs: &'a [Run],
    /// Plan indices this launch may train.
    indices: Vec<usize>,
    location: Location,
    worker: Worker,
    opts: &'a RunOptions,
    stop: &'a AtomicBool,
    tally: Mutex<Tally>,
    /// Runs already reported as done (each is said once, not at every pass over the plan).
    announced: Mutex<std::collections::HashSet<usize>>,
}

/// Runs the experiment file: every run of its sweep that no other worker holds, or only the one
/// `opts.array_index` names.
pub fn run_file(path: &Path, opts: &RunOptions) -> Result<()> {
    let world = crate::dist::init()?;
    let result = run_file_in(path, opts, world);
    // Leaving the MPI job cleanly is what tells the launcher this rank succeeded; a rank that
    // fails exits without it, and the launcher then ends the other ranks.
    if result.is_ok() {
        crate::dist::finalize();
    }
    result
}

fn run_file_in(path: &Path, opts: &RunOptions, world: crate::dist::World) -> Result<()> {
    let (top, runs) = experiment::plan_to_run(path, &opts.sets).map_err(|e| {
        eprint!("{e}");
        anyhow!(
            "{}: the experiment has errors; nothing was run",
            path.display()
        )
    })?;
    for run in &runs {
        check_runnable(&run.experiment)?;
    }
    let Some(first) = runs.first() else {
        return Ok(());
    };
    let indices = match opts.array_index {
        Some(i) if i >= runs.len() => bail!(
            "--array-index {i}: the plan of {} has {} run{} (indices 0 to {}); see `doge exp plan {}`",
            path.display(),
            runs.len(),
            if runs.len() == 1 { "" } else { "s" },
            runs.len() - 1,
            path.display()
        ),
        Some(i) => vec![i],
        None => (0..runs.len()).collect(),
    };
    if world.size > 1 && opts.workers > 1 {
        bail!(
            "--workers {} inside a job of {} ranks: a data-parallel job trains one run at a time over all its ranks; drop --workers (or launch one process per run)",
            opts.workers,
            world.size
        );
    }
    if !world.is_root() {
        return follow_root(&runs, opts);
    }
    let location = first.experiment.database();
    // Created (and migrated) once here, before the workers race to open it.
    drop(Registry::connect(&location)?);
    mark_server(&first.experiment.registry_dir(), &location)?;
    let worker = Worker::this_process();
    let stale_after = if opts.stale_after > 0.0 {
        opts.stale_after
    } else {
        DEFAULT_STALE_AFTER_S
    };
    let _heartbeat = Heartbeat::start(
        location.clone(),
        worker.clone(),
        (stale_after / 4.0).clamp(0.5, 30.0),
    );
    let stop = stop_flag();
    // Every run of a sweep records the sweep's name: the experiment's (`--sweep NAME` queries).
    let opts = &RunOptions {
        sweep: top.sweep.as_ref().map(|_| top.name.clone()),
        ..opts.clone()
    };
    let n_workers = opts.workers.max(1).min(indices.len());
    let launch = Launch {
        path,
        runs: &runs,
        indices,
        location,
        worker,
        opts,
        stop: &stop,
        tally: Mutex::new(Tally::default()),
        announced: Mutex::new(Default::default()),
    };
    if n_workers <= 1 {
        work(&launch, opts.clone(), stale_after);
    } else {
        // Each worker trains in a thread pool of its own share of the cores: fused ops split
        // their rows by the pool they run in (`rayon::current_num_threads`).
        let threads = (rayon::current_num_threads() / n_workers).max(1);
        eprintln!(
            "{n_workers} workers, {threads} thread{} each",
            if threads == 1 { "" } else { "s" }
        );
        std::thread::scope(|scope| -> Result<()> {
            for w in 0..n_workers {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(move |i| format!("doge-w{w}-{i}"))
                    .build()?;
                let launch = &launch;
                let opts = RunOptions {
                    quiet: true,
                    ..opts.clone()
                };
                scope.spawn(move || pool.install(|| work(launch, opts, stale_after)));
            }
            Ok(())
        })?;
    }
    let tally = launch.tally.into_inner().unwrap_or_default();
    let covered: Vec<&Run> = launch.indices.iter().map(|&i| &runs[i]).collect();
    print_summary(&covered, &launch.location)?;
    if let Some(i) = tally.interrupted {
        return Err(i.into());
    }
    if !tally.failed.is_empty() {
        let lines: Vec<String> = tally
            .failed
            .iter()
            .map(|(run, e)| format!("  {run}: {e}"))
            .collect();
        bail!(
            "{} of the runs failed:\n{}",
            tally.failed.len(),
            lines.join("\n")
        );
    }
    Ok(())
}

/// A rank other than 0: trains the runs rank 0 claims, in step with it, until it says none is left.
fn follow_root(runs: &[Run], opts: &RunOptions) -> Result<()> {
    let stop = stop_flag();
    loop {
        let next: Option<usize> = crate::dist::from_root(None, crate::dist::Wait::ForRoot)?;
        let Some(i) = next else { return Ok(()) };
        super::runner::follow_one(&runs[i].experiment, opts, &stop)?;
    }
}

/// Rank 0's choice of the next run, on every rank of a data-parallel job.
fn tell_next(next: Option<usize>) -> Result<Option<usize>> {
    if crate::dist::world().size == 1 {
        return Ok(next);
    }
    crate::dist::from_root(Some(&next), crate::dist::Wait::ForRoot)
}

/// One worker: claims the next free run, trains it, and again, until none is left.
fn work(launch: &Launch, mut opts: RunOptions, stale_after: f64) {
    // A job of several ranks trains in step: a failed run ends it (the launcher ends the others).
    let parallel = crate::dist::world().size > 1;
    let multi = opts.workers > 1;
    let mut registry = match Registry::connect(&launch.location) {
        Ok(r) => r,
        Err(e) => {
            let mut t = launch.tally.lock().unwrap();
            t.failed.push(("(worker)".into(), format!("{e:#}")));
            return;
        }
    };
    while !launch.stop.load(Ordering::SeqCst) {
        let next = match next_run(launch, &registry, stale_after).and_then(tell_next) {
            Ok(n) => n,
            Err(e) => {
                let mut t = launch.tally.lock().unwrap();
                t.failed.push(("(claim)".into(), format!("{e:#}")));
                return;
            }
        };
        let Some(i) = next else { return };
        let run = &launch.runs[i];
        let name = format!("{}-{}", run.experiment.name, run.id);
        if multi {
            opts.label = Some(name.clone());
        }
        opts.claim = Some((name.clone(), launch.worker.id.clone()));
        let set = |registry: &Registry, status, message: Option<&str>| {
            if let Err(e) = claims::set_status(registry, &launch.worker, &name, status, message) {
                eprintln!("warning: recording the claim of {name}: {e:#}");
            }
        };
        set(&registry, ClaimStatus::Running, None);
        let result = run_one(
            launch.path,
            &run.experiment,
            &run.id,
            &mut registry,
            &opts,
            launch.stop,
        );
        launch.announced.lock().unwrap().insert(i);
        let mut tally = launch.tally.lock().unwrap();
        match result {
            Ok(()) => {
                set(&registry, ClaimStatus::Done, None);
                tally.trained.push(name);
            }
            Err(e) if e.is::<claims::ClaimLost>() => {
                opts.say(&format!("{e}"));
                tally.lost.push(name);
            }
            Err(e) => match e.downcast::<Interrupted>() {
                Ok(i) => {
                    set(&registry, ClaimStatus::Interrupted, Some("Ctrl-C"));
                    tally.interrupted.get_or_insert(i);
                    return;
                }
                Err(e) => {
                    let text = format!("{e:#}");
                    set(&registry, ClaimStatus::Failed, Some(&text));
                    opts.say(&format!("run {name} failed: {text}"));
                    tally.failed.push((name, text));
                    if parallel {
                        return;
                    }
                }
            },
        }
    }
}

/// The plan index of the next run this worker claimed, or None when every run is done or held.
fn next_run(launch: &Launch, registry: &Registry, stale_after: f64) -> Result<Option<usize>> {
    for &i in &launch.indices {
        let run = &launch.runs[i];
        let exp = &run.experiment;
        let name = format!("{}-{}", exp.name, run.id);
        let files_done = experiment::registry::status(exp) == experiment::registry::RunStatus::Done;
        if files_done {
            claims::mark_done(registry, &launch.worker, &name, &exp.name, i)?;
            if launch.announced.lock().unwrap().insert(i) {
                eprintln!(
                    "{name}: already done ({})",
                    experiment::registry::run_dir(exp).display()
                );
            }
            continue;
        }
        match claims::try_claim(registry, &launch.worker, &name, &exp.name, i, stale_after)? {
            Outcome::Claimed { from } => {
                if let Some(c) = from.filter(|c| c.status.is_live() && c.worker != launch.worker.id)
                {
                    let why = if c.host == launch.worker.host
                        && crate::registry::now() - c.heartbeat_at <= stale_after
                    {
                        "is gone (its process no longer runs)".to_string()
                    } else {
                        format!(
                            "stopped beating {:.0} s ago",
                            crate::registry::now() - c.heartbeat_at
                        )
                    };
                    eprintln!(
                        "{name}: worker {}:{} {why}; taking its run over from its newest checkpoint",
                        c.host, c.pid
                    );
                }
                // Finished by another worker between the look above and the claim.
                if experiment::registry::status(exp) == experiment::registry::RunStatus::Done {
                    claims::set_status(registry, &launch.worker, &name, ClaimStatus::Done, None)?;
                    continue;
                }
                return Ok(Some(i));
            }
            Outcome::Taken(c) => {
                if launch.opts.array_index.is_some() {
                    eprintln!(
                        "{name}: {} by worker {}:{}; nothing to do here",
                        c.status.as_str(),
                        c.host,
                        c.pid
                    );
                }
            }
        }
    }
    Ok(None)
}

/// Beside run directories recorded on a server, its URL, so that `doge eval --model` of one of
/// their checkpoints finds the run (as `doge.sqlite` beside them does). Not written when the URL
/// holds a password.
fn mark_server(runs_dir: &Path, location: &Location) -> Result<()> {
    let Location::Postgres(url) = location else {
        return Ok(());
    };
    if location.to_string() != *url {
        return Ok(()); // shown redacted: it has a password
    }
    std::fs::create_dir_all(runs_dir)?;
    std::fs::write(
        runs_dir.join(crate::eval::record::SERVER_MARKER),
        format!("{url}\n"),
    )?;
    Ok(())
}

/// The runs this command covered, as `doge runs list` shows them: one row per stage.
fn print_summary(runs: &[&Run], location: &Location) -> Result<()> {
    let registry = Registry::connect(location)?;
    let ids: Vec<String> =
        runs.iter()
            .flat_map(|r| {
                r.experiment.stages.iter().map(move |s| {
                    format!("'{}'", super::runner::stage_run_id(&r.experiment, &r.id, s))
                })
            })
            .collect();
    let query = crate::registry::commands::ListQuery {
        filter: Some(format!("id in ({})", ids.join(", "))),
        sort: None,
        limit: None,
        format: crate::registry::render::Format::Table,
        all: true,
    };
    eprint!("\n{}", crate::registry::commands::list(&registry, &query)?);
    Ok(())
}
