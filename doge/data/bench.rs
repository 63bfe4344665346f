//! Tokenize+pack throughput on text files: what bounds `prepare` on a given machine.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use rayon::prelude::*;

use super::config::TextUnit;
use super::pack::Packer;
use super::sources::{local_files, text_docs};
use super::tokenizer::DogeTokenizer;

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub files: usize,
    pub bytes: u64,
    pub documents: usize,
    pub tokens: u64,
    pub rows: u64,
    pub seconds: f64,
    pub threads: usize,
}

impl BenchReport {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }

    pub fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.seconds
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} files, {:.2} MB, {} documents -> {} tokens, {} rows in {:.2} s on {} threads: {:.2} MB/s, {:.0} tokens/s",
            self.files,
            self.bytes as f64 / 1e6,
            self.documents,
            self.tokens,
            self.rows,
            self.seconds,
            self.threads,
            self.mb_per_s(),
            self.tokens_per_s()
        )
    }
}

/// Reads the text files under `paths` (untimed), then times tokenizing every document (with
/// bos and eos, in parallel) and packing the tokens into rows of `seq_len + 1`.
pub fn bench(
    paths: &[PathBuf],
    tok: &DogeTokenizer,
    seq_len: usize,
    unit: TextUnit,
) -> Result<BenchReport> {
    let mut files = Vec::new();
    for p in paths {
        files.extend(
            local_files(p)?
                .into_iter()
                .filter(|f| f.extension().is_some_and(|e| e == "txt" || e == "text")),
        );
    }
    let mut docs = Vec::new();
    let mut bytes = 0u64;
    for f in &files {
        let text =
            std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        bytes += text.len() as u64;
        docs.extend(text_docs(&text, unit));
    }
    let start = Instant::now();
    let encoded: Vec<Vec<u32>> = docs
        .par_iter()
        .map(|d| {
            let mut ids = tok.encode(d, true)?;
            ids.push(tok.eos_id);
            Ok(ids)
        })
        .collect::<Result<_>>()?;
    let mut packer = Packer::new(seq_len + 1, false);
    let mut rows = 0u64;
    for ids in &encoded {
        rows += packer.push(ids, None).len() as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(BenchReport {
        files: files.len(),
        bytes,
        documents: docs.len(),
        tokens: encoded.iter().map(|e| e.len() as u64).sum(),
        rows,
        seconds,
        threads: rayon::current_num_threads(),
    })
}
