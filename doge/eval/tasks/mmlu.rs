//! MMLU (cais/mmlu), in the cloze form the seed evaluates (small-doge `evaluation/base/tasks.py`,
//! `mmlu_cloze_prompt`): the model scores each answer's text, not a letter.
//!
//! ```text
//! instruction: "The following are questions about {subject with _ as spaces}.\n"
//! context:     "Question: {question}\nAnswer:"
//! choice i:    " {choices[i]}"
//! gold:        answer (an index, or a letter A-D)
//! ```
//!
//! The instruction appears once, above the few-shot examples, which come from the same subject's
//! `dev` split (5 per subject in the official data). The task's score is the mean over all
//! questions (lm-eval's size-weighted MMLU aggregate); lighteval's `all` line is instead the mean of
//! the 57 subject scores.

use anyhow::{anyhow, Result};
use serde_json::Value;

use crate::eval::loader::Row;
use crate::eval::multiple_choice::McDoc;

pub fn doc(row: &Row) -> Result<McDoc> {
    let subject = row.str("subject")?;
    let choices = row.strings("choices")?;
    let gold = match row.value.get("answer") {
        Some(Value::String(s)) => ["A", "B", "C", "D"]
            .iter()
            .position(|l| l == s)
            .ok_or_else(|| anyhow!("{}: answer `{s}` is not A-D", row.at))?,
        _ => row.index("answer")?,
    };
    Ok(McDoc {
        at: row.at.clone(),
        instruction: format!(
            "The following are questions about {}.\n",
            subject.replace('_', " ")
        ),
        contexts: vec![format!("Question: {}\nAnswer:", row.str("question")?)],
        choices: choices.iter().map(|c| format!(" {c}")).collect(),
        answers: choices,
        gold,
        group: Some(subject.to_string()),
    })
}
