//! HellaSwag (Rowan/hellaswag): pick the ending of an ActivityNet/WikiHow context.
//!
//! Prompt (lighteval `hellaswag_harness`, the seed's `leaderboard|hellaswag`; lm-eval's is the same
//! text):
//!
//! ```text
//! context:  preprocess("{activity_label}: {ctx_a} {ctx_b.capitalize()} ")
//! choice i: preprocess(endings[i])      (the context's trailing space starts the continuation)
//! ```
//!
//! `preprocess` turns ` [title]` into `. `, deletes `[...]` spans (WikiHow artifacts) and replaces
//! double spaces with one. `capitalize` is Python's: first character upper case, the rest lower.
//! Unlike lm-eval, lighteval does not strip the text first; doge follows lighteval.

use anyhow::Result;

use crate::eval::loader::Row;
use crate::eval::multiple_choice::McDoc;

pub fn doc(row: &Row) -> Result<McDoc> {
    let ctx = format!(
        "{}: {} {} ",
        row.str("activity_label")?,
        row.str("ctx_a")?,
        capitalize(row.str("ctx_b")?)
    );
    let endings: Vec<String> = row
        .strings("endings")?
        .iter()
        .map(|e| preprocess(e))
        .collect();
    Ok(McDoc {
        at: row.at.clone(),
        instruction: String::new(),
        contexts: vec![preprocess(&ctx)],
        answers: endings.clone(),
        choices: endings,
        gold: row.index("label")?,
        group: None,
    })
}

/// lm-eval's HellaSwag cleanup (without its initial strip, as lighteval).
pub fn preprocess(text: &str) -> String {
    let text = text.replace(" [title]", ". ");
    remove_bracketed(&text).replace("  ", " ")
}

/// Deletes every `[...]` span, as Python's `re.sub(r"\[.*?\]", "", text)`: the shortest span from
/// a `[` to the next `]`, not crossing a newline.
fn remove_bracketed(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(['\n', ']']) {
            Some(k) if after.as_bytes()[k] == b']' => rest = &after[k + 1..],
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Python's `str.capitalize`: the first character in upper case, every other in lower case.
pub fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        None => String::new(),
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_as_python() {
        assert_eq!(
            preprocess("How to cook [title] Boil water. [step] Add salt."),
            "How to cook. Boil water. Add salt."
        );
        assert_eq!(remove_bracketed("a [b\n] c [d] e ["), "a [b\n] c  e [");
        assert_eq!(capitalize("the LADY"), "The lady");
        assert_eq!(capitalize(""), "");
    }
}
