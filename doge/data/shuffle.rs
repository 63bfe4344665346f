//! An out-of-core shuffle: entries carry a seeded 64-bit random key, are scattered to K bucket
//! files by key range, and each bucket is sorted in memory. Reading the buckets in order gives
//! every entry sorted by key, a uniform random permutation that does not depend on K, so any
//! memory budget writes the same rows in the same order.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::pieces::DocRecord;

/// One document to place: its sort key, piece and where its tokens are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub key: u64,
    pub piece: u32,
    pub rec: DocRecord,
}

pub const ENTRY_BYTES: usize = 32;

impl Entry {
    fn to_bytes(self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[0..8].copy_from_slice(&self.key.to_le_bytes());
        b[8..12].copy_from_slice(&self.piece.to_le_bytes());
        b[12..16].copy_from_slice(&self.rec.len.to_le_bytes());
        b[16..24].copy_from_slice(&self.rec.offset.to_le_bytes());
        b[24..28].copy_from_slice(&self.rec.cuts[0].to_le_bytes());
        b[28..32].copy_from_slice(&self.rec.cuts[1].to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Entry {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Entry {
            key: u64_at(0),
            piece: u32_at(8),
            rec: DocRecord {
                offset: u64_at(16),
                len: u32_at(12),
                cuts: [u32_at(24), u32_at(28)],
                content: 0,
            },
        }
    }

    fn order(&self) -> (u64, u32, u64) {
        (self.key, self.piece, self.rec.offset)
    }
}

/// Bucket files being filled.
pub struct Scatter {
    paths: Vec<PathBuf>,
    files: Vec<BufWriter<File>>,
    entries: u64,
}

impl Scatter {
    /// Enough buckets that one holds about `bucket_bytes` of entries.
    pub fn new(dir: &Path, name: &str, entries: u64, bucket_bytes: usize) -> Result<Self> {
        let k = (entries * ENTRY_BYTES as u64)
            .div_ceil(bucket_bytes.max(ENTRY_BYTES) as u64)
            .max(1);
        let buffer = (bucket_bytes / k as usize).clamp(4 << 10, 1 << 20);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut paths = Vec::new();
        let mut files = Vec::new();
        for i in 0..k {
            let p = dir.join(format!("{name}-{i:05}.bucket"));
            let f = File::create(&p).with_context(|| format!("creating {}", p.display()))?;
            files.push(BufWriter::with_capacity(buffer, f));
            paths.push(p);
        }
        Ok(Scatter {
            paths,
            files,
            entries: 0,
        })
    }

    pub fn buckets(&self) -> usize {
        self.paths.len()
    }

    pub fn push(&mut self, e: Entry) -> Result<()> {
        let k = ((e.key as u128 * self.files.len() as u128) >> 64) as usize;
        self.files[k]
            .write_all(&e.to_bytes())
            .context("writing a shuffle bucket")?;
        self.entries += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<Buckets> {
        for mut f in self.files {
            f.flush().context("writing a shuffle bucket")?;
        }
        Ok(Buckets {
            paths: self.paths,
            entries: self.entries,
        })
    }
}

/// Filled bucket files.
pub struct Buckets {
    paths: Vec<PathBuf>,
    pub entries: u64,
}

impl Buckets {
    /// Calls `f` on every entry in key order, one bucket in memory at a time; each bucket file
    /// is deleted once read.
    pub fn drain_sorted(self, mut f: impl FnMut(&Entry) -> Result<()>) -> Result<()> {
        for p in &self.paths {
            let mut bytes = Vec::new();
            File::open(p)
                .map(BufReader::new)
                .and_then(|mut r| r.read_to_end(&mut bytes))
                .with_context(|| format!("reading {}", p.display()))?;
            let mut entries: Vec<Entry> = bytes
                .chunks_exact(ENTRY_BYTES)
                .map(Entry::from_bytes)
                .collect();
            drop(bytes);
            entries.sort_unstable_by_key(Entry::order);
            for e in &entries {
                f(e)?;
            }
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }
}
