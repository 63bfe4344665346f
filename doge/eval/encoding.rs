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

/// Whether a scored sequence starts with the beginning-of-sequence token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bos {
    /// The tokenizer's own special tokens (transformers' `encode` default), as lighteval and
    /// lm-eval's transformers backend (0.4.13, `add_bos_token` unset) encode: the Doge tokenizer
    /// puts `<|begin_of_text|>` first, a GPT-2 style tokenizer adds nothing. A text that already
    /// starts with the bos token's text gets no second one (lm-eval's `has_bos_prefix`).
    Tokenizer,
    /// Always exactly one bos first (`add-bos #true`).
    Always,
    /// No special tokens at all (`add-bos #false`).
    Never,
}

impl Bos {
    pub fn from_setting(add_bos: Option<bool>) -> Bos {
        match add_bos {
            None => Bos::Tokenizer,
            Some(true) => Bos::Always,
            Some(false) => Bos::Never,
        }
    }

    /// Whether sequences encoded this way start with bos (what the registry records).
    pub fn starts_with_bos(self, tok: &DogeTokenizer) -> Result<bool> {
        Ok(encode_text(tok, "a", self)?.first() == Some(&tok.bos_id))
    }
}

/// `text` in token ids under a bos setting.
pub fn encode_text(tok: &DogeTokenizer, text: &str, bos: Bos) -> Result<Vec<u32>> {
    match bos {
        Bos::Tokenizer => {
            let bos_text = tok.inner.id_to_token(tok.bos_id);
            let has_prefix = bos_text.is_some_and(|b| !b.is_empty() && text.starts_with(&b));
            tok.encode(text, !has_prefix)
        }
        Bos::Always => {
            let mut ids = tok.encode(text, false)?;
            if ids.first() != Some(&tok.bos_id) {
                ids.insert(0, tok.bos_id);
            }
            Ok(ids)
        }
        Bos::Never => tok.encode(text, false),
    }
}

/// The token request for scoring `continuation` after `context` (the tokenizer's special
/// tokens, as every built-in task scores).
pub fn encode_pair(tok: &DogeTokenizer, context: &str, continuation: &str) -> Result<Request> {
    encode_pair_with(tok, context, continuation, Bos::Tokenizer)
}

/// [`encode_pair`] under a bos setting.
pub fn encode_pair_with(
    tok: &DogeTokenizer,
    context: &str,
    continuation: &str,
    bos: Bos,
) -> Result<Request> {
    if context.is_empty() {
        return encode_unconditional(tok, continuation);
    }
    let (context, continuation) = move_trailing_spaces(context, continuation);
    let whole = encode_text(tok, &format!("{context}{continuation}"), bos)?;
    let mut ctx = encode_text(tok, &context, bos)?;
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

/// lm-eval's request with an empty context (`acc_mutual_info`'s unconditional scores): the
/// continuation without special tokens, after the bos token (or its own first token when that
/// already is bos).
pub fn encode_unconditional(tok: &DogeTokenizer, continuation: &str) -> Result<Request> {
    let cont = tok.encode(continuation, false)?;
    if cont.is_empty() {
        bail!("the continuation {continuation:?} has no tokens");
    }
    Ok(if cont[0] == tok.bos_id {
        Request {
            context: cont[..1].to_vec(),
            continuation: cont[1..].to_vec(),
        }
    } else {
        Request {
            context: vec![tok.bos_id],
            continuation: cont,
        }
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
