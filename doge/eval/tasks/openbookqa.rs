//! OpenBookQA (allenai/openbookqa, config `main`): elementary science questions.
//!
//! Prompt (lighteval `openbookqa`, the seed's `lighteval|openbookqa` and small-doge's
//! `custom|openbook_qa`; lm-eval's `openbookqa` is the same):
//!
//! ```text
//! context:  "{question_stem}"
//! choice i: " {choices.text[i]}"
//! gold:     "ABCDE".index(answerKey)
//! ```

use anyhow::{anyhow, Result};

use super::arc::strings_at;
use crate::eval::loader::Row;
use crate::eval::multiple_choice::McDoc;

pub fn doc(row: &Row) -> Result<McDoc> {
    let texts = strings_at(row, "choices.text")?;
    let key = row.str("answerKey")?.trim();
    let gold = ["A", "B", "C", "D", "E"]
        .iter()
        .position(|l| *l == key)
        .ok_or_else(|| anyhow!("{}: answerKey `{key}` is not one of A-E", row.at))?;
    Ok(McDoc {
        at: row.at.clone(),
        instruction: String::new(),
        contexts: vec![row.str("question_stem")?.to_string()],
        choices: texts.iter().map(|t| format!(" {t}")).collect(),
        answers: texts,
        gold,
        group: None,
    })
}
