//! ARC-Easy and ARC-Challenge (allenai/ai2_arc, configs ARC-Easy / ARC-Challenge).
//!
//! Prompt (lighteval `arc`, the seed's `lighteval|arc:easy` / `leaderboard|arc:challenge` and
//! small-doge's `custom|arc`; lm-eval's `arc_easy` is the same text):
//!
//! ```text
//! context:  "Question: {question}\nAnswer:"
//! choice i: " {choices.text[i]}"
//! gold:     choices.label.index(answerKey)
//! ```

use anyhow::{anyhow, Result};

use crate::eval::loader::Row;
use crate::eval::multiple_choice::McDoc;

pub fn doc(row: &Row) -> Result<McDoc> {
    let texts = strings_at(row, "choices.text")?;
    let labels = strings_at(row, "choices.label")?;
    let key = row.str("answerKey")?.trim();
    let gold = labels.iter().position(|l| l == key).ok_or_else(|| {
        anyhow!(
            "{}: answerKey `{key}` is not one of the labels {labels:?}",
            row.at
        )
    })?;
    Ok(McDoc {
        at: row.at.clone(),
        instruction: String::new(),
        contexts: vec![format!("Question: {}\nAnswer:", row.str("question")?)],
        choices: texts.iter().map(|t| format!(" {t}")).collect(),
        answers: texts,
        gold,
        group: None,
    })
}

/// A list of strings at a dotted path (`choices.text`).
pub fn strings_at(row: &Row, path: &str) -> Result<Vec<String>> {
    row.path(path)?
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| row.missing(path, "a list of strings"))
}
