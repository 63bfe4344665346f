//! Greedy generation for evaluation: the KV cache, left truncation of long prompts, and stop
//! sequences checked on the decoded text (a stop such as `"\nQuestion:"` spans several tokens).

use anyhow::Result;
use candle_core::{DType, Tensor};

use crate::data::tokenizer::DogeTokenizer;
use crate::generate::argmax;
use crate::model::DogeForCausalLM;

/// Generates greedily after `prompt` until the decoded text (special tokens skipped) contains one
/// of `stops`, the model emits eos, or `max_new` tokens; returns that text, not cut. Prompts
/// longer than `max_len - max_new` keep their end (lm-eval truncates from the left).
pub fn greedy_until(
    model: &DogeForCausalLM,
    tok: &DogeTokenizer,
    prompt: &[u32],
    max_new: usize,
    stops: &[&str],
    max_len: usize,
) -> Result<String> {
    let room = max_len.saturating_sub(max_new).max(1);
    let prompt = &prompt[prompt.len().saturating_sub(room)..];
    let mut cache = model.new_cache();
    let mut input = Tensor::new(prompt, model.device())?.unsqueeze(0)?;
    let mut out: Vec<u32> = Vec::new();
    let eos = model.config().eos_token_id;
    for _ in 0..max_new {
        let logits = model
            .forward_last(&input, Some(&mut cache))?
            .squeeze(0)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let next = argmax(&logits);
        if Some(next) == eos {
            break;
        }
        out.push(next);
        let text = tok.decode(&out, true)?;
        if stops.iter().any(|s| !s.is_empty() && text.contains(s)) {
            return Ok(text);
        }
        input = Tensor::new(&[next], model.device())?.unsqueeze(0)?;
    }
    tok.decode(&out, true)
}

/// The text before the first occurrence of any stop (Python's `s.split(term)[0]` for each term).
pub fn cut_at_first<'a>(text: &'a str, stops: &[&str]) -> &'a str {
    let end = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s))
        .min()
        .unwrap_or(text.len());
    &text[..end]
}
