//! Multiple choice by log-likelihood: every choice's continuation is scored after its context and
//! the highest (optionally length-normalised) score is the prediction.
//!
//! An item is a [`McDoc`], lighteval's `Doc`: a context (one for all choices, or one per choice for
//! Winogrande's partial scoring), the continuation of each choice exactly as it is scored, and the
//! gold index. With k shots the prompt is, as lighteval and lm-eval build it,
//!
//! ```text
//! {instruction}{example 1}\n\n{example 2}\n\n...{example k}\n\n{context}
//! ```
//!
//! where an example is its own gold context followed by its gold continuation.
//!
//! Metrics (per item 1 or 0, averaged, with lm-eval's standard error):
//! - `acc`: argmax of the log-likelihoods.
//! - `acc_norm`: lm-eval's: each log-likelihood divided by the length in characters of the answer
//!   text (`doc_to_choice`, i.e. without the " " target delimiter).
//! - `acc_norm_nospace`: lighteval's `loglikelihood_acc_norm_nospace`: divided by the length of the
//!   scored continuation, one leading space not counted. The two differ only when the answer text
//!   itself starts with a space (some preprocessed HellaSwag endings); both are recorded.

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde_json::{json, Value};

use super::fewshot;
use super::metrics::{argmax, mean_with_stderr, Score};
use super::scoring::{loglikelihoods, Request};
use super::Evaluator;

/// One multiple-choice item (lighteval's `Doc`).
#[derive(Debug, Clone, PartialEq)]
pub struct McDoc {
    /// Where the row came from (`file:line`).
    pub at: String,
    /// Printed once above the few-shot examples (MMLU's subject line); usually empty.
    pub instruction: String,
    /// One context for every choice, or one per choice (Winogrande).
    pub contexts: Vec<String>,
    /// Each choice's continuation as scored (usually with its leading space).
    pub choices: Vec<String>,
    /// Each choice's answer text as lm-eval's `doc_to_choice` gives it (what `acc_norm` divides by).
    pub answers: Vec<String>,
    pub gold: usize,
    /// Few-shot examples come from docs of the same group (MMLU: the subject).
    pub group: Option<String>,
}

impl McDoc {
    pub fn context(&self, choice: usize) -> &str {
        if self.contexts.len() == 1 {
            &self.contexts[0]
        } else {
            &self.contexts[choice]
        }
    }

    /// This doc as a few-shot example: gold context + gold continuation.
    pub fn example(&self) -> String {
        format!("{}{}", self.context(self.gold), self.choices[self.gold])
    }

    /// Checks the shape a task built, so a bad row fails with its location.
    pub fn check(&self) -> Result<()> {
        let n = self.choices.len();
        let ok = n >= 2
            && self.answers.len() == n
            && (self.contexts.len() == 1 || self.contexts.len() == n)
            && self.gold < n;
        if !ok {
            anyhow::bail!(
                "{}: a multiple-choice item needs 2+ choices and a gold index among them (found {} choices, gold {})",
                self.at,
                n,
                self.gold
            );
        }
        Ok(())
    }
}

/// The full prompt of `choice` after `examples`.
pub fn prompt(doc: &McDoc, examples: &[&McDoc], choice: usize) -> String {
    let mut s = doc.instruction.clone();
    for ex in examples {
        s.push_str(&ex.example());
        s.push_str("\n\n");
    }
    s.push_str(doc.context(choice));
    s
}

/// Few-shot examples of each doc: indices into `pool`, same group, never the doc itself when the
/// pool is the evaluated split.
pub fn pick_examples(
    docs: &[McDoc],
    pool: &[McDoc],
    pool_is_eval: bool,
    shots: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    use std::collections::HashMap;
    let mut by_group: HashMap<Option<&str>, Vec<usize>> = HashMap::new();
    for (i, d) in pool.iter().enumerate() {
        by_group.entry(d.group.as_deref()).or_default().push(i);
    }
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            let candidates = by_group
                .get(&d.group.as_deref())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            fewshot::draw(candidates, pool_is_eval.then_some(i), shots, seed, i)
        })
        .collect()
}

/// Per-item predictions under each metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub acc: usize,
    pub acc_norm: usize,
    pub acc_norm_nospace: usize,
}

/// Predictions from one item's per-choice log-likelihoods.
pub fn predict(doc: &McDoc, logliks: &[f64]) -> Predictions {
    let chars = |s: &str| s.chars().count().max(1) as f64;
    let norm: Vec<f64> = logliks
        .iter()
        .zip(&doc.answers)
        .map(|(ll, a)| ll / chars(a))
        .collect();
    let nospace: Vec<f64> = logliks
        .iter()
        .zip(&doc.choices)
        .map(|(ll, c)| ll / chars(c.strip_prefix(' ').unwrap_or(c)))
        .collect();
    Predictions {
        acc: argmax(logliks),
        acc_norm: argmax(&norm),
        acc_norm_nospace: argmax(&nospace),
    }
}

/// Scores `docs` (few-shot examples from `pool`), returning the task's metrics and one sample
/// record per item.
pub fn evaluate(
    ev: &Evaluator,
    task: &str,
    docs: &[McDoc],
    pool: &[McDoc],
    pool_is_eval: bool,
    shots: usize,
) -> Result<(Vec<Score>, Vec<Value>)> {
    for d in docs {
        d.check()?;
    }
    let examples = pick_examples(docs, pool, pool_is_eval, shots, ev.opts.seed);
    // (doc, choice) of every request, in order.
    let slots: Vec<(usize, usize)> = docs
        .iter()
        .enumerate()
        .flat_map(|(i, d)| (0..d.choices.len()).map(move |j| (i, j)))
        .collect();
    let prompts: Vec<String> = slots
        .iter()
        .map(|&(i, j)| {
            let ex: Vec<&McDoc> = examples[i].iter().map(|&k| &pool[k]).collect();
            prompt(&docs[i], &ex, j)
        })
        .collect();
    let requests: Vec<Request> = slots
        .par_iter()
        .zip(&prompts)
        .map(|(&(i, j), p)| {
            super::encoding::encode_pair_with(ev.tok, p, &docs[i].choices[j], ev.bos())
                .with_context(|| format!("{}: choice {j}", docs[i].at))
        })
        .collect::<Result<_>>()?;
    let progress = ev.progress(task, requests.len());
    let scores = loglikelihoods(ev.model, &requests, ev.score_options(), Some(&progress))?;
    progress.finish();

    let mut per_metric: [Vec<f64>; 3] = Default::default();
    let mut samples = Vec::with_capacity(docs.len());
    let mut at = 0;
    for (i, d) in docs.iter().enumerate() {
        let n = d.choices.len();
        let s = &scores[at..at + n];
        let lls: Vec<f64> = s.iter().map(|x| x.logprob).collect();
        let p = predict(d, &lls);
        let hits = [p.acc, p.acc_norm, p.acc_norm_nospace].map(|x| (x == d.gold) as u8 as f64);
        for (m, h) in per_metric.iter_mut().zip(hits) {
            m.push(h);
        }
        let contexts: Vec<&str> = (0..n).map(|j| prompts[at + j].as_str()).collect::<Vec<_>>();
        samples.push(json!({
            "task": task,
            "index": i,
            "doc": d.at,
            "context": if d.contexts.len() == 1 { json!(contexts[0]) } else { json!(contexts) },
            "choices": d.choices,
            "loglikelihoods": lls,
            "is_greedy": s.iter().map(|x| x.is_greedy).collect::<Vec<_>>(),
            "continuation_tokens": s.iter().map(|x| x.tokens).collect::<Vec<_>>(),
            "gold": d.gold,
            "prediction": {"acc": p.acc, "acc_norm": p.acc_norm, "acc_norm_nospace": p.acc_norm_nospace},
            "acc": hits[0],
            "acc_norm": hits[1],
            "acc_norm_nospace": hits[2],
        }));
        at += n;
    }
    let scores = ["acc", "acc_norm", "acc_norm_nospace"]
        .iter()
        .zip(&per_metric)
        .map(|(name, v)| mean_with_stderr(name, v))
        .collect();
    Ok((scores, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> McDoc {
        McDoc {
            at: "t:1".into(),
            instruction: String::new(),
            contexts: vec!["Question: q\nAnswer:".into()],
            choices: vec![" ab".into(), " abcdef".into()],
            answers: vec!["ab".into(), "abcdef".into()],
            gold: 1,
            group: None,
        }
    }

    #[test]
    fn normalisation_divides_by_characters() {
        // -2/2 = -1 vs -3/6 = -0.5: raw picks choice 0, normalised picks choice 1.
        let p = predict(&doc(), &[-2.0, -3.0]);
        assert_eq!((p.acc, p.acc_norm, p.acc_norm_nospace), (0, 1, 1));
    }

    #[test]
    fn prompt_puts_examples_before_the_context() {
        let d = doc();
        let mut ex = doc();
        ex.contexts = vec!["Question: e\nAnswer:".into()];
        assert_eq!(
            prompt(&d, &[&ex, &ex], 0),
            "Question: e\nAnswer: abcdef\n\nQuestion: e\nAnswer: abcdef\n\nQuestion: q\nAnswer:"
        );
    }
}
