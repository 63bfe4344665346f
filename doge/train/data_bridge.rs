//! Connects a stage to its prepared data: runs the data pipeline (a no-op once prepared) under
//! `<registry>/data` (or `$DOGE_DATA_DIR`), and exposes the dataset as `TokenRows`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::rows::TokenRows;
use crate::data::{PrepareOptions, TokenDataset};
use crate::experiment::{Experiment, Stage};

fn options(exp: &Experiment) -> PrepareOptions {
    let mut o = PrepareOptions::new(crate::data::experiment_cache_root(exp));
    if let Some(m) = exp.data.memory_bytes() {
        o.memory = m;
    }
    o
}

/// Runs `f` holding an exclusive lock on the experiment's data cache: workers of one sweep (threads
/// or processes, on one machine or on a shared filesystem) would otherwise train the same
/// tokenizer or tokenize the same corpus at once. Once prepared, the wait is a cache lookup.
fn with_data_lock<T>(exp: &Experiment, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let root = crate::data::experiment_cache_root(exp);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let path = root.join(".prepare.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    let result = f();
    drop(lock); // closing the file releases the lock
    result
}

/// The folder of the experiment's tokenizer (trained and cached on first use when needed).
pub fn tokenizer_dir(exp: &Experiment) -> Result<PathBuf> {
    with_data_lock(exp, || {
        Ok(crate::data::experiment_tokenizer(exp, &options(exp))?.dir)
    })
}

/// The token rows a pretrain stage (packed text) or an SFT stage (chats with assistant masks)
/// trains and evaluates on.
pub fn stage_rows(exp: &Experiment, stage: &Stage) -> Result<Box<dyn TokenRows>> {
    Ok(Box::new(stage_dataset(exp, stage)?))
}

/// The prepared data of a stage, checked to be of the stage's kind (text, chats or pairs).
pub fn stage_dataset(exp: &Experiment, stage: &Stage) -> Result<TokenDataset> {
    let (tok, dir) = with_data_lock(exp, || {
        crate::data::prepare_experiment(exp, stage, &options(exp))
    })?;
    let cfg_vocab = exp
        .model
        .to_config(&exp.base_dir)
        .ok()
        .flatten()
        .map(|c| c.vocab_size);
    if let Some(v) = cfg_vocab {
        if tok.vocab_size() > v {
            bail!(
                "the tokenizer ({}) has {} tokens but the model's vocab is {v}; set `model vocab={}` or use a smaller tokenizer",
                tok.dir.display(),
                tok.vocab_size(),
                tok.vocab_size()
            );
        }
    }
    let ds = TokenDataset::open(&dir)?;
    let want = crate::data::DataSpec::from_experiment(exp, Some(stage)).kind;
    if ds.kind() != want {
        bail!(
            "{}: prepared as {} data, but stage `{}` needs {} data",
            dir.display(),
            ds.kind().as_str(),
            stage.id(),
            want.as_str()
        );
    }
    Ok(ds)
}

impl TokenRows for TokenDataset {
    fn row_len(&self) -> usize {
        TokenDataset::row_len(self)
    }
    fn num_train_rows(&self) -> usize {
        TokenDataset::num_train_rows(self)
    }
    fn train_row(&self, i: usize) -> Result<Vec<u32>> {
        Ok(TokenDataset::train_row(self, i))
    }
    fn num_test_rows(&self) -> usize {
        TokenDataset::num_test_rows(self)
    }
    fn test_row(&self, i: usize) -> Result<Vec<u32>> {
        Ok(TokenDataset::test_row(self, i))
    }
    fn train_len(&self, i: usize) -> usize {
        TokenDataset::train_len(self, i)
    }
    fn test_len(&self, i: usize) -> usize {
        TokenDataset::test_len(self, i)
    }
    fn train_mask(&self, i: usize) -> Option<Vec<u8>> {
        TokenDataset::train_mask(self, i)
    }
    fn test_mask(&self, i: usize) -> Option<Vec<u8>> {
        TokenDataset::test_mask(self, i)
    }
    fn document_separator(&self) -> Option<u32> {
        let m = self.manifest();
        (m.packing && self.kind() == crate::data::config::Kind::Sft).then_some(m.bos_id)
    }
}
