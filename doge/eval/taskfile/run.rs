//! Running a task file as lm-eval runs it: rows -> (context, continuation) requests by the task's
//! output type -> the one scoring path -> lm-eval's metrics.
//!
//! Prompt layout (lm-eval's `fewshot_context` without a chat template):
//!
//! ```text
//! {description}{q_1}{target_delimiter}{a_1}{fewshot_delimiter}...{q_k}{target_delimiter}{a_k}{fewshot_delimiter}{q}
//! ```
//!
//! and a `multiple_choice` request scores `{target_delimiter}{choice}` after it. Few-shot examples
//! are drawn by doge's seeded sampler (`fewshot.rs`), not Python's `random.Random(1234)`, so
//! k-shot prompts hold other examples than lm-eval's; 0-shot prompts are identical.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use serde_json::{json, Value as Json};

use super::config::{FieldSpec, FilterStep, MetricSpec, OutputType, TaskConfig};
use super::template::{parse_python_literal, Literal};
use crate::eval::encoding::{encode_pair_with, encode_text, encode_unconditional, Bos};
use crate::eval::loader::{self, Row, Source};
use crate::eval::metrics::{argmax, mean_with_stderr, Score};
use crate::eval::scoring::{loglikelihoods, Request};
use crate::eval::{fewshot, perplexity, Evaluator, TaskResult};

/// `doc_to_text` of one row: the prompt, or (lm-eval's "multiple input" tasks) the index of the
/// choice that is the gold context.
#[derive(Debug, Clone, PartialEq)]
enum Text {
    Str(String),
    Index(usize),
}

/// `doc_to_target` of one row.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Index(i64),
    Str(String),
    List(Vec<Target>),
}

/// One row, rendered.
#[derive(Debug, Clone)]
struct Item {
    at: String,
    text: Text,
    choices: Option<Vec<String>>,
    target: Target,
    description: String,
}

/// What a template field resolved to for one row: the row's own field, or rendered text.
enum Resolved {
    Field(Json),
    Rendered(String),
    Int(i64),
    List(Vec<String>),
}

fn resolve(task: &TaskConfig, key: &str, spec: &FieldSpec, row: &Row) -> Result<Resolved> {
    Ok(match spec {
        FieldSpec::Int(i) => Resolved::Int(*i),
        FieldSpec::List(l) => Resolved::List(l.clone()),
        // lm-eval: a value that names a column of the dataset is that column, else a template.
        FieldSpec::Str(s) => match row.value.get(s) {
            Some(v) => Resolved::Field(v.clone()),
            None => Resolved::Rendered(task.templates.render(key, &row.value).map_err(|e| {
                anyhow!("{}: `{key}` ({}) fails on this row: {e}", row.at, task.pos)
            })?),
        },
    })
}

/// Python's `str.isdigit` on a rendered value.
fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_numeric())
}

fn literal_target(l: Literal) -> Option<Target> {
    match l {
        Literal::Int(i) => Some(Target::Index(i)),
        Literal::Str(s) => Some(Target::Str(s)),
        Literal::List(items) => items
            .into_iter()
            .map(literal_target)
            .collect::<Option<Vec<_>>>()
            .map(Target::List),
        _ => None,
    }
}

fn json_target(v: &Json, at: &str) -> Result<Target> {
    match v {
        Json::Number(n) => n
            .as_i64()
            .map(Target::Index)
            .ok_or_else(|| anyhow!("{at}: the target {n} is not a whole number")),
        Json::String(s) => Ok(Target::Str(s.clone())),
        Json::Array(items) => items
            .iter()
            .map(|i| json_target(i, at))
            .collect::<Result<_>>()
            .map(Target::List),
        Json::Bool(b) => Ok(Target::Index(*b as i64)),
        other => bail!("{at}: the target is {other}, not an index, a string or a list"),
    }
}

fn item(task: &TaskConfig, row: &Row) -> Result<Item> {
    let has_choices = task.doc_to_choice.is_some();
    let text = match resolve(task, "doc_to_text", &task.doc_to_text, row)? {
        Resolved::Int(i) => Text::Index(i as usize),
        Resolved::Field(Json::String(s)) => Text::Str(s),
        Resolved::Field(Json::Number(n)) if n.is_u64() => Text::Index(n.as_u64().unwrap() as usize),
        Resolved::Field(v) => bail!("{}: `doc_to_text` is the field {v}, not text", row.at),
        Resolved::Rendered(s) if is_digits(&s) && has_choices => Text::Index(s.parse()?),
        Resolved::Rendered(s) => Text::Str(s),
        Resolved::List(_) => bail!("{}: `doc_to_text` cannot be a list", row.at),
    };
    let choices = match &task.doc_to_choice {
        None => None,
        Some(spec) => Some(match resolve(task, "doc_to_choice", spec, row)? {
            Resolved::List(l) => l,
            Resolved::Field(Json::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Json::String(s) => Ok(s.clone()),
                    other => Err(anyhow!("{}: `doc_to_choice` holds {other}, not a string", row.at)),
                })
                .collect::<Result<_>>()?,
            Resolved::Field(v) => bail!("{}: `doc_to_choice` is the field {v}, not a list", row.at),
            Resolved::Rendered(s) => match parse_python_literal(&s) {
                Ok(Literal::List(items)) => items
                    .into_iter()
                    .map(|l| match l {
                        Literal::Str(s) => Ok(s),
                        other => Err(anyhow!("{}: `doc_to_choice` gave {other:?}, not a string", row.at)),
                    })
                    .collect::<Result<_>>()?,
                _ => bail!(
                    "{}: `doc_to_choice` rendered {s:?}, which is not a list of strings (write e.g. \"{{{{ [a, b] }}}}\" or a field holding a list)",
                    row.at
                ),
            },
            Resolved::Int(_) => bail!("{}: `doc_to_choice` cannot be a number", row.at),
        }),
    };
    let target = match resolve(task, "doc_to_target", &task.doc_to_target, row)? {
        Resolved::Int(i) => Target::Index(i),
        Resolved::List(l) => Target::List(l.into_iter().map(Target::Str).collect()),
        Resolved::Field(v) => json_target(&v, &row.at)?,
        Resolved::Rendered(s) if is_digits(&s) && has_choices => Target::Index(s.parse()?),
        Resolved::Rendered(s) if s.len() >= 2 && s.starts_with('[') && s.ends_with(']') => {
            parse_python_literal(&s)
                .ok()
                .and_then(literal_target)
                .unwrap_or(Target::Str(s))
        }
        Resolved::Rendered(s) => Target::Str(s),
    };
    let description = if task.description.is_empty() {
        String::new()
    } else {
        task.templates
            .render("description", &row.value)
            .map_err(|e| anyhow!("{}: `description` fails on this row: {e}", row.at))?
    };
    Ok(Item {
        at: row.at.clone(),
        text,
        choices,
        target,
        description,
    })
}

impl Item {
    /// The question text of a few-shot example or of the item itself.
    fn question(&self) -> Result<&str> {
        match (&self.text, &self.choices) {
            (Text::Str(s), _) => Ok(s),
            (Text::Index(i), Some(c)) => c.get(*i).map(String::as_str).ok_or_else(|| {
                anyhow!(
                    "{}: doc_to_text {i} is not an index of the {} choices",
                    self.at,
                    c.len()
                )
            }),
            (Text::Index(i), None) => bail!(
                "{}: doc_to_text gave the number {i} and the task has no doc_to_choice",
                self.at
            ),
        }
    }

    /// The answer written after a few-shot example (lm-eval's `build_qa_turn`).
    fn answer(&self) -> Result<Option<String>> {
        let multiple_input = matches!(self.text, Text::Index(_));
        let a = match &self.target {
            Target::List(l) => match l.first() {
                Some(t) => t.clone(),
                None => return Ok(None),
            },
            t => t.clone(),
        };
        Ok(match (a, &self.choices) {
            (Target::Index(i), Some(c)) if !multiple_input => {
                Some(c.get(i as usize).cloned().ok_or_else(|| {
                    anyhow!(
                        "{}: the target {i} is not an index of the {} choices",
                        self.at,
                        c.len()
                    )
                })?)
            }
            (Target::Index(i), _) => Some(i.to_string()),
            (Target::Str(s), _) if s.is_empty() => None,
            (Target::Str(s), _) => Some(s),
            (Target::List(_), _) => None,
        })
    }

    /// Gold choice indices of a multiple-choice item.
    fn golds(&self) -> Result<Vec<usize>> {
        let choices = self.choices.as_deref().unwrap_or(&[]);
        if let Text::Index(i) = self.text {
            // Multiple inputs: the text index is the gold context.
            return Ok(vec![i]);
        }
        let one = |t: &Target| -> Result<usize> {
            match t {
                Target::Index(i) if *i >= 0 && (*i as usize) < choices.len() => Ok(*i as usize),
                Target::Index(i) => bail!(
                    "{}: the target {i} is not an index of the {} choices",
                    self.at,
                    choices.len()
                ),
                Target::Str(s) => choices.iter().position(|c| c == s).ok_or_else(|| {
                    anyhow!(
                        "{}: the target {s:?} is not one of the choices {choices:?}",
                        self.at
                    )
                }),
                Target::List(_) => bail!("{}: a nested list as target", self.at),
            }
        };
        match &self.target {
            Target::List(l) => l.iter().map(one).collect(),
            t => Ok(vec![one(t)?]),
        }
    }
}

/// The rows of one split, from the task's data source.
fn rows(ev: &Evaluator, task: &TaskConfig, split: &str) -> Result<(Vec<Row>, String)> {
    let dir = task
        .pos
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let local = |p: &str| -> PathBuf {
        let cwd = PathBuf::from(p);
        if cwd.exists() || cwd.is_absolute() {
            cwd
        } else {
            dir.join(p)
        }
    };
    if !task.data_files.is_empty() {
        let files = task
            .data_files
            .iter()
            .find(|(s, _)| s == split)
            .map(|(_, f)| f)
            .ok_or_else(|| {
                anyhow!(
                    "{}: `dataset_kwargs.data_files` has no `{split}` split (it has {})",
                    task.pos,
                    task.data_files
                        .iter()
                        .map(|(s, _)| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        let mut out = Vec::new();
        for f in files {
            out.extend(loader::read_rows(&local(f))?);
        }
        return Ok((out, files.join(", ")));
    }
    let path = task
        .dataset_path
        .as_deref()
        .ok_or_else(|| anyhow!("{}: the task names no `dataset_path`", task.pos))?;
    let source = source_of(ev, task, path, &local(path));
    let split_rows = loader::require_split(&source, &[split], &ev.opts.hub)?;
    Ok((split_rows.rows, source.to_string()))
}

/// A local folder `dataset_path`, else its folder under `--data-dir`
/// (`DIR/<dataset_path>[/<dataset_name>]` or `DIR/<task>`), else the hub.
fn source_of(ev: &Evaluator, task: &TaskConfig, path: &str, local: &Path) -> Source {
    if local.exists() {
        return Source::Local(local.to_path_buf());
    }
    if let Some(dir) = &ev.opts.data_dir {
        let mut candidates = Vec::new();
        if let Some(name) = &task.dataset_name {
            candidates.push(dir.join(path).join(name));
        }
        candidates.push(dir.join(path));
        candidates.push(dir.join(&task.name));
        if let Some(p) = candidates.into_iter().find(|p| p.exists()) {
            return Source::Local(p);
        }
    }
    Source::Hub {
        id: path.to_string(),
        config: task.dataset_name.clone(),
    }
}

/// Runs one task file.
pub fn evaluate(ev: &Evaluator, task: &TaskConfig, shots: Option<usize>) -> Result<TaskResult> {
    let start = Instant::now();
    let split = task.eval_split().ok_or_else(|| {
        anyhow!(
            "{}: the task names no `test_split` or `validation_split` to score",
            task.pos
        )
    })?;
    let (mut eval_rows, source) = rows(ev, task, split)?;
    if let Some(n) = ev.opts.limit {
        eval_rows.truncate(n);
    }
    let shots = shots.or(ev.opts.shots).or(task.num_fewshot).unwrap_or(0);
    let bos = Bos::from_setting(ev.opts.add_bos.or(task.add_bos));
    let items: Vec<Item> = eval_rows
        .iter()
        .enumerate()
        .map(|(i, r)| item(task, r).with_context(|| format!("task {}, item {i}", task.name)))
        .collect::<Result<_>>()?;
    let (pool, pool_is_eval) = if shots > 0 && task.output_type != OutputType::LoglikelihoodRolling
    {
        let pool_split = task.fewshot_pool_split().ok_or_else(|| {
            anyhow!(
                "{}: {shots}-shot needs a `fewshot_split` or `training_split`",
                task.pos
            )
        })?;
        let pool_rows = if let Some(samples) = &task.fewshot_samples {
            samples
                .iter()
                .enumerate()
                .map(|(i, v)| Row {
                    at: format!("{}: fewshot_config.samples[{i}]", task.pos),
                    value: v.clone(),
                })
                .collect()
        } else if pool_split == split {
            eval_rows.clone()
        } else {
            rows(ev, task, pool_split)?.0
        };
        let pool: Vec<Item> = pool_rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                item(task, r).with_context(|| format!("task {}, few-shot row {i}", task.name))
            })
            .collect::<Result<_>>()?;
        (pool, pool_split == split && task.fewshot_samples.is_none())
    } else {
        (Vec::new(), false)
    };
    let candidates: Vec<usize> = (0..pool.len()).collect();
    let contexts: Vec<String> = items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let examples: Vec<usize> = if task.fewshot_first_n {
                candidates
                    .iter()
                    .copied()
                    .filter(|&c| !(pool_is_eval && c == i))
                    .take(shots)
                    .collect()
            } else {
                fewshot::draw(
                    &candidates,
                    pool_is_eval.then_some(i),
                    shots,
                    ev.opts.seed,
                    i,
                )
            };
            let mut s = it.description.clone();
            for &k in &examples {
                let ex = &pool[k];
                s.push_str(ex.question()?);
                if let Some(a) = ex.answer()? {
                    s.push_str(&task.target_delimiter);
                    s.push_str(&a);
                    s.push_str(&task.fewshot_delimiter);
                }
            }
            // Multiple inputs: the shared part; each choice's text is appended per request.
            if let Text::Str(q) = &it.text {
                s.push_str(q);
            }
            Ok(s)
        })
        .collect::<Result<_>>()
        .with_context(|| format!("task {}", task.name))?;
    let (scores, samples) = match task.output_type {
        OutputType::MultipleChoice => multiple_choice(ev, task, &items, &contexts, bos)?,
        OutputType::Loglikelihood => loglikelihood(ev, task, &items, &contexts, bos)?,
        OutputType::LoglikelihoodRolling => rolling(ev, task, &items, bos)?,
        OutputType::GenerateUntil => generate(ev, task, &items, &contexts, bos)?,
    };
    Ok(TaskResult {
        task: task.name.clone(),
        shots,
        split: split.to_string(),
        source,
        scores,
        samples,
        seconds: start.elapsed().as_secs_f64(),
        add_bos: Some(bos.starts_with_bos(ev.tok)?),
        task_file: Some(task.pos.file.display().to_string()),
    })
}

fn wants(task: &TaskConfig, metric: &str) -> bool {
    task.metrics.iter().any(|m| m.metric == metric)
}

fn score_all(
    ev: &Evaluator,
    task: &TaskConfig,
    requests: &[Request],
) -> Result<Vec<crate::eval::scoring::Loglik>> {
    let progress = ev.progress(&task.name, requests.len());
    let out = loglikelihoods(ev.model, requests, ev.score_options(), Some(&progress))?;
    progress.finish();
    Ok(out)
}

fn multiple_choice(
    ev: &Evaluator,
    task: &TaskConfig,
    items: &[Item],
    contexts: &[String],
    bos: Bos,
) -> Result<(Vec<Score>, Vec<Json>)> {
    let mutual = wants(task, "acc_mutual_info");
    // (item, context text, continuation text, conditional?) of every request, in order.
    let mut texts: Vec<(usize, String, String)> = Vec::new();
    let mut per_item = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let choices = it.choices.as_deref().unwrap_or(&[]);
        if choices.len() < 2 {
            bail!(
                "{}: a multiple-choice item needs 2 or more choices (found {})",
                it.at,
                choices.len()
            );
        }
        let first = texts.len();
        match &it.text {
            Text::Index(_) => {
                let cont = match &it.target {
                    Target::Str(s) => s.clone(),
                    other => bail!(
                        "{}: with one context per choice the target must be text, found {other:?}",
                        it.at
                    ),
                };
                for c in choices {
                    texts.push((
                        i,
                        format!("{}{c}", contexts[i]),
                        format!("{}{cont}", task.target_delimiter),
                    ));
                }
            }
            Text::Str(_) => {
                for c in choices {
                    texts.push((
                        i,
                        contexts[i].clone(),
                        format!("{}{c}", task.target_delimiter),
                    ));
                }
            }
        }
        if mutual {
            for c in choices {
                texts.push((i, String::new(), format!("{}{c}", task.target_delimiter)));
            }
        }
        per_item.push(first);
    }
    let requests: Vec<Request> = texts
        .par_iter()
        .map(|(i, ctx, cont)| {
            let r = if ctx.is_empty() {
                encode_unconditional(ev.tok, cont)
            } else {
                encode_pair_with(ev.tok, ctx, cont, bos)
            };
            r.with_context(|| items[*i].at.clone())
        })
        .collect::<Result<_>>()?;
    let scores = score_all(ev, task, &requests)?;
    let mut hits: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut samples = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let choices = it.choices.as_deref().unwrap_or(&[]);
        let n = choices.len();
        let at = per_item[i];
        let lls: Vec<f64> = scores[at..at + n].iter().map(|s| s.logprob).collect();
        let greedy: Vec<bool> = scores[at..at + n].iter().map(|s| s.is_greedy).collect();
        let golds = it.golds()?;
        let by = |len: &dyn Fn(&str) -> usize| -> usize {
            let v: Vec<f64> = lls
                .iter()
                .zip(choices)
                .map(|(l, c)| l / len(c) as f64)
                .collect();
            argmax(&v)
        };
        let pred = argmax(&lls);
        let mut preds = vec![("acc", pred)];
        preds.push(("acc_norm", by(&|c| c.chars().count())));
        preds.push(("acc_bytes", by(&|c| c.len())));
        let mut uncond = Vec::new();
        if mutual {
            uncond = scores[at + n..at + 2 * n]
                .iter()
                .map(|s| s.logprob)
                .collect();
            let mi: Vec<f64> = lls.iter().zip(&uncond).map(|(c, u)| c - u).collect();
            preds.push(("acc_mutual_info", argmax(&mi)));
        }
        let mut record = serde_json::Map::new();
        for (metric, p) in &preds {
            if wants(task, metric) {
                let h = golds.contains(p) as u8 as f64;
                hits.entry(metric).or_default().push(h);
                record.insert(metric.to_string(), json!(h));
            }
        }
        if wants(task, "exact_match") {
            let h = golds.iter().any(|&g| greedy[g]) as u8 as f64;
            hits.entry("exact_match").or_default().push(h);
            record.insert("exact_match".into(), json!(h));
        }
        samples.push(json!({
            "task": task.name,
            "index": i,
            "doc": it.at,
            "context": texts[at].1,
            "choices": choices,
            "continuations": texts[at..at + n].iter().map(|t| t.2.clone()).collect::<Vec<_>>(),
            "loglikelihoods": lls,
            "unconditional_loglikelihoods": uncond,
            "is_greedy": greedy,
            "continuation_tokens": scores[at..at + n].iter().map(|s| s.tokens).collect::<Vec<_>>(),
            "gold": golds,
            "prediction": preds.iter().map(|(m, p)| (m.to_string(), json!(p))).collect::<serde_json::Map<_, _>>(),
            "metrics": record,
        }));
    }
    let scores = task
        .metrics
        .iter()
        .map(|m| {
            mean_with_stderr(
                &m.metric,
                hits.get(m.metric.as_str()).map_or(&[][..], Vec::as_slice),
            )
        })
        .collect();
    Ok((scores, samples))
}

fn target_text(it: &Item) -> Result<String> {
    match &it.target {
        Target::Str(s) => Ok(s.clone()),
        Target::Index(i) => match &it.choices {
            Some(c) => c
                .get(*i as usize)
                .cloned()
                .ok_or_else(|| anyhow!("{}: the target {i} is not an index of the choices", it.at)),
            None => Ok(i.to_string()),
        },
        Target::List(_) => bail!(
            "{}: this output type takes one target text, not a list",
            it.at
        ),
    }
}

fn loglikelihood(
    ev: &Evaluator,
    task: &TaskConfig,
    items: &[Item],
    contexts: &[String],
    bos: Bos,
) -> Result<(Vec<Score>, Vec<Json>)> {
    let targets: Vec<String> = items.iter().map(target_text).collect::<Result<_>>()?;
    let requests: Vec<Request> = items
        .par_iter()
        .zip(contexts)
        .zip(&targets)
        .map(|((it, ctx), t)| encode_pair_with(ev.tok, ctx, t, bos).with_context(|| it.at.clone()))
        .collect::<Result<_>>()?;
    let scores = score_all(ev, task, &requests)?;
    let lls: Vec<f64> = scores.iter().map(|s| s.logprob).collect();
    let greedy: Vec<f64> = scores.iter().map(|s| s.is_greedy as u8 as f64).collect();
    let samples = items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            json!({"task": task.name, "index": i, "doc": it.at, "context": contexts[i], "target": targets[i],
                   "loglikelihood": lls[i], "is_greedy": scores[i].is_greedy, "continuation_tokens": scores[i].tokens})
        })
        .collect();
    let out = task
        .metrics
        .iter()
        .map(|m| match m.metric.as_str() {
            "perplexity" => Score {
                metric: "perplexity".into(),
                value: (-lls.iter().sum::<f64>() / lls.len().max(1) as f64).exp(),
                stderr: None,
                n: lls.len(),
            },
            _ => mean_with_stderr("acc", &greedy),
        })
        .collect();
    Ok((out, samples))
}

fn rolling(
    ev: &Evaluator,
    task: &TaskConfig,
    items: &[Item],
    bos: Bos,
) -> Result<(Vec<Score>, Vec<Json>)> {
    let texts: Vec<String> = items.iter().map(target_text).collect::<Result<_>>()?;
    let window = ev.score_options().max_len;
    let mut requests = Vec::new();
    let mut owner = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        // lm-eval: the prefix token, then the text as the tokenizer encodes it.
        let mut ids = vec![ev.tok.bos_id];
        ids.extend(encode_text(ev.tok, t, bos)?);
        for r in perplexity::rolling_requests(&ids, window) {
            requests.push(r);
            owner.push(i);
        }
    }
    let scores = score_all(ev, task, &requests)?;
    let mut ll = vec![0.0f64; items.len()];
    for (s, &i) in scores.iter().zip(&owner) {
        ll[i] += s.logprob;
    }
    let total: f64 = ll.iter().sum();
    let words: usize = texts.iter().map(|t| perplexity::words(t)).sum();
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    let samples = items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            json!({"task": task.name, "index": i, "doc": it.at, "loglikelihood": ll[i],
                              "words": perplexity::words(&texts[i]), "bytes": texts[i].len()})
        })
        .collect();
    let score = |metric: &str, value: f64| Score {
        metric: metric.into(),
        value,
        stderr: None,
        n: items.len(),
    };
    let out = task
        .metrics
        .iter()
        .map(|m| match m.metric.as_str() {
            "word_perplexity" => score("word_perplexity", (-total / words.max(1) as f64).exp()),
            "byte_perplexity" => score("byte_perplexity", (-total / bytes.max(1) as f64).exp()),
            _ => score(
                "bits_per_byte",
                -total / bytes.max(1) as f64 / std::f64::consts::LN_2,
            ),
        })
        .collect();
    Ok((out, samples))
}

fn generate(
    ev: &Evaluator,
    task: &TaskConfig,
    items: &[Item],
    contexts: &[String],
    bos: Bos,
) -> Result<(Vec<Score>, Vec<Json>)> {
    let stops: Vec<&str> = task.generation.until.iter().map(String::as_str).collect();
    let max_len = ev.score_options().max_len;
    let filters: Vec<(String, Vec<FilterStep>)> = if task.filters.is_empty() {
        vec![("none".into(), vec![FilterStep::TakeFirst])]
    } else {
        task.filters
            .iter()
            .map(|f| (f.name.clone(), f.steps.clone()))
            .collect()
    };
    let progress = ev.progress(&task.name, items.len());
    let mut hits: Vec<Vec<f64>> = vec![Vec::new(); filters.len() * task.metrics.len()];
    let mut samples = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let ids = encode_text(ev.tok, &contexts[i], bos)?;
        let raw = crate::eval::generation::greedy_until(
            ev.model,
            ev.tok,
            &ids,
            task.generation.max_gen_toks,
            &stops,
            max_len,
        )
        .with_context(|| it.at.clone())?;
        let response = crate::eval::generation::cut_at_first(&raw, &stops).to_string();
        let golds: Vec<String> = match &it.target {
            Target::List(l) => l
                .iter()
                .map(|t| match t {
                    Target::Str(s) => s.clone(),
                    Target::Index(i) => i.to_string(),
                    Target::List(_) => String::new(),
                })
                .collect(),
            _ => vec![target_text(it)?],
        };
        let mut filtered = serde_json::Map::new();
        let mut metrics = serde_json::Map::new();
        for (fi, (fname, steps)) in filters.iter().enumerate() {
            let out = apply_filters(steps, &response);
            for (mi, m) in task.metrics.iter().enumerate() {
                let h = golds.iter().any(|g| exact_match(m, &out, g)) as u8 as f64;
                hits[fi * task.metrics.len() + mi].push(h);
                metrics.insert(metric_name(&m.metric, fname), json!(h));
            }
            filtered.insert(fname.clone(), json!(out));
        }
        samples.push(json!({"task": task.name, "index": i, "doc": it.at, "context": contexts[i],
                            "generation": raw, "response": response, "filtered": filtered, "golds": golds,
                            "metrics": metrics}));
        progress.inc(1, ids.len() as u64);
    }
    progress.finish();
    let mut out = Vec::new();
    for (fi, (fname, _)) in filters.iter().enumerate() {
        for (mi, m) in task.metrics.iter().enumerate() {
            out.push(mean_with_stderr(
                &metric_name(&m.metric, fname),
                &hits[fi * task.metrics.len() + mi],
            ));
        }
    }
    Ok((out, samples))
}

/// `exact_match` for the default filter, `exact_match,NAME` (lm-eval's result key) for others.
fn metric_name(metric: &str, filter: &str) -> String {
    if filter == "none" {
        metric.to_string()
    } else {
        format!("{metric},{filter}")
    }
}

/// lm-eval's filters on one greedy response.
pub fn apply_filters(steps: &[FilterStep], response: &str) -> String {
    let mut s = response.to_string();
    for step in steps {
        s = match step {
            FilterStep::TakeFirst => s,
            FilterStep::Lowercase => s.to_lowercase(),
            FilterStep::Uppercase => s.to_uppercase(),
            FilterStep::RemoveWhitespace => s.trim().to_string(),
            FilterStep::Map { mapping, default } => mapping
                .iter()
                .find(|(k, _)| *k == s)
                .map(|(_, v)| v.clone())
                .or_else(|| default.clone())
                .unwrap_or_else(|| "None".into()),
            FilterStep::Regex {
                pattern,
                group_select,
                fallback,
            } => regex_filter(pattern, *group_select, fallback, &s),
        };
    }
    s
}

/// lm-eval's `RegexFilter`: `re.findall`, the match at `group_select` (negative counts from the
/// end), its first non-empty group when the pattern has groups, stripped; else the fallback.
fn regex_filter(pattern: &str, group_select: i64, fallback: &str, s: &str) -> String {
    let Ok(re) = fancy_regex::Regex::new(pattern) else {
        return fallback.to_string();
    };
    let groups = re.captures_len() - 1;
    let found: Vec<Vec<String>> = re
        .captures_iter(s)
        .filter_map(|c| c.ok())
        .map(|c| {
            if groups == 0 {
                vec![c.get(0).map_or("", |m| m.as_str()).to_string()]
            } else {
                (1..=groups)
                    .map(|g| c.get(g).map_or("", |m| m.as_str()).to_string())
                    .collect()
            }
        })
        .collect();
    if found.is_empty() {
        return fallback.to_string();
    }
    let idx = if group_select < 0 {
        found.len() as i64 + group_select
    } else {
        group_select
    };
    let Some(m) = usize::try_from(idx).ok().and_then(|i| found.get(i)) else {
        return fallback.to_string();
    };
    let pick = if groups <= 1 {
        m.first().cloned()
    } else {
        m.iter().find(|g| !g.is_empty()).cloned()
    };
    pick.map_or_else(|| fallback.to_string(), |p| p.trim().to_string())
}

/// HF evaluate's `exact_match` with its options, as lm-eval calls it.
fn exact_match(m: &MetricSpec, prediction: &str, reference: &str) -> bool {
    let prep = |s: &str| -> String {
        let mut s = s.to_string();
        for r in &m.regexes_to_ignore {
            if let Ok(re) = fancy_regex::Regex::new(r) {
                s = super::template::python_sub(&re, &s, "", 0);
            }
        }
        if m.ignore_case {
            s = s.to_lowercase();
        }
        if m.ignore_punctuation {
            s.retain(|c| !c.is_ascii_punctuation());
        }
        if m.ignore_numbers {
            s.retain(|c| !c.is_ascii_digit());
        }
        s
    };
    prep(prediction) == prep(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_filter_follows_lm_eval() {
        // One group: the group's text; no match: the fallback; negative index from the end.
        assert_eq!(
            regex_filter(r"#### (\-?[0-9\.\,]+)", 0, "[invalid]", "so #### 42 ok"),
            "42"
        );
        assert_eq!(
            regex_filter(r"#### (\-?[0-9\.\,]+)", 0, "[invalid]", "none"),
            "[invalid]"
        );
        assert_eq!(regex_filter(r"(\d+)", -1, "x", "1 then 2 then 3"), "3");
        // Several groups: the first non-empty one.
        assert_eq!(regex_filter(r"(a)?(b)", 0, "x", " b"), "b");
    }

    #[test]
    fn exact_match_options() {
        let mut m = MetricSpec {
            metric: "exact_match".into(),
            higher_is_better: None,
            ignore_case: true,
            ignore_punctuation: true,
            ignore_numbers: false,
            regexes_to_ignore: vec![",".into(), "\\$".into()],
        };
        assert!(exact_match(&m, "The Answer!", "the answer"));
        assert!(exact_match(&m, "$1,000", "1000"));
        m.ignore_case = false;
        assert!(!exact_match(&m, "The Answer", "the answer"));
    }
}
