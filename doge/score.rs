//! Per-token log-likelihoods of whole sequences, batched by right padding.
//!
//! Right padding changes nothing for the real tokens: the mask is causal, so a real query never sees a
//! padded key, the dynamic-mask top-k ranks only visible keys, and CDMoE routes each token alone.
//! Batch size therefore changes no score (up to matmul rounding).

use candle_core::{DType, Device, Result, Tensor, D};

use crate::model::doge::log_softmax_last_dim;
use crate::model::DogeForCausalLM;

/// Score of one sequence: log p(token t | tokens < t) for t = 1 .. len-1.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceScore {
    pub token_logprobs: Vec<f32>,
}

impl SequenceScore {
    /// Mean next-token negative log-likelihood (transformers' loss for labels = input_ids).
    pub fn nll(&self) -> f64 {
        -self.token_logprobs.iter().map(|&x| x as f64).sum::<f64>()
            / self.token_logprobs.len().max(1) as f64
    }
}

/// Right-pads `seqs` into one [B, Lmax] u32 tensor.
pub fn pad_batch(seqs: &[&[u32]], pad: u32, dev: &Device) -> Result<Tensor> {
    let width = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(seqs.len() * width);
    for s in seqs {
        flat.extend_from_slice(s);
        flat.extend(std::iter::repeat_n(pad, width - s.len()));
    }
    Tensor::from_vec(flat, (seqs.len(), width), dev)
}

/// Scores every sequence (each needs at least two tokens), `batch_size` sequences per forward.
/// Consecutive batches of at most `batch_size` rows, except that a row longer than `alone_above`
/// (see [`DogeForCausalLM::batch_independent_len`]) is a batch of its own: then no score depends
/// on the batch size.
pub fn plan_batches(
    lens: &[usize],
    batch_size: usize,
    alone_above: Option<usize>,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &len) in lens.iter().enumerate() {
        let alone = alone_above.is_some_and(|limit| len > limit);
        if alone || i - start == batch_size.max(1) {
            if start < i {
                out.push(start..i);
            }
            start = i;
        }
        if alone {
            out.push(i..i + 1);
            start = i + 1;
        }
    }
    if start < lens.len() {
        out.push(start..lens.len());
    }
    out
}

pub fn score_sequences(
    model: &DogeForCausalLM,
    seqs: &[Vec<u32>],
    batch_size: usize,
) -> Result<Vec<SequenceScore>> {
    let pad = model.config().pad_token_id.unwrap_or(0);
    let mut out = Vec::with_capacity(seqs.len());
    let lens: Vec<usize> = seqs.iter().map(Vec::len).collect();
    for range in plan_batches(&lens, batch_size, model.batch_independent_len()) {
        let chunk = &seqs[range];
        if let Some(s) = chunk.iter().find(|s| s.len() < 2) {
            candle_core::bail!(
                "a sequence needs at least two tokens to be scored, found {:?}",
                s
            );
        }
        let refs: Vec<&[u32]> = chunk.iter().map(|s| s.as_slice()).collect();
        let input = pad_batch(&refs, pad, model.device())?;
        let logits = model.forward(&input, None)?;
        let l = input.dim(1)?;
        let logp = log_softmax_last_dim(&logits.narrow(1, 0, l - 1)?.to_dtype(DType::F32)?)?;
        let targets = input.narrow(1, 1, l - 1)?.unsqueeze(D::Minus1)?;
        let picked = logp
            .gather(&targets.contiguous()?, D::Minus1)?
            .squeeze(D::Minus1)?
            .to_vec2::<f32>()?;
        for (row, seq) in picked.into_iter().zip(chunk) {
            out.push(SequenceScore {
                token_logprobs: row[..seq.len() - 1].to_vec(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::plan_batches;

    #[test]
    fn long_rows_go_alone_and_the_rest_in_order() {
        let lens = [3, 40, 5, 6, 7, 50, 2];
        assert_eq!(
            plan_batches(&lens, 2, Some(16)),
            vec![0..1, 1..2, 2..4, 4..5, 5..6, 6..7]
        );
        assert_eq!(plan_batches(&lens, 3, None), vec![0..3, 3..6, 6..7]);
        assert!(plan_batches(&[], 3, None).is_empty());
    }
}
