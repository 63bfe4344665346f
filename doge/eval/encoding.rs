//! Text requests to token requests, split as lm-eval (`_encode_pair`) and lighteval
//! (`tok_encode_pair`) split them.
//!
//! 1. Trailing whitespace of the context (Python's `rstrip`) moves to the start of the
//!    continuation: a prompt that ends in
//!    `"... Answer: "` is scored as context `"... Answer:"` + continuation `" Paris"`, because BPE
//!    tokenizers attach a space to the word after it.
//! 2. The continuation's ids are `tokens(context + continuation)` minus the first
//!    `len(tokens(context))` ids, so a merge across the boundary is charged to the continuation,
//!    and the scored sequence is `tokens(context) ++ those ids`.
//!
//! Both strings are encoded with the tokenizer's special tokens (Doge: a leading
//! `<|begin_of_text|>`), as lighteval's transformers backend does (`add_special_tokens=True`).

use anyhow::{bail, Result};

use super::scoring::Request;
use crate::data::tokenizer::DogeTokenizer;

/// Moves the context's trailing whitespace onto the continuation.
pub fn move_trailing_spaces(context: &str, continuation: &str) -> (String, String) {
    let kept = context.trim_end();
    let spaces = &context[kept.len()..];
    (kept.to_string(), format!("{spaces}{continuation}"))
}

/// The token request for scoring `continuation` after `context`.
pub fn encode_pair(tok: &DogeTokenizer, context: &str, continuation: &str) -> Result<Request> {
    let (context, continuation) = move_trailing_spaces(context, continuation);
    let whole = tok.encode(&format!("{context}{continuation}"), true)?;
    let mut ctx = tok.encode(&context, true)?;
    if ctx.len() >= whole.len() {
        bail!(
            "the continuation {continuation:?} adds no token after its context (context ends {:?})",
            tail(&context)
        );
    }
    let cont = whole[ctx.len()..].to_vec();
    if ctx.is_empty() {
        // No special tokens and an empty context: lm-eval scores after the bos/eot token.
        ctx.push(tok.bos_id);
    }
    Ok(Request {
        context: ctx,
        continuation: cont,
    })
}

fn tail(s: &str) -> &str {
    let start = s.char_indices().rev().nth(40).map(|(i, _)| i).unwrap_or(0);
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_spaces_belong_to_the_continuation() {
        assert_eq!(
            move_trailing_spaces("Answer: ", "Paris"),
            ("Answer:".to_string(), " Paris".to_string())
        );
        assert_eq!(
            move_trailing_spaces("Answer:", " Paris"),
            ("Answer:".to_string(), " Paris".to_string())
        );
        assert_eq!(
            move_trailing_spaces("a  ", "b"),
            ("a".to_string(), "  b".to_string())
        );
        // `len(context) - len(context.rstrip())` characters move, newlines included.
        assert_eq!(
            move_trailing_spaces("Q \n", "A"),
            ("Q".to_string(), " \nA".to_string())
        );
    }
}
