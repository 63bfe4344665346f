//! The next-token objective: cross-entropy over fixed-length rows, as pre-training computes it.
//! SFT uses the same objective over rows that carry a label mask (see `sft.rs`). The loop itself
//! (optimizer steps, checkpoints, resume) is `trainer.rs`.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};

use super::rows::TokenRows;
use super::trainer::{self, MicroBatch, Objective};
use crate::checkpoint::Checkpoint;
use crate::model::doge::IGNORE_INDEX;
use crate::model::masks::Documents;
use crate::model::DogeForCausalLM;

pub use super::trainer::{StageObserver, StageOutcome, StageSettings};

/// Next-token loss over `TokenRows`: every real token is a label, except where the rows carry a
/// mask (SFT), which keeps only the masked-in tokens.
pub struct NextToken<'a> {
    pub rows: &'a dyn TokenRows,
}

/// The labels of one row: its tokens where they carry loss, else -100. A token carries loss when
/// it is data (not padding: `j < len`) and, with a mask, when its mask byte is 1.
pub fn row_labels(row: &[u32], len: usize, mask: Option<&[u8]>) -> Vec<i64> {
    row.iter()
        .enumerate()
        .map(|(j, &t)| {
            let keep = j < len && mask.is_none_or(|m| m[j] == 1);
            if keep {
                t as i64
            } else {
                IGNORE_INDEX
            }
        })
        .collect()
}

/// Reads `count` rows starting at row `start` (wrapping around the data: a new epoch): the
/// [count, row_len] u32 inputs and their i64 labels, and how many labels carry loss.
fn batch(
    rows: &dyn TokenRows,
    start: u64,
    count: usize,
    test: bool,
    dev: &Device,
) -> Result<(Tensor, Tensor, usize)> {
    let n = if test {
        rows.num_test_rows()
    } else {
        rows.num_train_rows()
    } as u64;
    let width = rows.row_len();
    let mut ids = Vec::with_capacity(count * width);
    let mut labels = Vec::with_capacity(count * width);
    let mut active = 0;
    for k in 0..count as u64 {
        let i = ((start + k) % n) as usize;
        let (row, len, mask) = if test {
            (rows.test_row(i)?, rows.test_len(i), rows.test_mask(i))
        } else {
            (rows.train_row(i)?, rows.train_len(i), rows.train_mask(i))
        };
        if row.len() != width {
            bail!("row {i} has {} tokens, expected {width}", row.len());
        }
        if mask.as_ref().is_some_and(|m| m.len() != width) {
            bail!("row {i} has a mask of another length than its {width} tokens");
        }
        let l = row_labels(&row, len, mask.as_deref());
        // Position 0 is never predicted.
        active += l[1..].iter().filter(|&&x| x != IGNORE_INDEX).count();
        labels.extend(l);
        ids.extend(row);
    }
    Ok((
        Tensor::from_vec(ids, (count, width), dev)?,
        Tensor::from_vec(labels, (count, width), dev)?,
        active,
    ))
}

/// The mean loss over the labels that carry loss. A micro-batch with none (an SFT row holding only
/// a prompt) gives 0 with zero gradients rather than 0/0. Rows of packed documents starting with
/// `separator` keep attention inside each document.
fn masked_loss(
    model: &DogeForCausalLM,
    ids: &Tensor,
    labels: &Tensor,
    active: usize,
    separator: Option<u32>,
) -> Result<Tensor> {
    if active == 0 {
        return Ok((model.forward(ids, None)?.sum_all()? * 0.0)?);
    }
    let documents = match separator {
        Some(sep) => {
            let width = ids.dim(1)?;
            let flat = ids.flatten_all()?.to_vec1::<u32>()?;
            Some(Documents::starting_at(&flat, width, sep))
        }
        None => None,
    };
    // `loss` = causal_lm_loss(forward), without materialising the logits on the fused CPU path.
    Ok(model.loss_in(ids, labels, documents.as_ref())?)
}

/// Mean next-token loss over all held-out rows (weighted by rows, as the training loss).
pub fn eval_loss(model: &DogeForCausalLM, rows: &dyn TokenRows, batch_size: usize) -> Result<f64> {
    let n = rows.num_test_rows();
    let (mut sum, mut count) = (0f64, 0usize);
    let mut start = 0;
    while start < n {
        let k = batch_size.min(n - start);
        let (ids, labels, active) = batch(rows, start as u64, k, true, model.device())?;
        if active > 0 {
            let loss = masked_loss(model, &ids, &labels, active, rows.document_separator())?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            sum += loss * k as f64;
            count += k;
        }
        start += k;
    }
    Ok(if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    })
}

impl Objective for NextToken<'_> {
    fn num_train(&self) -> usize {
        self.rows.num_train_rows()
    }

    fn tokens_per_example(&self) -> usize {
        self.rows.row_len().saturating_sub(1)
    }

    fn micro_batch(&self, model: &DogeForCausalLM, first: u64, count: usize) -> Result<MicroBatch> {
        let (ids, labels, active) = batch(self.rows, first, count, false, model.device())?;
        Ok(MicroBatch {
            loss: masked_loss(model, &ids, &labels, active, self.rows.document_separator())?,
            tokens: count * self.tokens_per_example(),
            metrics: Vec::new(),
        })
    }

    fn evaluate(
        &self,
        model: &DogeForCausalLM,
        batch_size: usize,
    ) -> Result<Vec<(&'static str, f64)>> {
        if self.rows.num_test_rows() == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![(
            "eval_loss",
            eval_loss(model, self.rows, batch_size)?,
        )])
    }
}

/// Runs (or resumes) a pretrain stage in `stage_dir`, starting from `start` unless a checkpoint of
/// this stage exists there.
pub fn train(
    start: Checkpoint,
    rows: &dyn TokenRows,
    s: &StageSettings,
    stage_dir: &Path,
    observer: &mut dyn StageObserver,
    stop: &AtomicBool,
) -> Result<StageOutcome> {
    trainer::train(start, &NextToken { rows }, s, stage_dir, observer, stop)
}
