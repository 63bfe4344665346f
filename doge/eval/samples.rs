//! `--log-samples FILE`: one JSON line per evaluated item, for checking what the model saw and
//! why it was scored as it was.
//!
//! Multiple choice: `task`, `index`, `doc` (file:line of the row), `context` (the full prompt, a
//! list for Winogrande's per-choice contexts), `choices` (continuations as scored),
//! `loglikelihoods`, `is_greedy`, `continuation_tokens`, `gold`, `prediction` (per metric) and the
//! item's 0/1 `acc`, `acc_norm`, `acc_norm_nospace`. TriviaQA: `context`, `generation`,
//! `prediction` (cut at the stop sequence), `golds`, `qem`. Perplexity: per document
//! `loglikelihood`, `tokens`, `bytes`, `words`.

use std::path::Path;

use anyhow::Result;

use super::TaskResult;

/// Writes every task's samples to `path` (whole, then renamed into place).
pub fn write(path: &Path, results: &[TaskResult]) -> Result<usize> {
    let records: Vec<_> = results
        .iter()
        .flat_map(|r| r.samples.iter().cloned())
        .collect();
    crate::cli::io::write_jsonl(Some(path), &records)?;
    Ok(records.len())
}
