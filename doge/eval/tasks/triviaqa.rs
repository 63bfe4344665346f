//! TriviaQA (mandarjoshi/trivia_qa, config `rc.nocontext`): closed-book questions answered by
//! greedy generation.
//!
//! ```text
//! context:   "Question: {question}\nAnswer:"
//! example:   "Question: {question}\nAnswer: {answer.value}"
//! generation: greedy, at most 20 new tokens, cut at the first "\n" or "Question:"
//! metric qem: 1 if the stripped generation, lower-cased with ASCII punctuation removed, equals one
//!            of the gold aliases normalised the same way
//! ```
//!
//! As lighteval's `triviaqa` prompt and `quasi_exact_match_triviaqa` metric (the seed's
//! `lighteval|triviaqa`), including its alias list: sorted, and an alias dropped when it starts
//! with the alias kept before it. lighteval stops only on "Question:"; stopping on "\n" as well
//! changes nothing after the strip, since a newline ends every answer it would accept.

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::eval::loader::Row;
use crate::eval::metrics::{mean_with_stderr, Score};
use crate::eval::{fewshot, Evaluator};

/// Tokens generated at most (lighteval `generation_size=20`).
pub const MAX_NEW_TOKENS: usize = 20;
/// The generation ends at the first of these.
pub const STOP: [&str; 2] = ["\n", "Question:"];

/// One question.
#[derive(Debug, Clone, PartialEq)]
pub struct QaDoc {
    pub at: String,
    pub context: String,
    /// The answer written after a few-shot example's context.
    pub target: String,
    /// Normalised gold aliases.
    pub golds: Vec<String>,
}

pub fn doc(row: &Row) -> Result<QaDoc> {
    let question = row.str("question")?;
    let answer = row.path("answer")?;
    let value = answer
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| row.missing("answer.value", "a string"))?;
    let mut aliases: Vec<String> = answer
        .get("aliases")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if aliases.is_empty() {
        aliases.push(value.to_string());
    }
    Ok(QaDoc {
        at: row.at.clone(),
        context: format!("Question: {question}\nAnswer:"),
        target: format!(" {value}"),
        golds: remove_prefixed(aliases)
            .iter()
            .map(|a| normalize(a))
            .collect(),
    })
}

/// lighteval's `_remove_prefixes`: sorted, each alias kept unless it starts with the last kept one.
fn remove_prefixed(mut aliases: Vec<String>) -> Vec<String> {
    aliases.sort();
    let mut kept: Vec<String> = Vec::new();
    for a in aliases {
        if kept.last().is_none_or(|k| !a.starts_with(k.as_str())) {
            kept.push(a);
        }
    }
    kept
}

/// `text.lower().translate(str.maketrans("", "", string.punctuation))`.
pub fn normalize(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect()
}

/// The generation cut at the first stop sequence.
pub fn cut_at_stop(text: &str) -> &str {
    crate::eval::generation::cut_at_first(text, &STOP)
}

/// 1.0 when the stripped, normalised prediction equals a gold alias.
pub fn quasi_exact_match(prediction: &str, golds: &[String]) -> f64 {
    let p = normalize(prediction.trim());
    golds.iter().any(|g| g.trim() == p) as u8 as f64
}

/// The prompt of `doc` after its few-shot examples.
pub fn prompt(doc: &QaDoc, examples: &[&QaDoc]) -> String {
    let mut s = String::new();
    for ex in examples {
        s.push_str(&ex.context);
        s.push_str(&ex.target);
        s.push_str("\n\n");
    }
    s.push_str(&doc.context);
    s
}

/// Generates an answer for every doc and scores it.
pub fn evaluate(
    ev: &Evaluator,
    task: &str,
    docs: &[QaDoc],
    pool: &[QaDoc],
    pool_is_eval: bool,
    shots: usize,
) -> Result<(Vec<Score>, Vec<Value>)> {
    let candidates: Vec<usize> = (0..pool.len()).collect();
    let progress = ev.progress(task, docs.len());
    let mut hits = Vec::with_capacity(docs.len());
    let mut samples = Vec::with_capacity(docs.len());
    for (i, d) in docs.iter().enumerate() {
        let ex: Vec<&QaDoc> = fewshot::draw(
            &candidates,
            pool_is_eval.then_some(i),
            shots,
            ev.opts.seed,
            i,
        )
        .into_iter()
        .map(|k| &pool[k])
        .collect();
        let text = prompt(d, &ex);
        let ids = crate::eval::encoding::encode_text(ev.tok, &text, ev.bos())?;
        let generated = greedy_until_stop(ev, &ids).with_context(|| d.at.clone())?;
        let answer = cut_at_stop(&generated);
        let hit = quasi_exact_match(answer, &d.golds);
        hits.push(hit);
        samples.push(json!({
            "task": task,
            "index": i,
            "doc": d.at,
            "context": text,
            "generation": generated,
            "prediction": answer,
            "golds": d.golds,
            "qem": hit,
        }));
        progress.inc(1, ids.len() as u64);
    }
    progress.finish();
    Ok((vec![mean_with_stderr("qem", &hits)], samples))
}

/// Greedy decoding with the KV cache until a stop sequence, eos or the token budget.
fn greedy_until_stop(ev: &Evaluator, prompt: &[u32]) -> Result<String> {
    let max_len = ev.score_options().max_len;
    crate::eval::generation::greedy_until(ev.model, ev.tok, prompt, MAX_NEW_TOKENS, &STOP, max_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_matching_as_lighteval() {
        let kept = remove_prefixed(vec![
            "Paris, France".into(),
            "Paris".into(),
            "City of Light".into(),
        ]);
        assert_eq!(kept, vec!["City of Light".to_string(), "Paris".to_string()]);
        let golds: Vec<String> = kept.iter().map(|a| normalize(a)).collect();
        assert_eq!(quasi_exact_match(" Paris.", &golds), 1.0);
        assert_eq!(quasi_exact_match("city of light!", &golds), 1.0);
        // lighteval dropped "Paris, France", so it no longer matches.
        assert_eq!(quasi_exact_match("Paris, France", &golds), 0.0);
        assert_eq!(cut_at_stop(" Paris\n\nQuestion: x"), " Paris");
        assert_eq!(cut_at_stop(" Rome Question: y"), " Rome ");
    }
}
