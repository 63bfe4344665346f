//! PIQA (ybisk/piqa): which of two solutions reaches the goal.
//!
//! Prompt (lighteval `piqa_harness`, the seed's `lighteval|piqa`; lm-eval's `piqa` is the same):
//!
//! ```text
//! context:  "Question: {goal}\nAnswer:"
//! choice i: " {sol1}", " {sol2}"
//! gold:     label
//! ```

use anyhow::Result;

use crate::eval::loader::Row;
use crate::eval::multiple_choice::McDoc;

pub fn doc(row: &Row) -> Result<McDoc> {
    let sols = vec![row.str("sol1")?.to_string(), row.str("sol2")?.to_string()];
    Ok(McDoc {
        at: row.at.clone(),
        instruction: String::new(),
        contexts: vec![format!("Question: {}\nAnswer:", row.str("goal")?)],
        choices: sols.iter().map(|s| format!(" {s}")).collect(),
        answers: sols,
        gold: row.index("label")?,
        group: None,
    })
}
