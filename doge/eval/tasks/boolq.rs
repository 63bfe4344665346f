//! BoolQ (google/boolq): a yes/no question about a passage.
//!
//! Prompt (lighteval `boolq_harness`, lm-eval's `boolq`):
//!
//! ```text
//! context:  "{passage}\nQuestion: {question}?\nAnswer:"
//! choices:  " no", " yes"
//! gold:     answer (false = 0, true = 1), or `label` in super_glue's layout
//! ```

use anyhow::Result;
use serde_json::Value;

use crate::eval::loader::Row;
use crate::eval::multiple_choice::McDoc;

pub fn doc(row: &Row) -> Result<McDoc> {
    let gold = match row.value.get("answer") {
        Some(Value::Bool(b)) => *b as usize,
        _ => row.index("label")?,
    };
    Ok(McDoc {
        at: row.at.clone(),
        instruction: String::new(),
        contexts: vec![format!(
            "{}\nQuestion: {}?\nAnswer:",
            row.str("passage")?,
            row.str("question")?
        )],
        choices: vec![" no".into(), " yes".into()],
        answers: vec!["no".into(), "yes".into()],
        gold,
        group: None,
    })
}
