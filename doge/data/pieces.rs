//! Tokenized pieces: the stored, resumable output of tokenizing one input file.
//!
//! `<cache>/pieces/<key>/` holds one input file's tokens, where the key hashes the file's
//! contents, the tokenizer and the settings that change its tokens (kind, field, text unit),
//! so the same file tokenized by any run, part or machine lands in the same folder. Per piece
//! ([`super::reader`]): `NNNNN.tokens` (the documents' tokens back to back, in the dataset's
//! dtype), `NNNNN.docs` (one 32-byte record per document), `NNNNN.mask` (SFT: one byte per
//! token) and last `NNNNN.json`, whose presence marks the piece complete; `done.json` marks the
//! file complete. A killed run leaves at most one unfinished piece per file, which the next run
//! deletes and redoes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::config::{Kind, SourceSpec};
use super::docs::Doc;
use super::encode::{encode_doc, Encoded};
use super::progress::Progress;
use super::reader::{read_piece, Cursor};
use super::shards::Dtype;
use super::sources::SourceFile;
use super::tokenizer::DogeTokenizer;

/// Version of the piece layout; part of every piece key.
const PIECE_FORMAT: u32 = 1;

/// Bytes of one document record in `NNNNN.docs`.
pub const RECORD_BYTES: usize = 32;

/// One document of a piece: where its tokens are, the DPO segment ends, and a hash of its
/// content (to keep held-out texts out of training).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocRecord {
    /// Token offset in the piece's `.tokens` (and `.mask`) file.
    pub offset: u64,
    pub len: u32,
    /// DPO: ends of the prompt and of the chosen answer.
    pub cuts: [u32; 2],
    pub content: u64,
}

impl DocRecord {
    fn to_bytes(self) -> [u8; RECORD_BYTES] {
        let mut b = [0u8; RECORD_BYTES];
        b[0..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..16].copy_from_slice(&self.cuts[0].to_le_bytes());
        b[16..20].copy_from_slice(&self.cuts[1].to_le_bytes());
        b[24..32].copy_from_slice(&self.content.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> DocRecord {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        DocRecord {
            offset: u64_at(0),
            len: u32_at(8),
            cuts: [u32_at(12), u32_at(16)],
            content: u64_at(24),
        }
    }
}

/// A finished piece.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PieceMeta {
    pub start: Cursor,
    /// Where the next piece starts; `None`: this is the file's last piece.
    pub next: Option<Cursor>,
    pub docs: u64,
    pub tokens: u64,
}

/// A finished file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileDone {
    pub file: String,
    pub pieces: u32,
    pub docs: u64,
    pub tokens: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// The folder of one input file's pieces, by what decides its tokens.
pub fn file_key(
    file: &SourceFile,
    spec: &SourceSpec,
    kind: Kind,
    tok: &DogeTokenizer,
    piece_bytes: u64,
) -> String {
    let v = json!({
        "format": PIECE_FORMAT, "file": file.sha256, "tokenizer": tok.fingerprint,
        "kind": kind, "field": spec.field, "unit": spec.unit, "piece_bytes": piece_bytes,
    });
    format!("{:x}", Sha256::digest(v.to_string().as_bytes()))[..32].to_string()
}

pub fn pieces_root(cache_root: &Path) -> PathBuf {
    cache_root.join("pieces")
}

fn piece_path(dir: &Path, i: u32, ext: &str) -> PathBuf {
    dir.join(format!("{i:05}.{ext}"))
}

/// The file's `done.json`, when it was tokenized completely.
pub fn file_done(dir: &Path) -> Option<FileDone> {
    let text = std::fs::read_to_string(dir.join("done.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn read_meta(dir: &Path, i: u32) -> Option<PieceMeta> {
    let text = std::fs::read_to_string(piece_path(dir, i, "json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes `bytes` to `path` through a temporary name, so a reader sees all or nothing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("json.partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// What tokenizing needs besides the file.
pub struct TokenizeJob<'a> {
    pub tok: &'a DogeTokenizer,
    pub kind: Kind,
    pub spec: &'a SourceSpec,
    pub dtype: Dtype,
    /// Text per batch handed to the tokenizer threads.
    pub batch_bytes: usize,
    /// Input per piece (text, JSONL).
    pub piece_bytes: u64,
    pub bar: &'a Progress,
}

/// Tokenizes one input file into `dir`, resuming after its finished pieces. Returns what the
/// file holds and how many of its pieces were already done.
pub fn tokenize_file(dir: &Path, file: &SourceFile, job: &TokenizeJob) -> Result<(FileDone, u32)> {
    if let Some(done) = file_done(dir) {
        job.bar.inc(file.bytes, done.tokens);
        let pieces = done.pieces;
        return Ok((done, pieces));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let start = Instant::now();
    let mut metas: Vec<PieceMeta> = Vec::new();
    while let Some(m) = read_meta(dir, metas.len() as u32) {
        metas.push(m);
    }
    let reused = metas.len() as u32;
    // Anything past the finished pieces is a killed run's unfinished piece.
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let index = stem.split('.').next().and_then(|s| s.parse::<u32>().ok());
        if index.is_none_or(|i| i >= reused) && p.file_name().is_some_and(|n| n != "done.json") {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    let mut at = match metas.last() {
        None => Some(Cursor::START),
        Some(m) => m.next,
    };
    let done_bytes = at.map_or(file.bytes, |c| c.byte);
    job.bar.inc(
        done_bytes.min(file.bytes),
        metas.iter().map(|m| m.tokens).sum(),
    );
    while let Some(cursor) = at {
        let i = metas.len() as u32;
        let meta = tokenize_piece(dir, i, &file.path, cursor, job)?;
        write_atomic(
            &piece_path(dir, i, "json"),
            serde_json::to_string(&meta)?.as_bytes(),
        )?;
        let to = meta.next.map_or(file.bytes, |c| c.byte);
        job.bar.inc(to.saturating_sub(cursor.byte), 0);
        at = meta.next;
        metas.push(meta);
    }
    let done = FileDone {
        file: file.path.display().to_string(),
        pieces: metas.len() as u32,
        docs: metas.iter().map(|m| m.docs).sum(),
        tokens: metas.iter().map(|m| m.tokens).sum(),
        bytes: file.bytes,
        seconds: start.elapsed().as_secs_f64(),
    };
    write_atomic(
        &dir.join("done.json"),
        serde_json::to_string_pretty(&done)?.as_bytes(),
    )?;
    Ok((done, reused))
}

/// Reads, tokenizes (all threads) and stores one piece. The reader runs on its own thread a
/// batch ahead, so reading and decoding overlap tokenizing.
fn tokenize_piece(
    dir: &Path,
    i: u32,
    path: &Path,
    at: Cursor,
    job: &TokenizeJob,
) -> Result<PieceMeta> {
    let partial = |ext: &str| piece_path(dir, i, &format!("{ext}.partial"));
    let create = |p: PathBuf| -> Result<BufWriter<File>> {
        let f = File::create(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(BufWriter::with_capacity(1 << 20, f))
    };
    let mut tokens_out = create(partial("tokens"))?;
    let mut docs_out = create(partial("docs"))?;
    let mut mask_out = match job.kind {
        Kind::Sft => Some(create(partial("mask"))?),
        _ => None,
    };
    let (mut docs, mut tokens) = (0u64, 0u64);
    let (send, recv) = std::sync::mpsc::sync_channel::<Vec<Doc>>(1);
    let next = std::thread::scope(|scope| -> Result<Option<Cursor>> {
        // Owned here so that an early error return drops it, which unblocks the reader.
        let recv = recv;
        let reader = scope.spawn(move || {
            read_piece(
                path,
                job.spec,
                job.kind,
                at,
                job.piece_bytes,
                job.batch_bytes,
                &mut |batch| {
                    send.send(batch)
                        .map_err(|_| anyhow::anyhow!("the tokenizer stopped"))
                },
            )
        });
        let mut first_doc = 0u64;
        for batch in recv.iter() {
            let encoded: Vec<Result<(Encoded, u64)>> = batch
                .par_iter()
                .enumerate()
                .map(|(k, doc)| {
                    let e = encode_doc(doc, job.tok, job.kind).with_context(|| {
                        format!(
                            "{}: document {} of the piece at line {}",
                            path.display(),
                            first_doc + k as u64,
                            at.line
                        )
                    })?;
                    Ok((e, doc.content_key()))
                })
                .collect();
            first_doc += batch.len() as u64;
            drop(batch);
            let mut bytes = Vec::new();
            for r in encoded {
                let (e, content) = r?;
                bytes.clear();
                job.dtype.encode(&e.ids, &mut bytes);
                tokens_out.write_all(&bytes).context("writing a piece")?;
                if let Some(m) = &mut mask_out {
                    m.write_all(&e.mask).context("writing a piece")?;
                }
                let rec = DocRecord {
                    offset: tokens,
                    len: e.ids.len() as u32,
                    cuts: [e.cuts[0] as u32, e.cuts[1] as u32],
                    content,
                };
                docs_out
                    .write_all(&rec.to_bytes())
                    .context("writing a piece")?;
                docs += 1;
                tokens += e.ids.len() as u64;
                job.bar.inc(0, e.ids.len() as u64);
            }
        }
        reader.join().expect("the reader thread does not panic")
    })?;
    for (mut w, ext) in [(tokens_out, "tokens"), (docs_out, "docs")]
        .into_iter()
        .chain(mask_out.map(|m| (m, "mask")))
    {
        w.flush().context("writing a piece")?;
        drop(w);
        std::fs::rename(partial(ext), piece_path(dir, i, ext))
            .with_context(|| format!("finishing {}", piece_path(dir, i, ext).display()))?;
    }
    Ok(PieceMeta {
        start: at,
        next,
        docs,
        tokens,
    })
}

/// Every stored piece a preparation reads, numbered: the pieces of source 0's files in file
/// order, then source 1's, and so on.
pub struct PieceIndex {
    /// Per piece: folder and index in it.
    pieces: Vec<(PathBuf, u32)>,
    /// Per source: its range of piece numbers.
    sources: Vec<std::ops::Range<u32>>,
}

impl PieceIndex {
    /// `files[s]` are source `s`'s file folders (each complete) in order.
    pub fn new(files: &[Vec<(PathBuf, FileDone)>]) -> Self {
        let mut pieces = Vec::new();
        let mut sources = Vec::new();
        for f in files {
            let start = pieces.len() as u32;
            for (dir, done) in f {
                pieces.extend((0..done.pieces).map(|i| (dir.clone(), i)));
            }
            sources.push(start..pieces.len() as u32);
        }
        PieceIndex { pieces, sources }
    }

    /// Calls `f(piece, record)` for every document of source `s`, in order.
    pub fn for_each_doc(
        &self,
        s: usize,
        mut f: impl FnMut(u32, &DocRecord) -> Result<()>,
    ) -> Result<()> {
        let mut buf = [0u8; RECORD_BYTES];
        for p in self.sources[s].clone() {
            let (dir, i) = &self.pieces[p as usize];
            let path = piece_path(dir, *i, "docs");
            let file = File::open(&path).with_context(|| {
                format!(
                    "{}: missing; delete {} and prepare again",
                    path.display(),
                    dir.display()
                )
            })?;
            let mut r = BufReader::with_capacity(1 << 20, file);
            loop {
                match r.read_exact(&mut buf) {
                    Ok(()) => f(p, &DocRecord::from_bytes(&buf))?,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                }
            }
        }
        Ok(())
    }

    fn path(&self, piece: u32, ext: &str) -> PathBuf {
        let (dir, i) = &self.pieces[piece as usize];
        piece_path(dir, *i, ext)
    }
}

/// Reads documents' tokens (and masks) by position, with positioned reads: the page cache
/// holds what is hot, and none of it counts against this process's memory.
pub struct TokenFetcher<'a> {
    index: &'a PieceIndex,
    dtype: Dtype,
    open: HashMap<(u32, bool), File>,
    buf: Vec<u8>,
}

impl<'a> TokenFetcher<'a> {
    pub fn new(index: &'a PieceIndex, dtype: Dtype) -> Self {
        TokenFetcher {
            index,
            dtype,
            open: HashMap::new(),
            buf: Vec::new(),
        }
    }

    fn file(&mut self, piece: u32, mask: bool) -> Result<&File> {
        if self.open.len() >= 256 && !self.open.contains_key(&(piece, mask)) {
            self.open.clear();
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.open.entry((piece, mask)) {
            let path = self.index.path(piece, if mask { "mask" } else { "tokens" });
            let f = File::open(&path).with_context(|| {
                format!(
                    "{}: missing; delete its folder and prepare again",
                    path.display()
                )
            })?;
            e.insert(f);
        }
        Ok(&self.open[&(piece, mask)])
    }

    /// The tokens of a document.
    pub fn tokens(&mut self, piece: u32, rec: &DocRecord) -> Result<Vec<u32>> {
        let b = self.dtype.bytes();
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(rec.len as usize * b, 0);
        let f = self.file(piece, false)?;
        f.read_exact_at(&mut buf, rec.offset * b as u64)
            .with_context(|| format!("reading piece {piece}: truncated; prepare again"))?;
        let out = self.dtype.decode(&buf);
        self.buf = buf;
        Ok(out)
    }

    /// The SFT mask of a document.
    pub fn mask(&mut self, piece: u32, rec: &DocRecord) -> Result<Vec<u8>> {
        let mut out = vec![0u8; rec.len as usize];
        let f = self.file(piece, true)?;
        f.read_exact_at(&mut out, rec.offset)
            .with_context(|| format!("reading piece {piece}'s mask: truncated; prepare again"))?;
        Ok(out)
    }
}

/// Checks that every file of a preparation is tokenized; the error lists the missing ones.
pub fn require_done(missing: &[String]) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "{} input file(s) are not tokenized yet, e.g. {}; run every `doge data prepare FILE --part I/N` first (or `doge data merge FILE --from DIR` to take pieces from another cache), or `doge data prepare FILE` to tokenize them here",
        missing.len(),
        missing.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
    )
}
