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
pub mod loader;
pub mod metrics;
pub mod multiple_choice;
pub mod perplexity;
pub mod record;
pub mod results_file;
pub mod samples;
pub mod scoring;
pub mod stage;
pub mod tasks;

use std::path::{Path, PathBuf};
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
        }
    }
}

/// One task as asked for: `NAME[:SHOTS][=SOURCE]`, SOURCE a local path or `hub:ID[:CONFIG]`.
#[derive(Clone)]
pub struct TaskRequest {
    pub def: &'static TaskDef,
    pub shots: Option<usize>,
    pub source: Option<Source>,
}

impl std::fmt::Debug for TaskRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRequest")
            .field("task", &self.def.name)
            .field("shots", &self.shots)
            .field("source", &self.source)
            .finish()
    }
}

/// Parses a comma-separated task list (`arc` stands for `arc_easy,arc_challenge`); relative
/// local sources are resolved against `base`.
pub fn parse_tasks(specs: &[String], base: &Path) -> Result<Vec<TaskRequest>> {
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
        let (name, shots) = match head.split_once(':') {
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
        if name.trim() == "arc" {
            if source.is_some() {
                bail!("task `{spec}`: give arc_easy and arc_challenge their sources separately");
            }
            for n in ["arc_easy", "arc_challenge"] {
                out.push(TaskRequest {
                    def: tasks::find(n)?,
                    shots,
                    source: None,
                });
            }
            continue;
        }
        let def = tasks::find(name)?;
        if matches!(def.kind, Kind::Perplexity) && source.is_none() {
            bail!("task `{spec}`: perplexity needs a text set, e.g. `perplexity=path/to/texts` or `perplexity=hub:Salesforce/wikitext:wikitext-2-raw-v1`");
        }
        out.push(TaskRequest { def, shots, source });
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

    /// Runs the tasks in order; when both ARC sets ran, an `arc` line averages them (small-doge's
    /// `custom|arc` and the published "ARC" column).
    pub fn run(&self, requests: &[TaskRequest]) -> Result<Vec<TaskResult>> {
        let mut results = Vec::new();
        for r in requests {
            let res = self
                .run_task(r)
                .with_context(|| format!("task {}", r.def.name))?;
            results.push(res);
        }
        if let Some(arc) = arc_average(&results) {
            results.push(arc);
        }
        Ok(results)
    }

    pub fn run_task(&self, req: &TaskRequest) -> Result<TaskResult> {
        let def = req.def;
        let start = Instant::now();
        let shots = req.shots.or(self.opts.shots).unwrap_or(def.default_shots);
        let source = self.source_of(req);
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
        })
    }

    /// The task's own source, else its folder under `--data-dir`, else the hub.
    fn source_of(&self, req: &TaskRequest) -> Source {
        if let Some(s) = &req.source {
            return s.clone();
        }
        if let Some(dir) = &self.opts.data_dir {
            let p = dir.join(req.def.folder);
            if p.exists() {
                return Source::Local(p);
            }
            if self.opts.show_progress {
                eprintln!("{}: no {} folder; using the hub", req.def.name, p.display());
            }
        }
        let (id, config) = req.def.hub.expect("perplexity has a source");
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
    })
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
