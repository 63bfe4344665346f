//! Token shards: little-endian u16 (vocab <= 65536) or u32 token files, cut at row boundaries,
//! read back through memory maps. Masks use the same layout with one byte per token.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

/// Element type of a shard file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    U8,
    U16,
    U32,
}

impl Dtype {
    /// The narrowest token type for ids `0..vocab_size`.
    pub fn for_vocab(vocab_size: usize) -> Dtype {
        if vocab_size <= 1 << 16 {
            Dtype::U16
        } else {
            Dtype::U32
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::U16 => 2,
            Dtype::U32 => 4,
        }
    }

    /// Appends `values` as little-endian elements (values must fit; callers check the vocab).
    pub fn encode<T: Copy + Into<u32>>(self, values: &[T], out: &mut Vec<u8>) {
        out.reserve(values.len() * self.bytes());
        for &v in values {
            let v: u32 = v.into();
            match self {
                Dtype::U8 => out.push(v as u8),
                Dtype::U16 => out.extend_from_slice(&(v as u16).to_le_bytes()),
                Dtype::U32 => out.extend_from_slice(&v.to_le_bytes()),
            }
        }
    }

    /// The elements of little-endian `bytes`.
    pub fn decode(self, bytes: &[u8]) -> Vec<u32> {
        match self {
            Dtype::U8 => bytes.iter().map(|&v| v as u32).collect(),
            Dtype::U16 => bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
                .collect(),
            Dtype::U32 => bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        }
    }
}

/// One file of a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardFile {
    /// File name inside the dataset directory.
    pub file: String,
    pub rows: u64,
    /// Elements (tokens or mask bytes) in the file.
    pub elements: u64,
}

/// Writes rows into `<prefix>-NNNNN.<ext>` files of at most `rows_per_shard` rows each.
pub struct ShardWriter {
    dir: PathBuf,
    prefix: String,
    ext: &'static str,
    dtype: Dtype,
    rows_per_shard: u64,
    files: Vec<ShardFile>,
    out: Option<BufWriter<File>>,
}

impl ShardWriter {
    pub fn new(
        dir: &Path,
        prefix: &str,
        ext: &'static str,
        dtype: Dtype,
        rows_per_shard: u64,
    ) -> Self {
        ShardWriter {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            ext,
            dtype,
            rows_per_shard: rows_per_shard.max(1),
            files: Vec::new(),
            out: None,
        }
    }

    /// Appends one row (values must fit the dtype; callers check the vocabulary size).
    pub fn push<T: Copy + Into<u32>>(&mut self, row: &[T]) -> Result<()> {
        let full = self
            .files
            .last()
            .is_none_or(|f| f.rows >= self.rows_per_shard);
        if self.out.is_none() || full {
            self.flush()?;
            let name = format!("{}-{:05}.{}", self.prefix, self.files.len(), self.ext);
            let path = self.dir.join(&name);
            let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            self.out = Some(BufWriter::with_capacity(1 << 20, f));
            self.files.push(ShardFile {
                file: name,
                rows: 0,
                elements: 0,
            });
        }
        let out = self.out.as_mut().expect("opened above");
        let mut buf = Vec::new();
        self.dtype.encode(row, &mut buf);
        out.write_all(&buf).context("writing a shard")?;
        let f = self.files.last_mut().expect("pushed above");
        f.rows += 1;
        f.elements += row.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush().context("writing a shard")?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<Vec<ShardFile>> {
        self.flush()?;
        Ok(self.files)
    }
}

/// Memory-mapped shards of one split.
pub struct ShardReader {
    /// `None` for an empty file (which cannot be mapped).
    maps: Vec<Option<Mmap>>,
    /// Elements before each shard (prefix sums), for ragged access.
    starts: Vec<u64>,
    rows_per_shard: u64,
    dtype: Dtype,
}

impl ShardReader {
    /// Maps the files, checking each has the size the manifest records.
    pub fn open(
        dir: &Path,
        files: &[ShardFile],
        dtype: Dtype,
        rows_per_shard: u64,
    ) -> Result<Self> {
        let mut maps = Vec::with_capacity(files.len());
        let mut starts = Vec::with_capacity(files.len());
        let mut at = 0u64;
        for f in files {
            let path = dir.join(&f.file);
            let file = File::open(&path).with_context(|| {
                format!("{}: missing shard; prepare the data again", path.display())
            })?;
            let len = file.metadata()?.len();
            let want = f.elements * dtype.bytes() as u64;
            if len != want {
                bail!("{}: {len} bytes, the manifest says {want}; the shard is damaged: delete {} and prepare again", path.display(), dir.display());
            }
            // Safety: the files are written once, renamed into place and never modified after.
            let map = if len == 0 {
                None
            } else {
                Some(
                    unsafe { Mmap::map(&file) }
                        .with_context(|| format!("mapping {}", path.display()))?,
                )
            };
            maps.push(map);
            starts.push(at);
            at += f.elements;
        }
        Ok(ShardReader {
            maps,
            starts,
            rows_per_shard: rows_per_shard.max(1),
            dtype,
        })
    }

    /// Fixed-length row `i`.
    pub fn row(&self, i: u64, row_len: usize) -> Vec<u32> {
        let shard = (i / self.rows_per_shard) as usize;
        let start = (i % self.rows_per_shard) as usize * row_len;
        self.read(shard, start, row_len)
    }

    /// `len` elements from global element offset `at` (ragged layout: a single shard).
    pub fn span(&self, at: u64, len: usize) -> Vec<u32> {
        let shard = self.starts.partition_point(|&s| s <= at).saturating_sub(1);
        self.read(shard, (at - self.starts[shard]) as usize, len)
    }

    fn read(&self, shard: usize, start: usize, len: usize) -> Vec<u32> {
        let b = self.dtype.bytes();
        let data: &[u8] = self.maps[shard].as_deref().unwrap_or(&[]);
        self.dtype.decode(&data[start * b..(start + len) * b])
    }
}

/// Writes little-endian u64 values (ragged offsets) or u32 values (row lengths).
pub fn write_u64s(path: &Path, vals: &[u64]) -> Result<()> {
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

pub fn read_u64s(path: &Path) -> Result<Vec<u64>> {
    let b = std::fs::read(path)
        .with_context(|| format!("{}: missing; prepare the data again", path.display()))?;
    Ok(b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

pub fn write_u32s(path: &Path, vals: &[u32]) -> Result<()> {
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

pub fn read_u32s(path: &Path) -> Result<Vec<u32>> {
    let b = std::fs::read(path)
        .with_context(|| format!("{}: missing; prepare the data again", path.display()))?;
    Ok(b.chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect())
}
