//! Streaming one input file's documents, a piece at a time, in bounded batches.
//!
//! A file is cut into *pieces*, the unit that preparation tokenizes, stores and resumes: for
//! text and JSONL files the documents from a byte offset up to the first document boundary
//! after [`PIECE_BYTES`] more input; for Parquet one row group; for a JSON list or a text file
//! kept whole, the whole file. Piece boundaries depend only on the file's bytes, so every run
//! (any thread count, memory budget or machine) cuts a file the same way and a killed run
//! picks up at the first unfinished piece.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{Kind, SourceSpec, TextUnit};
use super::docs::{self, Doc};

/// Input bytes per piece of a text or JSONL file, unless told otherwise.
pub const PIECE_BYTES: u64 = 32 << 20;

/// Where a piece starts: a byte offset and the 1-based line there (text, JSONL), or a row
/// group (Parquet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub byte: u64,
    pub line: u64,
    pub group: u64,
}

impl Cursor {
    pub const START: Cursor = Cursor {
        byte: 0,
        line: 1,
        group: 0,
    };
}

/// How a file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    TextBlocks,
    TextWhole,
    Jsonl,
    Json,
    Parquet,
}

fn format_of(path: &Path, spec: &SourceSpec, kind: Kind) -> Result<Format> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    Ok(match ext {
        "parquet" => Format::Parquet,
        "jsonl" => Format::Jsonl,
        "json" => Format::Json,
        _ if kind != Kind::Pretrain => bail!(
            "{}: plain text has no chats; {} data needs .jsonl, .json or .parquet rows",
            path.display(),
            kind.as_str()
        ),
        _ if spec.unit == TextUnit::File => Format::TextWhole,
        _ => Format::TextBlocks,
    })
}

/// Reads the piece of `path` that starts at `at` (and ends at the first document boundary after
/// `piece_bytes` of input), handing its documents to `sink` in batches of about `batch_bytes`
/// of text. Returns where the next piece starts, or `None` at the end of the file.
pub fn read_piece(
    path: &Path,
    spec: &SourceSpec,
    kind: Kind,
    at: Cursor,
    piece_bytes: u64,
    batch_bytes: usize,
    sink: &mut dyn FnMut(Vec<Doc>) -> Result<()>,
) -> Result<Option<Cursor>> {
    let mut batch = Batcher {
        docs: Vec::new(),
        bytes: 0,
        limit: batch_bytes.max(1),
        sink,
    };
    let next = match format_of(path, spec, kind)? {
        Format::TextBlocks => text_blocks(path, at, piece_bytes, &mut batch)?,
        Format::Jsonl => jsonl(path, spec, kind, at, piece_bytes, &mut batch)?,
        Format::TextWhole | Format::Json => {
            for d in whole_file(path, spec, kind)? {
                batch.push(d)?;
            }
            None
        }
        Format::Parquet => parquet_group(path, spec, kind, at, &mut batch)?,
    };
    batch.flush()?;
    Ok(next)
}

/// Every document of a file, in order (the small-file convenience the tests and the tokenizer
/// trainer use; preparation streams pieces instead).
pub fn read_all(path: &Path, spec: &SourceSpec, kind: Kind) -> Result<Vec<Doc>> {
    let mut out = Vec::new();
    let mut at = Some(Cursor::START);
    while let Some(c) = at {
        at = read_piece(path, spec, kind, c, PIECE_BYTES, 1 << 20, &mut |d| {
            out.extend(d);
            Ok(())
        })?;
    }
    Ok(out)
}

struct Batcher<'a> {
    docs: Vec<Doc>,
    bytes: usize,
    limit: usize,
    sink: &'a mut dyn FnMut(Vec<Doc>) -> Result<()>,
}

impl Batcher<'_> {
    fn push(&mut self, d: Doc) -> Result<()> {
        self.bytes += d.text_len() + 16;
        self.docs.push(d);
        if self.bytes >= self.limit {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.docs.is_empty() {
            self.bytes = 0;
            (self.sink)(std::mem::take(&mut self.docs))?;
        }
        Ok(())
    }
}

/// The lines of a text file from a cursor on, with their numbers, and where the next starts.
struct Lines<'a> {
    path: &'a Path,
    reader: BufReader<File>,
    buf: Vec<u8>,
    /// Where the next line starts, and its number.
    byte: u64,
    line: u64,
}

impl<'a> Lines<'a> {
    fn open(path: &'a Path, at: Cursor) -> Result<Self> {
        let mut f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        f.seek(SeekFrom::Start(at.byte))
            .with_context(|| format!("{}: cannot seek to byte {}", path.display(), at.byte))?;
        Ok(Lines {
            path,
            reader: BufReader::with_capacity(1 << 20, f),
            buf: Vec::new(),
            byte: at.byte,
            line: at.line,
        })
    }

    /// The next line without its `\n` / `\r\n`, as UTF-8 (else an error at its line and column),
    /// with its number; `None` at the end of the file.
    fn next(&mut self) -> Result<Option<(u64, &str)>> {
        self.buf.clear();
        let (number, start) = (self.line, self.byte);
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .with_context(|| format!("{}:{number}: read error", self.path.display()))?;
        if n == 0 {
            return Ok(None);
        }
        self.byte += n as u64;
        self.line += 1;
        let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).map_err(|e| {
            let at = e.valid_up_to();
            anyhow!(
                "{}:{number}:{}: invalid UTF-8 (byte 0x{:02x} at offset {}); re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`",
                self.path.display(),
                at + 1,
                line[at],
                start + at as u64
            )
        })?;
        Ok(Some((number, text)))
    }

    /// Where the next line starts.
    fn cursor(&self) -> Cursor {
        Cursor {
            byte: self.byte,
            line: self.line,
            group: 0,
        }
    }
}

/// Blank-line-separated blocks. A piece ends after the blank line that closes a block.
fn text_blocks(
    path: &Path,
    at: Cursor,
    piece_bytes: u64,
    out: &mut Batcher,
) -> Result<Option<Cursor>> {
    let mut lines = Lines::open(path, at)?;
    let end_after = at.byte + piece_bytes.max(1);
    let mut cur = String::new();
    while let Some((_, line)) = lines.next()? {
        if !line.trim().is_empty() {
            if !cur.is_empty() {
                cur.push('\n');
            }
            cur.push_str(line);
        } else if !cur.is_empty() {
            out.push(Doc::Text(std::mem::take(&mut cur)))?;
            if lines.byte >= end_after {
                return Ok(Some(lines.cursor()));
            }
        }
    }
    if !cur.is_empty() {
        out.push(Doc::Text(cur))?;
    }
    Ok(None)
}

/// One JSON row per line; a piece ends after a line.
fn jsonl(
    path: &Path,
    spec: &SourceSpec,
    kind: Kind,
    at: Cursor,
    piece_bytes: u64,
    out: &mut Batcher,
) -> Result<Option<Cursor>> {
    let mut lines = Lines::open(path, at)?;
    let end_after = at.byte + piece_bytes.max(1);
    while let Some((number, line)) = lines.next()? {
        if !line.trim().is_empty() {
            let row: Value = serde_json::from_str(line).map_err(|e| {
                anyhow!(
                    "{}:{number}:{}: not valid JSON: {e}",
                    path.display(),
                    e.column()
                )
            })?;
            let doc = docs::from_row(&row, spec.field.as_deref(), kind)
                .map_err(|e| anyhow!("{}:{number}: {e}", path.display()))?;
            out.push(doc)?;
        }
        if lines.byte >= end_after {
            return Ok(Some(lines.cursor()));
        }
    }
    Ok(None)
}

/// A text file kept whole, or a JSON list of rows: read at once.
fn whole_file(path: &Path, spec: &SourceSpec, kind: Kind) -> Result<Vec<Doc>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let text = super::sources::utf8(path, &bytes)?;
    if path.extension().is_some_and(|e| e == "json") {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            anyhow!(
                "{}:{}:{}: not valid JSON: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        let Value::Array(rows) = value else {
            bail!(
                "{}: expected a JSON list of rows (use .jsonl for one row per line)",
                path.display()
            );
        };
        return rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                docs::from_row(row, spec.field.as_deref(), kind)
                    .map_err(|e| anyhow!("{}: row {i}: {e}", path.display()))
            })
            .collect();
    }
    Ok(super::sources::text_docs(text, TextUnit::File)
        .into_iter()
        .map(Doc::Text)
        .collect())
}

/// One row group of a Parquet file (any codec the hub uses: Snappy, ZSTD, GZIP, LZ4).
fn parquet_group(
    path: &Path,
    spec: &SourceSpec,
    kind: Kind,
    at: Cursor,
    out: &mut Batcher,
) -> Result<Option<Cursor>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let reader = SerializedFileReader::new(file).with_context(|| {
        format!(
            "{}: not a readable Parquet file (truncated or damaged? download it again)",
            path.display()
        )
    })?;
    let meta = reader.metadata();
    let groups = meta.num_row_groups() as u64;
    if at.group >= groups {
        return Ok(None);
    }
    let first_row: i64 = (0..at.group as usize)
        .map(|g| meta.row_group(g).num_rows())
        .sum();
    let group = reader
        .get_row_group(at.group as usize)
        .with_context(|| format!("{}: row group {}: cannot open", path.display(), at.group))?;
    let rows = group.get_row_iter(None).with_context(|| {
        format!(
            "{}: row group {}: cannot read its rows",
            path.display(),
            at.group
        )
    })?;
    for (k, row) in rows.enumerate() {
        let i = first_row + k as i64;
        let row = row.with_context(|| format!("{}: row {i}: cannot decode", path.display()))?;
        let doc = docs::from_row(&row.to_json_value(), spec.field.as_deref(), kind)
            .map_err(|e| anyhow!("{}: row {i}: {e}", path.display()))?;
        out.push(doc)?;
    }
    let next = at.group + 1;
    Ok((next < groups).then_some(Cursor {
        byte: 0,
        line: 0,
        group: next,
    }))
}
