//! Perplexity and bits per byte of a text set, as lm-eval's `loglikelihood_rolling` tasks
//! (wikitext) compute them.
//!
//! Each document is tokenized with the tokenizer's bos in front (lm-eval's prefix token), and every
//! token after it is scored exactly once: the tokens are cut into windows of at most the model's
//! length, and each window is read after as much of the preceding text as fits (the scorer's left
//! truncation), lm-eval's rolling windows. Over the whole set, with LL the summed log-likelihood:
//!
//! - `word_perplexity` = exp(-LL / words), words counted as lm-eval's `re.split(r"\s+", text)`
//! - `byte_perplexity` = exp(-LL / bytes), UTF-8 bytes of the documents
//! - `bits_per_byte`   = -LL / bytes / ln 2
//! - `token_perplexity` = exp(-LL / tokens), which depends on the tokenizer
//!
//! Documents are a folder's or file's `.txt` files (one document each) and rows' `text` fields
//! (`.jsonl`, `.json`, `.parquet`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::loader::{read_rows, Row};
use super::metrics::Score;
use super::scoring::{loglikelihoods, Request};
use super::Evaluator;

/// One document of the text set.
#[derive(Debug, Clone)]
pub struct TextDoc {
    pub at: String,
    pub text: String,
}

/// The documents under a local path.
pub fn local_docs(path: &Path) -> Result<Vec<TextDoc>> {
    let files = crate::data::sources::local_files(path)?;
    let mut docs = Vec::new();
    for f in files {
        if f.extension().and_then(|e| e.to_str()) == Some("txt") {
            let text = std::fs::read_to_string(&f)
                .with_context(|| format!("{}: cannot read as UTF-8 text", f.display()))?;
            docs.push(TextDoc {
                at: f.display().to_string(),
                text,
            });
        } else {
            docs.extend(rows_to_docs(&read_rows(&f)?)?);
        }
    }
    Ok(docs)
}

/// Rows' `text` fields as documents (empty ones skipped, as wikitext's blank lines).
pub fn rows_to_docs(rows: &[Row]) -> Result<Vec<TextDoc>> {
    let mut out = Vec::new();
    for r in rows {
        let text = r.str("text")?;
        if !text.trim().is_empty() {
            out.push(TextDoc {
                at: r.at.clone(),
                text: text.to_string(),
            });
        }
    }
    Ok(out)
}

/// Token requests covering every token of a document after its bos.
pub fn rolling_requests(tokens: &[u32], window: usize) -> Vec<Request> {
    let window = window.max(1);
    (1..tokens.len())
        .step_by(window)
        .map(|s| Request {
            context: tokens[..s].to_vec(),
            continuation: tokens[s..(s + window).min(tokens.len())].to_vec(),
        })
        .collect()
}

pub fn evaluate(ev: &Evaluator, task: &str, docs: &[TextDoc]) -> Result<(Vec<Score>, Vec<Value>)> {
    if docs.is_empty() {
        bail!("{task}: the text set has no documents");
    }
    let window = ev.score_options().max_len;
    let mut requests = Vec::new();
    let mut owner = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let mut ids = ev.tok.encode(&d.text, true)?;
        if ids.first() != Some(&ev.tok.bos_id) {
            ids.insert(0, ev.tok.bos_id);
        }
        for r in rolling_requests(&ids, window) {
            requests.push(r);
            owner.push(i);
        }
    }
    let progress = ev.progress(task, requests.len());
    let scores = loglikelihoods(ev.model, &requests, ev.score_options(), Some(&progress))?;
    progress.finish();
    let mut ll = vec![0.0f64; docs.len()];
    let mut tokens = vec![0usize; docs.len()];
    for (s, &i) in scores.iter().zip(&owner) {
        ll[i] += s.logprob;
        tokens[i] += s.tokens;
    }
    let samples: Vec<Value> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            json!({
                "task": task, "index": i, "doc": d.at, "loglikelihood": ll[i], "tokens": tokens[i],
                "bytes": d.text.len(), "words": words(&d.text),
            })
        })
        .collect();
    let total_ll: f64 = ll.iter().sum();
    let total_words: usize = docs.iter().map(|d| words(&d.text)).sum();
    let total_bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    let total_tokens: usize = tokens.iter().sum();
    let score = |metric: &str, value: f64| Score {
        metric: metric.into(),
        value,
        stderr: None,
        n: docs.len(),
    };
    Ok((
        vec![
            score(
                "word_perplexity",
                (-total_ll / total_words.max(1) as f64).exp(),
            ),
            score(
                "byte_perplexity",
                (-total_ll / total_bytes.max(1) as f64).exp(),
            ),
            score(
                "bits_per_byte",
                -total_ll / total_bytes.max(1) as f64 / std::f64::consts::LN_2,
            ),
            score(
                "token_perplexity",
                (-total_ll / total_tokens.max(1) as f64).exp(),
            ),
        ],
        samples,
    ))
}

/// lm-eval's wikitext word count, `len(re.split(r"\s+", page))`: one more than the number of
/// whitespace runs, so leading or trailing whitespace counts an empty word as it does there.
pub fn words(text: &str) -> usize {
    let mut runs = 0;
    let mut in_space = false;
    for c in text.chars() {
        let space = c.is_whitespace();
        if space && !in_space {
            runs += 1;
        }
        in_space = space;
    }
    runs + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_token_once() {
        let toks: Vec<u32> = (0..10).collect();
        let reqs = rolling_requests(&toks, 4);
        let covered: Vec<u32> = reqs.iter().flat_map(|r| r.continuation.clone()).collect();
        assert_eq!(covered, (1..10).collect::<Vec<_>>());
        assert_eq!(reqs[1].context, vec![0, 1, 2, 3, 4]);
        assert!(rolling_requests(&[0], 4).is_empty());
    }

    #[test]
    fn words_are_counted_as_python_re_split_counts_them() {
        // len(re.split(r"\s+", s)) for each s, by hand.
        assert_eq!(words("a b"), 2);
        assert_eq!(words("a  \n b\n"), 3);
        assert_eq!(words(" a"), 2);
        assert_eq!(words("one"), 1);
    }
}
