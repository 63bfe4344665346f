//! Supervised fine-tuning: the next-token objective (`pretrain.rs`) over chat rows whose labels
//! are masked to the assistant's tokens.
//!
//! The data pipeline renders every conversation with the tokenizer's chat template and marks, per
//! token, whether the assistant wrote it: each assistant turn's content and the end-of-turn token
//! the template closes it with (`doge::data::chat`). Only those tokens are labels; system and user
//! turns, headers and padding are -100.
//!
//! Packing (the seed's `packing true`) concatenates conversations, each `<bos> ... <eos>`, into
//! rows of `seq-len + 1` tokens. **No loss crosses a boundary**: the first token of a conversation
//! (its `<bos>`) is never a label, so nothing is learnt from predicting one conversation out of the
//! previous one. **Nor does attention**: the rows tell the model where each conversation starts
//! (`TokenRows::document_separator`, the `<bos>`), and a token attends only to its own
//! conversation (`model::masks::Documents`). Positions are not reset, and need not be: rotary
//! scores depend only on the distance between query and key, so a packed conversation scores as it
//! would alone (tests/train_sft.rs checks this to 1e-5). This is what TRL's `padding_free` packing
//! does; the seed's older TRL "wrapped" packing let attention cross. A conversation cut at a row's
//! end continues at the next row's start as a document of its own. With `packing #false` every row
//! is one conversation, truncated to `seq-len + 1` and right-padded; padding carries no loss and,
//! the mask being causal, is never attended to by real tokens.
//!
//! The loss of a micro-batch is the mean over its assistant tokens (a micro-batch with none
//! contributes 0); gradient accumulation averages micro-batch means, as transformers' Trainer did
//! before it counted items across micro-batches.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Result};

use super::pretrain::NextToken;
use super::rows::TokenRows;
use super::trainer::{self, StageObserver, StageOutcome, StageSettings};
use crate::checkpoint::Checkpoint;

/// The SFT objective over `rows`, which must carry assistant masks.
pub fn objective(rows: &dyn TokenRows) -> Result<NextToken<'_>> {
    if rows.num_train_rows() > 0 && rows.train_mask(0).is_none() {
        bail!("the SFT data has no assistant masks; prepare it as an `sft` stage's data (chats, not plain text)");
    }
    Ok(NextToken { rows })
}

/// Runs (or resumes) an SFT stage in `stage_dir` from `start`.
pub fn train(
    start: Checkpoint,
    rows: &dyn TokenRows,
    s: &StageSettings,
    stage_dir: &Path,
    observer: &mut dyn StageObserver,
    stop: &AtomicBool,
) -> Result<StageOutcome> {
    trainer::train(start, &objective(rows)?, s, stage_dir, observer, stop)
}
