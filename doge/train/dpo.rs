//! Direct preference optimisation (Rafailov et al. 2023) with TRL's sigmoid loss:
//!
//! `loss = -log σ(β · ((π_c − r_c) − (π_r − r_r)))`
//!
//! where π and r are the summed log-probabilities of the chosen (c) and rejected (r) answer
//! tokens given the prompt under the policy being trained and under the reference: the stage's
//! starting checkpoint, frozen. The reference log-probabilities never change, so they are computed
//! once before the first step and cached on disk beside the stage's checkpoints, in a file named by
//! a fingerprint of the data, the reference weights and the length limit (a resumed stage reads
//! them back instead of recomputing).
//!
//! Logged per step (averaged over the step's micro-batches), with TRL's names: `rewards/chosen`
//! = β(π_c − r_c), `rewards/rejected` = β(π_r − r_r), `rewards/accuracy` = share of pairs where
//! the chosen reward is the larger, `rewards/margin` = chosen − rejected; on held-out pairs the
//! same with an `eval_` prefix, and once at the end over every training pair with `train_`.
//!
//! Length: a prompt longer than half the limit keeps its last `max_len / 2` tokens (the seed's
//! `max_prompt_length` 512 of `max_length` 1024), then each answer is cut at its end so that
//! prompt + answer fits `max_len`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::trainer::{self, MicroBatch, Objective, StageObserver, StageOutcome, StageSettings};
use crate::checkpoint::Checkpoint;
use crate::data::{DpoRow, TokenDataset};
use crate::model::doge::log_softmax_last_dim;
use crate::model::DogeForCausalLM;

/// Preference pairs addressed by index (a prepared DPO dataset, or pairs in memory).
pub trait PreferencePairs {
    fn num_train(&self) -> usize;
    fn train_pair(&self, i: usize) -> DpoRow;
    fn num_test(&self) -> usize;
    fn test_pair(&self, i: usize) -> DpoRow;
    /// Identifies the pairs' contents (part of the reference cache key).
    fn fingerprint(&self) -> String;
}

impl PreferencePairs for TokenDataset {
    fn num_train(&self) -> usize {
        self.num_train_rows()
    }
    fn train_pair(&self, i: usize) -> DpoRow {
        TokenDataset::train_pair(self, i)
    }
    fn num_test(&self) -> usize {
        self.num_test_rows()
    }
    fn test_pair(&self, i: usize) -> DpoRow {
        TokenDataset::test_pair(self, i)
    }
    fn fingerprint(&self) -> String {
        self.manifest().fingerprint.clone()
    }
}

/// Pairs held in memory (tests).
#[derive(Debug, Clone, Default)]
pub struct MemoryPairs {
    pub train: Vec<DpoRow>,
    pub test: Vec<DpoRow>,
}

impl PreferencePairs for MemoryPairs {
    fn num_train(&self) -> usize {
        self.train.len()
    }
    fn train_pair(&self, i: usize) -> DpoRow {
        self.train[i].clone()
    }
    fn num_test(&self) -> usize {
        self.test.len()
    }
    fn test_pair(&self, i: usize) -> DpoRow {
        self.test[i].clone()
    }
    fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for (name, rows) in [("train", &self.train), ("test", &self.test)] {
            h.update(name.as_bytes());
            for r in rows {
                for seg in [&r.prompt, &r.chosen, &r.rejected] {
                    h.update((seg.len() as u64).to_le_bytes());
                    for t in seg {
                        h.update(t.to_le_bytes());
                    }
                }
            }
        }
        format!("{:x}", h.finalize())
    }
}

/// One sequence to score: prompt followed by answer, and where the answer starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub ids: Vec<u32>,
    pub prompt_len: usize,
}

/// Prompt + answer within `max_len` tokens (see the module docs for what is cut).
pub fn fit(prompt: &[u32], answer: &[u32], max_len: usize) -> Scored {
    let keep_prompt = prompt.len().min((max_len / 2).max(1));
    let prompt = &prompt[prompt.len() - keep_prompt..];
    let keep_answer = answer.len().min(max_len.saturating_sub(keep_prompt));
    let mut ids = prompt.to_vec();
    ids.extend_from_slice(&answer[..keep_answer]);
    Scored {
        ids,
        prompt_len: keep_prompt,
    }
}

/// The chosen and rejected sequences of a pair.
pub fn pair_sequences(pair: &DpoRow, max_len: usize) -> [Scored; 2] {
    [
        fit(&pair.prompt, &pair.chosen, max_len),
        fit(&pair.prompt, &pair.rejected, max_len),
    ]
}

/// Summed log-probabilities of each sequence's answer tokens given what precedes them, as one
/// [n] f32 tensor that gradients flow through. Sequences are right-padded into one batch; the
/// mask is causal, so padding changes nothing for the real tokens.
pub fn answer_logps(model: &DogeForCausalLM, seqs: &[Scored]) -> Result<Tensor> {
    let dev = model.device();
    let width = seqs.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    if width < 2 {
        bail!("a DPO sequence needs a prompt and an answer token");
    }
    let mut flat = Vec::with_capacity(seqs.len() * width);
    let mut mask = Vec::with_capacity(seqs.len() * (width - 1));
    for s in seqs {
        if s.prompt_len == 0 || s.ids.len() <= s.prompt_len {
            bail!(
                "a DPO sequence of {} tokens has a prompt of {}: it needs both a prompt and an answer",
                s.ids.len(),
                s.prompt_len
            );
        }
        flat.extend_from_slice(&s.ids);
        flat.extend(std::iter::repeat_n(0u32, width - s.ids.len()));
        // Shifted position j predicts token j + 1: answer tokens are p .. len.
        mask.extend(
            (0..width - 1).map(|j| f32::from(j + 1 >= s.prompt_len && j + 1 < s.ids.len())),
        );
    }
    let n = seqs.len();
    let input = Tensor::from_vec(flat, (n, width), dev)?;
    let logits = model.forward(&input, None)?;
    let logp = log_softmax_last_dim(&logits.narrow(1, 0, width - 1)?.to_dtype(DType::F32)?)?;
    let targets = input
        .narrow(1, 1, width - 1)?
        .contiguous()?
        .unsqueeze(D::Minus1)?;
    let picked = logp.gather(&targets, D::Minus1)?.squeeze(D::Minus1)?;
    let mask = Tensor::from_vec(mask, (n, width - 1), dev)?;
    Ok((picked * mask)?.sum(1)?)
}

/// The batch means of a DPO step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpoStats {
    pub loss: f64,
    pub chosen: f64,
    pub rejected: f64,
    pub accuracy: f64,
    pub margin: f64,
}

/// The sigmoid DPO loss (mean over pairs, differentiable in the policy log-probs) and its
/// statistics. All four inputs are [n] f32 log-probability sums.
pub fn dpo_loss(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    ref_chosen: &Tensor,
    ref_rejected: &Tensor,
    beta: f64,
) -> Result<(Tensor, DpoStats)> {
    let chosen = ((policy_chosen - ref_chosen)? * beta)?;
    let rejected = ((policy_rejected - ref_rejected)? * beta)?;
    let z = (&chosen - &rejected)?;
    // -log σ(z) = softplus(-z) = max(-z, 0) + log(1 + exp(-|z|)), stable for any z.
    let neg = z.neg()?;
    let softplus = (neg.relu()? + ((z.abs()?.neg()?.exp()? + 1.0)?.log())?)?;
    let loss = softplus.mean_all()?;
    let c = chosen.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let r = rejected.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let n = c.len().max(1) as f64;
    let stats = DpoStats {
        loss: loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        chosen: c.iter().sum::<f64>() / n,
        rejected: r.iter().sum::<f64>() / n,
        accuracy: c.iter().zip(&r).filter(|(a, b)| a > b).count() as f64 / n,
        margin: c.iter().zip(&r).map(|(a, b)| a - b).sum::<f64>() / n,
    };
    Ok((loss, stats))
}

/// The frozen reference's log-probability sums, `[chosen, rejected]` per pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub key: String,
    pub train: Vec<[f32; 2]>,
    pub test: Vec<[f32; 2]>,
}

/// sha256 of every tensor (name, shape, float32 values) of a checkpoint, in name order.
pub fn weights_fingerprint(weights: &Checkpoint) -> Result<String> {
    let mut names: Vec<&String> = weights.tensors.keys().collect();
    names.sort();
    let mut h = Sha256::new();
    for name in names {
        let t = &weights.tensors[name];
        h.update(name.as_bytes());
        h.update(format!("{:?}", t.dims()).as_bytes());
        for v in t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()? {
            h.update(v.to_le_bytes());
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

fn score_all(
    model: &DogeForCausalLM,
    count: usize,
    pair: impl Fn(usize) -> DpoRow,
    max_len: usize,
    batch: usize,
) -> Result<Vec<[f32; 2]>> {
    let mut out = Vec::with_capacity(count);
    let mut start = 0;
    while start < count {
        let k = batch.max(1).min(count - start);
        let seqs: Vec<Scored> = (start..start + k)
            .flat_map(|i| pair_sequences(&pair(i), max_len))
            .collect();
        let logps = answer_logps(model, &seqs)?.to_vec1::<f32>()?;
        out.extend(logps.chunks(2).map(|c| [c[0], c[1]]));
        start += k;
    }
    Ok(out)
}

/// The reference log-probabilities of every pair under `reference`: read from
/// `<cache_dir>/reference-logps-KEY.json` when present, else computed (batches of `batch` pairs)
/// and written there.
pub fn reference_logps(
    reference: &Checkpoint,
    pairs: &dyn PreferencePairs,
    max_len: usize,
    batch: usize,
    cache_dir: &Path,
) -> Result<(Reference, PathBuf)> {
    let key = {
        let mut h = Sha256::new();
        h.update(pairs.fingerprint().as_bytes());
        h.update(weights_fingerprint(reference)?.as_bytes());
        h.update((max_len as u64).to_le_bytes());
        format!("{:x}", h.finalize())
    };
    let path = cache_dir.join(format!("reference-logps-{}.json", &key[..16]));
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(r) = serde_json::from_str::<Reference>(&text) {
            if r.key == key
                && r.train.len() == pairs.num_train()
                && r.test.len() == pairs.num_test()
            {
                return Ok((r, path));
            }
        }
    }
    let model = reference.model()?;
    let r = Reference {
        train: score_all(
            &model,
            pairs.num_train(),
            |i| pairs.train_pair(i),
            max_len,
            batch,
        )?,
        test: score_all(
            &model,
            pairs.num_test(),
            |i| pairs.test_pair(i),
            max_len,
            batch,
        )?,
        key,
    };
    // Every rank of a data-parallel job computes them (as fast as waiting); rank 0 writes them.
    if crate::dist::world().is_root() {
        std::fs::create_dir_all(cache_dir)
            .with_context(|| format!("creating {}", cache_dir.display()))?;
        crate::checkpoint::write_atomically(&path, |tmp| {
            std::fs::write(tmp, serde_json::to_string(&r).expect("plain numbers"))
        })?;
    }
    Ok((r, path))
}

/// The DPO objective over `pairs` against cached reference log-probabilities.
pub struct Dpo<'a> {
    pub pairs: &'a dyn PreferencePairs,
    pub reference: Reference,
    pub beta: f64,
    pub max_len: usize,
}

impl Dpo<'_> {
    /// Loss and statistics of the pairs `idx` (train or test), the reference's from the cache.
    fn pairs_loss(
        &self,
        model: &DogeForCausalLM,
        idx: &[usize],
        test: bool,
    ) -> Result<(Tensor, DpoStats, usize)> {
        let dev: &Device = model.device();
        let mut seqs = Vec::with_capacity(2 * idx.len());
        let (mut rc, mut rr) = (Vec::new(), Vec::new());
        for &i in idx {
            let (pair, r) = if test {
                (self.pairs.test_pair(i), self.reference.test[i])
            } else {
                (self.pairs.train_pair(i), self.reference.train[i])
            };
            seqs.extend(pair_sequences(&pair, self.max_len));
            rc.push(r[0]);
            rr.push(r[1]);
        }
        let tokens = seqs.iter().map(|s| s.ids.len()).sum();
        let logps = answer_logps(model, &seqs)?.reshape((idx.len(), 2))?;
        let pc = logps.narrow(1, 0, 1)?.squeeze(1)?;
        let pr = logps.narrow(1, 1, 1)?.squeeze(1)?;
        let rc = Tensor::from_vec(rc, idx.len(), dev)?;
        let rr = Tensor::from_vec(rr, idx.len(), dev)?;
        let (loss, stats) = dpo_loss(&pc, &pr, &rc, &rr, self.beta)?;
        Ok((loss, stats, tokens))
    }
}

impl Objective for Dpo<'_> {
    fn num_train(&self) -> usize {
        self.pairs.num_train()
    }

    fn tokens_per_example(&self) -> usize {
        2 * self.max_len
    }

    fn micro_batch(&self, model: &DogeForCausalLM, first: u64, count: usize) -> Result<MicroBatch> {
        let n = self.pairs.num_train() as u64;
        let idx: Vec<usize> = (0..count as u64)
            .map(|k| ((first + k) % n) as usize)
            .collect();
        let (loss, s, tokens) = self.pairs_loss(model, &idx, false)?;
        Ok(MicroBatch {
            loss,
            tokens,
            metrics: vec![
                ("rewards/chosen", s.chosen),
                ("rewards/rejected", s.rejected),
                ("rewards/accuracy", s.accuracy),
                ("rewards/margin", s.margin),
            ],
        })
    }

    fn evaluate(
        &self,
        model: &DogeForCausalLM,
        batch_size: usize,
    ) -> Result<Vec<(&'static str, f64)>> {
        const NAMES: [&str; 5] = [
            "eval_loss",
            "eval_rewards/chosen",
            "eval_rewards/rejected",
            "eval_rewards/accuracy",
            "eval_rewards/margin",
        ];
        self.summary(model, batch_size, true, NAMES)
    }

    fn final_metrics(
        &self,
        model: &DogeForCausalLM,
        batch_size: usize,
    ) -> Result<Vec<(&'static str, f64)>> {
        const NAMES: [&str; 5] = [
            "train_loss",
            "train_rewards/chosen",
            "train_rewards/rejected",
            "train_rewards/accuracy",
            "train_rewards/margin",
        ];
        self.summary(model, batch_size, false, NAMES)
    }
}

impl Dpo<'_> {
    /// Loss and rewards over every held-out (or training) pair, as `names`.
    fn summary(
        &self,
        model: &DogeForCausalLM,
        batch_size: usize,
        test: bool,
        names: [&'static str; 5],
    ) -> Result<Vec<(&'static str, f64)>> {
        let n = if test {
            self.pairs.num_test()
        } else {
            self.pairs.num_train()
        };
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut sums = [0f64; 5];
        let mut start = 0;
        while start < n {
            let idx: Vec<usize> = (start..n.min(start + batch_size.max(1))).collect();
            let (_, s, _) = self.pairs_loss(model, &idx, test)?;
            let k = idx.len() as f64;
            for (acc, v) in sums
                .iter_mut()
                .zip([s.loss, s.chosen, s.rejected, s.accuracy, s.margin])
            {
                *acc += v * k;
            }
            start += idx.len();
        }
        Ok(names
            .into_iter()
            .zip(sums)
            .map(|(name, v)| (name, v / n as f64))
            .collect())
    }
}

/// Runs (or resumes) a DPO stage in `stage_dir` from `start`, which is also the frozen reference.
#[allow(clippy::too_many_arguments)]
pub fn train(
    start: Checkpoint,
    pairs: &dyn PreferencePairs,
    beta: f64,
    max_len: usize,
    s: &StageSettings,
    stage_dir: &Path,
    observer: &mut dyn StageObserver,
    stop: &AtomicBool,
) -> Result<StageOutcome> {
    if !(beta.is_finite() && beta > 0.0) {
        bail!("DPO beta {beta} must be a positive number");
    }
    let (reference, path) = reference_logps(&start, pairs, max_len, s.batch_size, stage_dir)?;
    observer.println(&format!(
        "reference log-probabilities of {} train and {} test pairs: {}",
        reference.train.len(),
        reference.test.len(),
        path.display()
    ));
    let objective = Dpo {
        pairs,
        reference,
        beta,
        max_len,
    };
    trainer::train(start, &objective, s, stage_dir, observer, stop)
}
