//! Sources: which files a source names (local or hub), and how their rows become documents.
//!
//! Local sources are a file or a folder (searched recursively, in name order). By extension:
//! `.txt`/`.text` are plain text (one document per file or per blank-line block), `.jsonl` one
//! JSON row per line, `.json` a list of rows, `.parquet` a table whose rows are read as JSON.
//! Other files (README.md, SOURCE.md, LICENSE) are ignored.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::config::{DataSpec, Kind, SourceSpec, TextUnit};
use super::docs::Doc;
use super::hub::{self, HubOptions};

const EXTENSIONS: [&str; 5] = ["txt", "text", "jsonl", "json", "parquet"];

/// One input file of a source and the hash of its bytes (for the fingerprint).
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    /// A hub file listed but not necessarily downloaded: fetched when its turn comes.
    pub remote: Option<hub::HubFile>,
}

/// The files of a source, resolved but not yet read.
#[derive(Debug, Clone)]
pub struct ResolvedSource {
    pub index: usize,
    pub name: String,
    pub spec: SourceSpec,
    pub files: Vec<SourceFile>,
}

impl ResolvedSource {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// Finds (and for hub sources downloads) every source's files and hashes them.
pub fn resolve(data: &DataSpec, hub: &HubOptions) -> Result<Vec<ResolvedSource>> {
    data.sources
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let ctx = || format!("data.source[{index}] `{}`", spec.from);
            if !data.is_local_source(spec) {
                let listed = hub::dataset_listing(
                    &spec.from,
                    spec.revision.as_deref(),
                    spec.subset.as_deref(),
                    &spec.split,
                    hub,
                )
                .with_context(ctx)?;
                if let Some(listed) = listed {
                    return Ok(ResolvedSource {
                        index,
                        name: spec.name(),
                        spec: spec.clone(),
                        files: listed
                            .into_iter()
                            .map(|f| SourceFile {
                                path: f.path.clone(),
                                bytes: f.size,
                                sha256: f.sha256.clone(),
                                remote: Some(f),
                            })
                            .collect(),
                    });
                }
            }
            let paths = if data.is_local_source(spec) {
                local_files(&data.local_path(&spec.from))
                    .with_context(|| format!("data.source[{index}] `{}`", spec.from))?
            } else {
                hub::dataset_files(
                    &spec.from,
                    spec.revision.as_deref(),
                    spec.subset.as_deref(),
                    &spec.split,
                    hub,
                )
                .with_context(|| format!("data.source[{index}] `{}`", spec.from))?
            };
            let files = paths
                .par_iter()
                .map(|p| hash_file(p))
                .collect::<Result<Vec<_>>>()?;
            Ok(ResolvedSource {
                index,
                name: spec.name(),
                spec: spec.clone(),
                files,
            })
        })
        .collect()
}

/// The readable files under a path, sorted; an error names what was looked for.
pub fn local_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!("{}: no such file or folder; give a path relative to the experiment file, or a hub dataset id (owner/name)", path.display())
    })?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)
            .with_context(|| format!("{}: cannot list the folder", dir.display()))?
        {
            let p = e?.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e))
            {
                out.push(p);
            }
        }
    }
    if out.is_empty() {
        bail!(
            "{}: the folder has no data files (looked for *.{})",
            path.display(),
            EXTENSIONS.join(", *.")
        );
    }
    out.sort();
    Ok(out)
}

fn hash_file(path: &Path) -> Result<SourceFile> {
    // Hub cache files link to `blobs/<etag>`, and a Git LFS etag is already the sha256 of the
    // contents: no need to read gigabytes again on every run. The blob may have been freed by
    // `--delete-raw` once tokenized; the link still names it.
    if let Ok(link) = std::fs::read_link(path) {
        let name = link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let in_blobs = link
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "blobs");
        if in_blobs && name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
            let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            return Ok(SourceFile {
                path: path.to_path_buf(),
                bytes,
                sha256: name,
                remote: None,
            });
        }
    }
    if let Ok(target) = std::fs::canonicalize(path) {
        let in_blobs = target
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "blobs");
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if in_blobs
            && name.len() == 64
            && name.chars().all(|c| c.is_ascii_hexdigit())
            && path != target
        {
            let bytes = std::fs::metadata(&target)
                .with_context(|| format!("{}: cannot read", path.display()))?
                .len();
            return Ok(SourceFile {
                path: path.to_path_buf(),
                bytes,
                sha256: name,
                remote: None,
            });
        }
    }
    let mut f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("{}: read error", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(SourceFile {
        path: path.to_path_buf(),
        bytes,
        sha256: format!("{:x}", h.finalize()),
        remote: None,
    })
}

/// Every document of a source, in file order then row order. Files are read in parallel.
pub fn read_docs(src: &ResolvedSource, kind: Kind) -> Result<Vec<Doc>> {
    let per_file: Vec<Vec<Doc>> = src
        .files
        .par_iter()
        .map(|f| read_file(&f.path, &src.spec, kind))
        .collect::<Result<_>>()?;
    let docs: Vec<Doc> = per_file.into_iter().flatten().collect();
    if docs.is_empty() {
        bail!(
            "data.source[{}] `{}`: no documents in {} file(s) ({}); the corpus is empty or only whitespace",
            src.index,
            src.spec.from,
            src.files.len(),
            src.files.iter().take(3).map(|f| f.path.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(docs)
}

/// The documents of one file (read whole; preparation streams pieces through [`super::reader`]).
pub fn read_file(path: &Path, spec: &SourceSpec, kind: Kind) -> Result<Vec<Doc>> {
    super::reader::read_all(path, spec, kind)
}

/// The bytes as UTF-8, or an error at the line and column of the first bad byte.
pub(crate) fn utf8<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        let col = at - bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        anyhow!(
            "{}:{line}:{col}: invalid UTF-8 (byte 0x{:02x} at offset {at}); re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`",
            path.display(),
            bytes[at]
        )
    })
}

/// Documents of a text: the whole text, or its blank-line-separated blocks.
pub fn text_docs(text: &str, unit: TextUnit) -> Vec<String> {
    match unit {
        TextUnit::File => {
            if text.trim().is_empty() {
                vec![]
            } else {
                vec![text.to_string()]
            }
        }
        TextUnit::Blocks => {
            let mut out = Vec::new();
            let mut cur: Vec<&str> = Vec::new();
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.trim().is_empty() {
                    if !cur.is_empty() {
                        out.push(cur.join("\n"));
                        cur.clear();
                    }
                } else {
                    cur.push(line);
                }
            }
            if !cur.is_empty() {
                out.push(cur.join("\n"));
            }
            out
        }
    }
}

/// The JSON value of each non-blank line with its 1-based line number; a bad line is an error
/// at `path:line:column`.
pub fn jsonl_values(path: &Path, text: &str) -> Result<Vec<(usize, Value)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Value = serde_json::from_str(line).map_err(|e| {
            anyhow!(
                "{}:{}:{}: not valid JSON: {e}",
                path.display(),
                i + 1,
                e.column()
            )
        })?;
        out.push((i + 1, row));
    }
    Ok(out)
}
