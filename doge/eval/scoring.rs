//! The one scoring path of every log-likelihood task: (context, continuation) token requests,
//! batched by length, scored by a single forward each.
//!
//! As lm-eval's `_loglikelihood_tokens`: the model reads `(context ++ continuation)[..n-1]`
//! (left-truncated to the model's length), and the continuation's log-likelihood is the sum of
//! log p(token | everything before it) over the continuation tokens; `is_greedy` says whether each
//! of them is the argmax at its position. Requests are sorted longest first so a batch holds
//! sequences of similar length (little padding), then put back in order.
//!
//! It is [`crate::score::score_sequences`]'s computation (right padding, so no real token ever
//! attends to a pad and batch size changes no result), with the lm_head applied only at the
//! continuation's positions: for Doge-20M the 32,768 x 256 output layer is about 60% of the
//! forward's multiply-adds, and the continuation is usually a small part of each sequence.

use candle_core::{DType, Device, Tensor, D};
use rayon::prelude::*;

use crate::data::progress::Progress;
use crate::model::doge::log_softmax_last_dim;
use crate::model::DogeForCausalLM;
use crate::score::pad_batch;

/// One log-likelihood request in token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Never empty (tasks encode with the tokenizer's leading bos, or use bos as lm-eval does).
    pub context: Vec<u32>,
    pub continuation: Vec<u32>,
}

/// The score of one request's continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Loglik {
    /// Sum of the continuation tokens' log-probabilities (f32 per token, summed in f64).
    pub logprob: f64,
    /// Every continuation token is the argmax of its position.
    pub is_greedy: bool,
    /// Continuation tokens scored.
    pub tokens: usize,
}

/// How requests are scored.
#[derive(Debug, Clone, Copy)]
pub struct ScoreOptions {
    /// Sequences per forward pass; results do not depend on it.
    pub batch_size: usize,
    /// Longest sequence the model reads; longer contexts lose their start (lm-eval's truncation).
    pub max_len: usize,
    /// Score requests that share a context from one pass over it (its KV cache extended by each
    /// continuation) instead of one full sequence each; `DOGE_EVAL_SHARED_CONTEXT=0` turns it
    /// off. Scores agree to float rounding either way.
    pub share_contexts: bool,
    /// Only contexts of at least this many tokens are shared ([`SHARED_MIN_CONTEXT`]).
    pub shared_min_context: usize,
}

/// `share_contexts` unless `DOGE_EVAL_SHARED_CONTEXT=0`.
pub fn share_contexts_default() -> bool {
    std::env::var("DOGE_EVAL_SHARED_CONTEXT").as_deref() != Ok("0")
}

/// Rows of the lm_head at a time, so a long perplexity window never holds all its logits at once.
const LOGIT_ROWS: usize = 2048;

/// Log-likelihoods of every request's continuation, in request order.
pub fn loglikelihoods(
    model: &DogeForCausalLM,
    requests: &[Request],
    opts: ScoreOptions,
    progress: Option<&Progress>,
) -> anyhow::Result<Vec<Loglik>> {
    for (i, r) in requests.iter().enumerate() {
        if r.context.is_empty() || r.continuation.is_empty() {
            anyhow::bail!(
                "request {i}: the context and the continuation each need at least one token \
                 (context {} tokens, continuation {} tokens)",
                r.context.len(),
                r.continuation.len()
            );
        }
        if r.continuation.len() > opts.max_len {
            anyhow::bail!(
                "request {i}: the continuation has {} tokens, more than the model reads at once ({})",
                r.continuation.len(),
                opts.max_len
            );
        }
    }
    let mut out: Vec<Option<Loglik>> = vec![None; requests.len()];
    let len = |r: &Request| (r.context.len() + r.continuation.len()).min(opts.max_len + 1);
    if opts.share_contexts {
        // The lm_head runs once over the rows of `batch_size` groups: one product with the
        // [vocab, d] output matrix per item would repack that matrix each time.
        let groups = shared_groups(model, requests, opts.max_len, opts.shared_min_context);
        for chunk in groups.chunks(opts.batch_size.max(1)) {
            let mut hidden = Vec::with_capacity(chunk.len());
            let mut wanted: Vec<u32> = Vec::new();
            for group in chunk {
                let batch: Vec<&Request> = group.iter().map(|&i| &requests[i]).collect();
                hidden.push(shared_rows(model, &batch)?);
                for r in &batch {
                    wanted.extend_from_slice(&r.continuation);
                }
            }
            let hidden = Tensor::cat(&hidden, 0)?;
            let rows: Vec<u32> = (0..wanted.len() as u32).collect();
            let (logps, greedy) = pick_logprobs(model, &hidden, &rows, &wanted, model.device())?;
            let mut at = 0;
            for group in chunk {
                for &i in group {
                    let n = requests[i].continuation.len();
                    out[i] = Some(Loglik {
                        logprob: logps[at..at + n].iter().map(|&x| x as f64).sum(),
                        is_greedy: greedy[at..at + n].iter().all(|&g| g),
                        tokens: n,
                    });
                    at += n;
                }
                if let Some(p) = progress {
                    let tokens: usize = requests[group[0]].context.len()
                        + group
                            .iter()
                            .map(|&i| requests[i].continuation.len())
                            .sum::<usize>();
                    p.inc(group.len() as u64, tokens as u64);
                }
            }
        }
    }
    // The rest one sequence each: longest first; equal lengths keep request order, so the
    // batches are a function of the requests alone.
    let mut order: Vec<usize> = (0..requests.len()).filter(|&i| out[i].is_none()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(len(&requests[i])));
    let lens: Vec<usize> = order.iter().map(|&i| len(&requests[i])).collect();
    let plan = crate::score::plan_batches(&lens, opts.batch_size, model.batch_independent_len());
    for range in plan {
        let chunk = &order[range];
        let batch: Vec<&Request> = chunk.iter().map(|&i| &requests[i]).collect();
        let scores = score_batch(model, &batch, opts.max_len)?;
        for (&i, s) in chunk.iter().zip(scores) {
            out[i] = Some(s);
        }
        if let Some(p) = progress {
            let tokens: usize = batch.iter().map(|r| len(r) - 1).sum();
            p.inc(chunk.len() as u64, tokens as u64);
        }
    }
    Ok(out
        .into_iter()
        .map(|s| s.expect("every request scored"))
        .collect())
}

/// By default, contexts shorter than this are scored as whole sequences even when shared: one pass over a
/// short context saves less than the two small forwards per item cost. Measured on 2 CPU cores,
/// Doge-20M, HellaSwag (bench/eval_speed.py): 0-shot contexts (~50 tokens) score at 18.1 items/s
/// as whole sequences and 16.7 shared; 5-shot ones (~400 tokens) at 4.7 whole and 8.3 shared.
pub const SHARED_MIN_CONTEXT: usize = 128;

/// Requests that share a context, in groups of two or more (in request order), when scoring
/// them from one pass over the context gives what scoring each alone gives: nothing is
/// truncated, and with dynamic-NTK RoPE no sequence is longer than the original context (past
/// it, the rotation depends on the forward's own length).
fn shared_groups(
    model: &DogeForCausalLM,
    requests: &[Request],
    max_len: usize,
    min_context: usize,
) -> Vec<Vec<usize>> {
    let limit = model
        .batch_independent_len()
        .map_or(max_len, |l| l.min(max_len));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_context: std::collections::HashMap<&[u32], usize> = Default::default();
    for (i, r) in requests.iter().enumerate() {
        if r.context.len() < min_context || r.context.len() + r.continuation.len() > limit + 1 {
            continue;
        }
        match by_context.get(r.context.as_slice()) {
            Some(&g) => groups[g].push(i),
            None => {
                by_context.insert(&r.context, groups.len());
                groups.push(vec![i]);
            }
        }
    }
    groups.retain(|g| g.len() > 1);
    groups
}

/// The hidden states that predict the continuations of requests with one context, one row per
/// continuation token in request order: the context is run once, its KV cache then extended by
/// every continuation at once (one row each, right-padded). The last context position predicts
/// each continuation's first token; the continuations' own positions predict the rest.
fn shared_rows(model: &DogeForCausalLM, batch: &[&Request]) -> anyhow::Result<Tensor> {
    let dev = model.device();
    let context = &batch[0].context;
    let mut cache = model.new_cache();
    let input = Tensor::new(context.as_slice(), dev)?.unsqueeze(0)?;
    let ctx_hidden = model.hidden_states(&input, Some(&mut cache))?;
    let d = ctx_hidden.dim(2)?;
    let last = ctx_hidden
        .narrow(1, context.len() - 1, 1)?
        .reshape((1, d))?;
    let g = batch.len();
    // Every continuation but its last token is read after the context.
    let reads: Vec<&[u32]> = batch
        .iter()
        .map(|r| &r.continuation[..r.continuation.len() - 1])
        .collect();
    let width = reads.iter().map(|r| r.len()).max().unwrap_or(0);
    let cont_hidden = if width > 0 {
        for layer in &mut cache.layers {
            let grow = |t: &Tensor| -> candle_core::Result<Tensor> {
                let mut dims = t.dims().to_vec();
                dims[0] = g;
                t.broadcast_as(dims)?.contiguous()
            };
            if let Some((k, v)) = &layer.kv {
                layer.kv = Some((grow(k)?, grow(v)?));
            }
            if let Some(b) = &layer.bias {
                layer.bias = Some(grow(b)?);
            }
        }
        let pad = model.config().pad_token_id.unwrap_or(0);
        let input = pad_batch(&reads, pad, dev)?;
        Some(
            model
                .hidden_states(&input, Some(&mut cache))?
                .reshape((g * width, d))?,
        )
    } else {
        None
    };
    // Rows: [context's last] ++ [g * width continuation rows].
    let hidden = match &cont_hidden {
        Some(h) => Tensor::cat(&[&last, h], 0)?,
        None => last,
    };
    let mut rows: Vec<u32> = Vec::new();
    for (j, r) in batch.iter().enumerate() {
        rows.push(0);
        rows.extend((0..r.continuation.len() - 1).map(|t| (1 + j * width + t) as u32));
    }
    Ok(hidden.index_select(&Tensor::new(rows.as_slice(), dev)?, 0)?)
}

/// One forward over a batch of requests.
fn score_batch(
    model: &DogeForCausalLM,
    batch: &[&Request],
    max_len: usize,
) -> anyhow::Result<Vec<Loglik>> {
    let dev = model.device();
    // The tokens each request reads and the ones it predicts.
    let mut inputs: Vec<Vec<u32>> = Vec::with_capacity(batch.len());
    let mut targets: Vec<&[u32]> = Vec::with_capacity(batch.len());
    for r in batch {
        let mut full: Vec<u32> = r.context.iter().chain(&r.continuation).copied().collect();
        if full.len() > max_len + 1 {
            full.drain(..full.len() - (max_len + 1));
        }
        full.pop();
        inputs.push(full);
        targets.push(&r.continuation);
    }
    let refs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
    let pad = model.config().pad_token_id.unwrap_or(0);
    let input = pad_batch(&refs, pad, dev)?;
    let (b, width) = input.dims2()?;
    let hidden = model.hidden_states(&input, None)?;
    let d = hidden.dim(2)?;
    let hidden = hidden.reshape((b * width, d))?;
    // Row of the flattened hidden states that predicts each continuation token.
    let mut rows: Vec<u32> = Vec::new();
    let mut wanted: Vec<u32> = Vec::new();
    for (i, (inp, tgt)) in inputs.iter().zip(&targets).enumerate() {
        let first = inp.len() - tgt.len();
        rows.extend((first..inp.len()).map(|p| (i * width + p) as u32));
        wanted.extend_from_slice(tgt);
    }
    let (logps, greedy) = pick_logprobs(model, &hidden, &rows, &wanted, dev)?;
    let mut out = Vec::with_capacity(batch.len());
    let mut at = 0;
    for tgt in &targets {
        let n = tgt.len();
        out.push(Loglik {
            logprob: logps[at..at + n].iter().map(|&x| x as f64).sum(),
            is_greedy: greedy[at..at + n].iter().all(|&g| g),
            tokens: n,
        });
        at += n;
    }
    Ok(out)
}

/// log p(token | logits) of one row, and whether the token is the row's (first) argmax.
fn row_logprob(row: &[f32], token: usize) -> (f32, bool) {
    let (mut best, mut max) = (0, f32::NEG_INFINITY);
    for (i, &x) in row.iter().enumerate() {
        if x > max {
            (best, max) = (i, x);
        }
    }
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    ((row[token] - max) - sum.ln(), best == token)
}

/// log p(wanted[k] | row rows[k]) and whether wanted[k] is that row's argmax.
fn pick_logprobs(
    model: &DogeForCausalLM,
    hidden: &Tensor,
    rows: &[u32],
    wanted: &[u32],
    dev: &Device,
) -> anyhow::Result<(Vec<f32>, Vec<bool>)> {
    let mut logps = Vec::with_capacity(rows.len());
    let mut greedy = Vec::with_capacity(rows.len());
    for (rs, ws) in rows.chunks(LOGIT_ROWS).zip(wanted.chunks(LOGIT_ROWS)) {
        let idx = Tensor::new(rs, dev)?;
        let h = hidden.index_select(&idx, 0)?;
        let logits = model.logits(&h)?.to_dtype(DType::F32)?;
        if dev.is_cpu() {
            // One pass per row over the logits in place of log_softmax, gather and argmax
            // (each a pass over [rows, vocab] and two of them writing one): the same numbers,
            // a shift by the row's max and a float32 sum of exponentials.
            let v = logits.dim(1)?;
            let flat = logits.flatten_all()?.to_vec1::<f32>()?;
            let (lp, gr): (Vec<f32>, Vec<bool>) = flat
                .par_chunks(v)
                .zip(ws.par_iter())
                .map(|(row, &w)| row_logprob(row, w as usize))
                .unzip();
            logps.extend(lp);
            greedy.extend(gr);
            continue;
        }
        let logp = log_softmax_last_dim(&logits)?;
        let tgt = Tensor::new(ws, dev)?.unsqueeze(1)?;
        logps.extend(logp.gather(&tgt, D::Minus1)?.squeeze(1)?.to_vec1::<f32>()?);
        let best = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        greedy.extend(best.iter().zip(ws).map(|(b, w)| b == w));
    }
    Ok((logps, greedy))
}
