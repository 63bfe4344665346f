//! Reading a prepared dataset: rows in their stored (already shuffled) order, so a trainer reads
//! them sequentially and resumes exactly from a row index.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::config::Kind;
use super::manifest::{Manifest, SplitInfo, FORMAT};
use super::shards::{read_u32s, read_u64s, Dtype, ShardReader};

/// A DPO example.
#[derive(Debug, Clone, PartialEq)]
pub struct DpoRow {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

struct Split {
    rows: u64,
    tokens: ShardReader,
    masks: Option<ShardReader>,
    lens: Option<Vec<u32>>,
    index: Option<Vec<u64>>,
}

impl Split {
    fn open(dir: &Path, info: &SplitInfo, m: &Manifest) -> Result<Split> {
        let masks = if info.masks.is_empty() {
            None
        } else {
            Some(ShardReader::open(
                dir,
                &info.masks,
                Dtype::U8,
                m.rows_per_shard,
            )?)
        };
        let split = Split {
            rows: info.rows,
            tokens: ShardReader::open(dir, &info.shards, m.dtype, m.rows_per_shard)?,
            masks,
            lens: info
                .lens
                .as_ref()
                .map(|f| read_u32s(&dir.join(f)))
                .transpose()?,
            index: info
                .index
                .as_ref()
                .map(|f| read_u64s(&dir.join(f)))
                .transpose()?,
        };
        if let Some(l) = &split.lens {
            if l.len() as u64 != info.rows {
                bail!(
                    "{}: {} row lengths for {} rows; prepare the data again",
                    dir.display(),
                    l.len(),
                    info.rows
                );
            }
        }
        if let Some(ix) = &split.index {
            if ix.len() as u64 != 3 * info.rows + 1 {
                bail!(
                    "{}: DPO index has {} offsets for {} rows; prepare the data again",
                    dir.display(),
                    ix.len(),
                    info.rows
                );
            }
        }
        Ok(split)
    }

    fn check(&self, i: usize, name: &str) {
        assert!(
            (i as u64) < self.rows,
            "{name} row {i} out of range ({} rows)",
            self.rows
        );
    }

    fn segment(&self, k: usize) -> Vec<u32> {
        let ix = self.index.as_ref().expect("DPO data has an index");
        self.tokens.span(ix[k], (ix[k + 1] - ix[k]) as usize)
    }
}

/// A prepared dataset directory (see `prepare`).
pub struct TokenDataset {
    dir: PathBuf,
    manifest: Manifest,
    train: Split,
    test: Split,
}

impl TokenDataset {
    /// Opens `dir` (a `runs/data/<fingerprint>/` directory), mapping its shards.
    pub fn open(dir: &Path) -> Result<TokenDataset> {
        let manifest = Manifest::read(dir)?;
        if manifest.format != FORMAT {
            bail!(
                "{}: data format {} but this doge reads {FORMAT}; prepare the data again",
                dir.display(),
                manifest.format
            );
        }
        let train = Split::open(dir, &manifest.train, &manifest)?;
        let test = Split::open(dir, &manifest.test, &manifest)?;
        Ok(TokenDataset {
            dir: dir.to_path_buf(),
            manifest,
            train,
            test,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn kind(&self) -> Kind {
        self.manifest.kind
    }

    pub fn seq_len(&self) -> usize {
        self.manifest.seq_len
    }

    /// Tokens per row: `seq_len + 1` (0 for DPO, whose rows are ragged).
    pub fn row_len(&self) -> usize {
        self.manifest.row_len
    }

    pub fn num_train_rows(&self) -> usize {
        self.train.rows as usize
    }

    pub fn num_test_rows(&self) -> usize {
        self.test.rows as usize
    }

    /// Training row `i` (`seq_len + 1` tokens; unpacked rows are right-padded with the pad id,
    /// see [`Self::train_len`]). DPO: the prompt followed by the chosen answer. Panics when
    /// `i >= num_train_rows()`.
    pub fn train_row(&self, i: usize) -> Vec<u32> {
        self.row(&self.train, i, "train")
    }

    /// Held-out row `i`, as [`Self::train_row`].
    pub fn test_row(&self, i: usize) -> Vec<u32> {
        self.row(&self.test, i, "test")
    }

    /// Tokens of training row `i` that are data (the rest is padding): `row_len` when packed.
    pub fn train_len(&self, i: usize) -> usize {
        self.len(&self.train, i, "train")
    }

    pub fn test_len(&self, i: usize) -> usize {
        self.len(&self.test, i, "test")
    }

    /// SFT: 1 for each token of training row `i` that the assistant wrote (the loss positions,
    /// as labels: use `mask[1..]` with `row[1..]`); `None` for other kinds.
    pub fn train_mask(&self, i: usize) -> Option<Vec<u8>> {
        self.mask(&self.train, i, "train")
    }

    pub fn test_mask(&self, i: usize) -> Option<Vec<u8>> {
        self.mask(&self.test, i, "test")
    }

    /// DPO training example `i`.
    pub fn train_pair(&self, i: usize) -> DpoRow {
        self.pair(&self.train, i, "train")
    }

    pub fn test_pair(&self, i: usize) -> DpoRow {
        self.pair(&self.test, i, "test")
    }

    fn row(&self, s: &Split, i: usize, name: &str) -> Vec<u32> {
        s.check(i, name);
        if self.manifest.kind == Kind::Dpo {
            let mut r = s.segment(3 * i);
            r.extend(s.segment(3 * i + 1));
            return r;
        }
        s.tokens.row(i as u64, self.manifest.row_len)
    }

    fn len(&self, s: &Split, i: usize, name: &str) -> usize {
        s.check(i, name);
        match (&s.lens, &s.index) {
            (Some(l), _) => l[i] as usize,
            (None, Some(ix)) => (ix[3 * i + 2] - ix[3 * i]) as usize,
            _ => self.manifest.row_len,
        }
    }

    fn mask(&self, s: &Split, i: usize, name: &str) -> Option<Vec<u8>> {
        s.check(i, name);
        s.masks.as_ref().map(|m| {
            m.row(i as u64, self.manifest.row_len)
                .into_iter()
                .map(|v| v as u8)
                .collect()
        })
    }

    fn pair(&self, s: &Split, i: usize, name: &str) -> DpoRow {
        s.check(i, name);
        assert_eq!(
            self.manifest.kind,
            Kind::Dpo,
            "{} holds {} data, not DPO pairs",
            self.dir.display(),
            self.manifest.kind.as_str()
        );
        DpoRow {
            prompt: s.segment(3 * i),
            chosen: s.segment(3 * i + 1),
            rejected: s.segment(3 * i + 2),
        }
    }
}
