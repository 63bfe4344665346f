//! Downstream evaluation as lighteval and lm-eval score it: multiple choice by log-likelihood
//! (`acc`, `acc_norm`, `acc_norm_nospace`), TriviaQA by greedy generation (`qem`), and perplexity /
//! bits per byte of a text set. See README.md in this folder for every task's prompt and how the
//! numbers compare with the harnesses'.
//!
//! - `loader.rs`: rows from local files or the hub; `tasks/`: one file per task (row -> prompt);
//! - `encoding.rs`: text pairs -> token requests (lm-eval's context/continuation split);
//! - `scoring.rs`: the single batched scoring path; `multiple_choice.rs`, `perplexity.rs`,
//!   `tasks/triviaqa.rs`: each family's loop and metrics; `metrics.rs`: means and standard errors;
//! - `samples.rs`: `--log-samples`; `record.rs`: scores into the registry; `cli.rs`: `doge eval`;
//!   `stage.rs`: the `eval` stage of experiments.

pub mod cli;
pub mod encoding;
pub mod fewshot;
pub mod generation;
pub mod loader;
pub mod metrics;
pub mod multiple_choice;
pub mod perplexity;
pub mod record;
pub mod results_file;
pub mod samples;
pub mod scoring;
pub mod stage;
pub mod taskfile;
pub mod tasks;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::data::hub::HubOptions;
use crate::data::progress::Progress;
use crate::data::tokenizer::DogeTokenizer;
use crate::model::DogeForCausalLM;
use loader::Source;
use metrics::Score;
use tasks::{Kind, TaskDef};

/// Settings shared by every task of one evaluation.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Sequences per forward pass; scores do not depend on it.
    pub batch_size: usize,
    /// Longest sequence the model reads (default: the model's `max_position_embeddings`).
    pub max_len: Option<usize>,
    /// Overrides every task's default number of few-shot examples.
    pub shots: Option<usize>,
    /// Only the first N items of each task.
    pub limit: Option<usize>,
    /// Seed of the few-shot draw.
    pub seed: u64,
    /// Folder with one sub-folder per task (`hellaswag/validation.jsonl`, `mmlu/test/*.jsonl`);
    /// tasks without a folder there (or without this option) come from the hub.
    pub data_dir: Option<PathBuf>,
    pub hub: HubOptions,
    /// Progress bars on stderr.
    pub show_progress: bool,
    /// Overrides every task's beginning-of-sequence setting (`--add-bos`): `Some(true)` puts
    /// bos first, `Some(false)` encodes without special tokens; `None` leaves it to the task.
    pub add_bos: Option<bool>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            batch_size: 16,
            max_len: None,
            shots: None,
            limit: None,
            seed: fewshot::DEFAULT_SEED,
            data_dir: None,
            hub: HubOptions::from_env(),
            show_progress: false,
            add_bos: None,
        }
    }
}

/// A built-in benchmark or a task file.
#[derive(Clone)]
pub enum TaskKind {
    Builtin(&'static TaskDef),
    File(Arc<taskfile::TaskConfig>),
}

/// One task as asked for: `NAME[:SHOTS][=SOURCE]`, SOURCE a local path or `hub:ID[:CONFIG]`;
/// or a task file (`path/task.yaml[:SHOTS]`), or a name defined under `--include-path`.
#[derive(Clone)]
pub struct TaskRequest {
    pub kind: TaskKind,
    pub shots: Option<usize>,
    pub source: Option<Source>,
    /// The group this task was asked for through, whose scores it averages into.
    pub group: Option<Arc<taskfile::GroupRun>>,
}

impl TaskRequest {
    pub fn name(&self) -> &str {
        match &self.kind {
            TaskKind::Builtin(d) => d.name,
            TaskKind::File(t) => &t.name,
        }
    }
}

impl std::fmt::Debug for TaskRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRequest")
            .field("task", &self.name())
            .field("shots", &self.shots)
            .field("source", &self.source)
            .finish()
    }
}

/// Parses a comma-separated task list (`arc` stands for `arc_easy,arc_challenge`); relative
/// local sources are resolved against `base`.
pub fn parse_tasks(specs: &[String], base: &Path) -> Result<Vec<TaskRequest>> {
    parse_tasks_with(specs, base, &[])
}

/// [`parse_tasks`] with task files: entries that are `.yaml`/`.yml`/`.kdl` files, and names
/// defined by the task files under `include_paths` (lm-eval's `--include-path`), which come
/// before the built-in tasks of the same name.
pub fn parse_tasks_with(
    specs: &[String],
    base: &Path,
    include_paths: &[PathBuf],
) -> Result<Vec<TaskRequest>> {
    let index = taskfile::index(include_paths);
    let mut out = Vec::new();
    for spec in specs.iter().flat_map(|s| s.split(',')) {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        let (head, source) = match spec.split_once('=') {
            Some((h, s)) => (h, Some(parse_source(s.trim(), base))),
            None => (spec, None),
        };
        let (name, shots) = match head.rsplit_once(':') {
            Some((n, k))
                if k.trim().chars().all(|c| c.is_ascii_digit()) && !k.trim().is_empty() =>
            {
                (
                    n,
                    Some(k.trim().parse::<usize>().with_context(|| {
                        format!("task `{spec}`: `{k}` is not a number of shots")
                    })?),
                )
            }
            _ => (head, None),
        };
        if let Some(found) = taskfile::resolve(name.trim(), base, &index)? {
            if source.is_some() {
                bail!("task `{spec}`: a task file names its own data (`dataset_path`, `dataset_kwargs`); drop `=SOURCE`");
            }
            for (task, group) in found {
                out.push(TaskRequest {
                    kind: TaskKind::File(task),
                    shots,
                    source: None,
                    group,
                });
            }
            continue;
        }
        if name.trim() == "arc" {
            if source.is_some() {
                bail!("task `{spec}`: give arc_easy and arc_challenge their sources separately");
            }
            for n in ["arc_easy", "arc_challenge"] {
                out.push(TaskRequest {
                    kind: TaskKind::Builtin(tasks::find(n)?),
                    shots,
                    source: None,
                    group: None,
                });
            }
            continue;
        }
        let def = tasks::find(name)?;
        if matches!(def.kind, Kind::Perplexity) && source.is_none() {
            bail!("task `{spec}`: perplexity needs a text set, e.g. `perplexity=path/to/texts` or `perplexity=hub:Salesforce/wikitext:wikitext-2-raw-v1`");
        }
        out.push(TaskRequest {
            kind: TaskKind::Builtin(def),
            shots,
            source,
            group: None,
        });
    }
    if out.is_empty() {
        bail!("no tasks given; e.g. --tasks hellaswag,arc_easy");
    }
    Ok(out)
}

fn parse_source(s: &str, base: &Path) -> Source {
    match s.strip_prefix("hub:") {
        Some(rest) => {
            let (id, config) = match rest.split_once(':') {
                Some((i, c)) => (i.to_string(), Some(c.to_string())),
                None => (rest.to_string(), None),
            };
            Source::Hub { id, config }
        }
        None => Source::Local(base.join(s)),
    }
}

/// What one task measured.
#[derive(Debug, Clone)]
pub struct TaskResult {
    pub task: String,
    pub shots: usize,
    pub split: String,
    pub source: String,
    pub scores: Vec<Score>,
    pub samples: Vec<Value>,
    pub seconds: f64,
    /// Whether the scored sequences started with the beginning-of-sequence token.
    pub add_bos: Option<bool>,
    /// The task file the task came from (none for built-in tasks).
    pub task_file: Option<String>,
}

/// The model, tokenizer and options one evaluation runs with.
pub struct Evaluator<'a> {
    pub model: &'a DogeForCausalLM,
    pub tok: &'a DogeTokenizer,
    pub opts: &'a EvalOptions,
}

impl Evaluator<'_> {
    pub fn score_options(&self) -> scoring::ScoreOptions {
        scoring::ScoreOptions {
            batch_size: self.opts.batch_size,
            max_len: self
                .opts
                .max_len
                .unwrap_or(self.model.config().max_position_embeddings),
            share_contexts: scoring::share_contexts_default(),
            shared_min_context: scoring::SHARED_MIN_CONTEXT,
        }
    }

    pub fn progress(&self, task: &str, len: usize) -> Progress {
        let unit = if task == "triviaqa" {
            "items"
        } else {
            "requests"
        };
        Progress::new(self.opts.show_progress, len as u64, task, unit)
    }

    /// The beginning-of-sequence setting of built-in tasks: `--add-bos`, else the tokenizer's own.
    pub fn bos(&self) -> encoding::Bos {
        encoding::Bos::from_setting(self.opts.add_bos)
    }

    /// Runs the tasks in order and stops at the first failure; see [`Evaluator::run_all`].
    pub fn run(&self, requests: &[TaskRequest]) -> Result<Vec<TaskResult>> {
        let (results, mut errors) = self.run_all(requests);
        match errors.is_empty() {
            true => Ok(results),
            false => Err(errors.remove(0)),
        }
    }

    /// Runs every task; a task that fails is left out of the results (and so of the registry)
    /// and its error returned beside them. When both ARC sets ran, an `arc` line averages them
    /// (small-doge's `custom|arc` and the published "ARC" column); a group with
    /// `aggregate_metric_list` gets a line per metric over its tasks.
    pub fn run_all(&self, requests: &[TaskRequest]) -> (Vec<TaskResult>, Vec<anyhow::Error>) {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for r in requests {
            match self
                .run_task(r)
                .with_context(|| format!("task {}", r.name()))
            {
                Ok(res) => results.push(res),
                Err(e) => {
                    if self.opts.show_progress {
                        eprintln!("{e:#}");
                    }
                    errors.push(e)
                }
            }
        }
        if let Some(arc) = arc_average(&results) {
            results.push(arc);
        }
        results.extend(group_averages(requests, &results));
        (results, errors)
    }

    pub fn run_task(&self, req: &TaskRequest) -> Result<TaskResult> {
        let def = match &req.kind {
            TaskKind::File(task) => return taskfile::run::evaluate(self, task, req.shots),
            TaskKind::Builtin(def) => *def,
        };
        let start = Instant::now();
        let shots = req.shots.or(self.opts.shots).unwrap_or(def.default_shots);
        let source = self.source_of(def, req);
        let name = def.name.to_string();
        if matches!(def.kind, Kind::Perplexity) {
            let docs = match &source {
                Source::Local(p) => perplexity::local_docs(p)?,
                hub => perplexity::rows_to_docs(
                    &loader::require_split(hub, def.eval_splits, &self.opts.hub)?.rows,
                )?,
            };
            let docs = limited(docs, self.opts.limit);
            let (scores, samples) = perplexity::evaluate(self, &name, &docs)?;
            return Ok(TaskResult {
                task: name,
                shots: 0,
                split: "-".into(),
                source: source.to_string(),
                scores,
                samples,
                seconds: start.elapsed().as_secs_f64(),
                add_bos: Some(true),
                task_file: None,
            });
        }
        let eval = loader::require_split(&source, def.eval_splits, &self.opts.hub)?;
        let rows = limited(eval.rows.clone(), self.opts.limit);
        let pool_split = if shots > 0 {
            let s = loader::first_split(&source, def.fewshot_splits, &self.opts.hub)?;
            if s.is_none() {
                bail!(
                    "{source}: {shots}-shot needs a few-shot split ({}); pass --shots 0 or add one",
                    def.fewshot_splits.join(" or ")
                );
            }
            s
        } else {
            None
        };
        // A single file stands for every split: its few-shot pool is itself.
        let pool_is_eval = pool_split.as_ref().is_some_and(|p| {
            p.name == eval.name || matches!(&source, Source::Local(f) if f.is_file())
        });
        let pool_rows = pool_split.map(|p| p.rows).unwrap_or_default();
        let (scores, samples) = match def.kind {
            Kind::MultipleChoice(f) => {
                let docs: Vec<_> = rows.iter().map(f).collect::<Result<_>>()?;
                let pool: Vec<_> = pool_rows.iter().map(f).collect::<Result<_>>()?;
                multiple_choice::evaluate(self, &name, &docs, &pool, pool_is_eval, shots)?
            }
            Kind::Generation(f) => {
                let docs: Vec<_> = rows.iter().map(f).collect::<Result<_>>()?;
                let pool: Vec<_> = pool_rows.iter().map(f).collect::<Result<_>>()?;
                tasks::triviaqa::evaluate(self, &name, &docs, &pool, pool_is_eval, shots)?
            }
            Kind::Perplexity => unreachable!("handled above"),
        };
        Ok(TaskResult {
            task: name,
            shots,
            split: eval.name,
            source: source.to_string(),
            scores,
            samples,
            seconds: start.elapsed().as_secs_f64(),
            add_bos: Some(self.bos().starts_with_bos(self.tok)?),
            task_file: None,
        })
    }

    /// The task's own source, else its folder under `--data-dir`, else the hub.
    fn source_of(&self, def: &TaskDef, req: &TaskRequest) -> Source {
        if let Some(s) = &req.source {
            return s.clone();
        }
        if let Some(dir) = &self.opts.data_dir {
            let p = dir.join(def.folder);
            if p.exists() {
                return Source::Local(p);
            }
            if self.opts.show_progress {
                eprintln!("{}: no {} folder; using the hub", def.name, p.display());
            }
        }
        let (id, config) = def.hub.expect("perplexity has a source");
        Source::Hub {
            id: id.into(),
            config: config.map(str::to_string),
        }
    }
}

fn limited<T>(mut v: Vec<T>, limit: Option<usize>) -> Vec<T> {
    if let Some(n) = limit {
        v.truncate(n);
    }
    v
}

/// The mean of ARC-Easy and ARC-Challenge per metric (standard errors combined as independent).
fn arc_average(results: &[TaskResult]) -> Option<TaskResult> {
    let easy = results.iter().find(|r| r.task == "arc_easy")?;
    let hard = results.iter().find(|r| r.task == "arc_challenge")?;
    let scores = easy
        .scores
        .iter()
        .filter_map(|e| {
            let h = hard.scores.iter().find(|h| h.metric == e.metric)?;
            Some(Score {
                metric: e.metric.clone(),
                value: (e.value + h.value) / 2.0,
                stderr: e
                    .stderr
                    .zip(h.stderr)
                    .map(|(a, b)| (a * a + b * b).sqrt() / 2.0),
                n: e.n + h.n,
            })
        })
        .collect();
    Some(TaskResult {
        task: "arc".into(),
        shots: easy.shots,
        split: easy.split.clone(),
        source: "mean of arc_easy and arc_challenge".into(),
        scores,
        samples: Vec::new(),
        seconds: 0.0,
        add_bos: easy.add_bos,
        task_file: None,
    })
}

/// One line per metric of `aggregate_metric_list` for each group whose tasks all ran: their mean,
/// weighted by items when `weight_by_size` (lm-eval's default), with the pooled standard error.
fn group_averages(requests: &[TaskRequest], results: &[TaskResult]) -> Vec<TaskResult> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for g in requests.iter().filter_map(|r| r.group.as_ref()) {
        if seen.contains(&g.name.as_str()) || g.aggregate.is_empty() {
            continue;
        }
        seen.push(&g.name);
        let members: Vec<&TaskResult> = g
            .tasks
            .iter()
            .filter_map(|t| results.iter().find(|r| &r.task == t))
            .collect();
        if members.len() != g.tasks.len() {
            continue;
        }
        let scores = g
            .aggregate
            .iter()
            .filter_map(|(metric, by_size)| {
                let parts: Vec<&Score> = members
                    .iter()
                    .filter_map(|r| r.scores.iter().find(|s| &s.metric == metric))
                    .collect();
                if parts.len() != members.len() {
                    return None;
                }
                let w: Vec<f64> = parts
                    .iter()
                    .map(|s| if *by_size { s.n as f64 } else { 1.0 })
                    .collect();
                let total: f64 = w.iter().sum();
                let value = parts.iter().zip(&w).map(|(s, w)| s.value * w).sum::<f64>() / total;
                let stderr = parts
                    .iter()
                    .zip(&w)
                    .map(|(s, w)| s.stderr.map(|e| (e * w / total).powi(2)))
                    .sum::<Option<f64>>()
                    .map(f64::sqrt);
                Some(Score {
                    metric: metric.clone(),
                    value,
                    stderr,
                    n: parts.iter().map(|s| s.n).sum(),
                })
            })
            .collect();
        out.push(TaskResult {
            task: g.name.clone(),
            shots: members[0].shots,
            split: members[0].split.clone(),
            source: format!("mean of {}", g.tasks.join(", ")),
            scores,
            samples: Vec::new(),
            seconds: 0.0,
            add_bos: members[0].add_bos,
            task_file: None,
        });
    }
    out
}

/// The results as an aligned table (task, metric, value, stderr, n, shots, split).
pub fn results_table(results: &[TaskResult]) -> String {
    let header: Vec<String> = ["task", "metric", "value", "stderr", "n", "shots", "split"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let rows: Vec<Vec<String>> = results
        .iter()
        .flat_map(|r| {
            r.scores.iter().map(move |s| {
                vec![
                    r.task.clone(),
                    s.metric.clone(),
                    format!("{:.4}", s.value),
                    s.stderr.map_or("-".into(), |e| format!("{e:.4}")),
                    s.n.to_string(),
                    r.shots.to_string(),
                    r.split.clone(),
                ]
            })
        })
        .collect();
    crate::registry::render::table(&header, &rows)
}
