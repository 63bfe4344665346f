//! `prepare`: sources -> tokenized pieces (streamed, all cores, resumable) -> the mix plan
//! (held-out split, budgets) -> an out-of-core shuffle -> rows in shards, in a directory named
//! by the fingerprint of everything that went in. Memory stays within [`PrepareOptions::memory`]
//! whatever the corpus size: documents are tokenized in bounded batches and stored as pieces,
//! the plan reads their records in passes, and the shuffle holds one bucket at a time.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::config::{DataSpec, Kind};
use super::hub::{self, HubOptions};
use super::manifest::{Manifest, PrepareStats, SourceInfo, SplitInfo, TokenizerInfo, FORMAT};
use super::mix::MixKeys;
use super::pack::{pad_row, Packer};
use super::pieces::{self, FileDone, PieceIndex, TokenFetcher, TokenizeJob};
use super::plan::{plan, Plan};
use super::progress::Progress;
use super::reader::PIECE_BYTES;
use super::shards::{Dtype, ShardWriter};
use super::shuffle::{Buckets, Entry, Scatter};
use super::sources::{self, ResolvedSource, SourceFile};
use super::tokenizer::DogeTokenizer;

/// Shard files stay below this size.
const SHARD_BYTES: u64 = 1 << 30;

/// The default memory budget.
pub const DEFAULT_MEMORY: u64 = 1 << 30;

/// Where and how to prepare.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Datasets go to `<cache_root>/<fingerprint>/` (default `runs/data`), tokenized pieces to
    /// `<cache_root>/pieces/`.
    pub cache_root: PathBuf,
    pub hub: HubOptions,
    /// Progress bars on stderr.
    pub progress: bool,
    /// Bytes of buffers (document batches in flight, one shuffle bucket) preparation may hold;
    /// the tokenizer and the process itself come on top.
    pub memory: u64,
    /// Tokenizer threads; `None`: every core.
    pub threads: Option<usize>,
    /// Input bytes per tokenized piece of a text or JSONL file, the unit a killed run resumes
    /// at (default 32 MiB, or `DOGE_DATA_PIECE_BYTES`). The rows do not depend on it.
    pub piece_bytes: u64,
    /// Free each downloaded hub file's bytes once it is tokenized (the cache keeps its name and
    /// hash; a file is downloaded again only if its pieces are lost).
    pub delete_raw: bool,
}

impl PrepareOptions {
    pub fn new(cache_root: impl Into<PathBuf>) -> Self {
        PrepareOptions {
            cache_root: cache_root.into(),
            hub: HubOptions::from_env(),
            progress: true,
            memory: DEFAULT_MEMORY,
            threads: None,
            piece_bytes: default_piece_bytes(),
            delete_raw: false,
        }
    }

    fn batch_bytes(&self) -> usize {
        (self.memory / 16).clamp(64 << 10, 32 << 20) as usize
    }

    fn bucket_bytes(&self) -> usize {
        (self.memory / 4).max(64 << 10) as usize
    }

    /// Runs `f` on a pool of `threads` threads (else on the global pool).
    fn install<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        match self.threads {
            None => f(),
            Some(n) => rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build()
                .context("starting the tokenizer threads")?
                .install(f),
        }
    }
}

/// `DOGE_DATA_PIECE_BYTES`, else [`PIECE_BYTES`].
pub fn default_piece_bytes() -> u64 {
    std::env::var("DOGE_DATA_PIECE_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&b| b > 0)
        .unwrap_or(PIECE_BYTES)
}

/// What `prepare_report` did.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The fingerprint existed: nothing was written.
    pub reused: bool,
}

/// What `tokenize_part` did.
#[derive(Debug, Clone)]
pub struct PartReport {
    pub files: usize,
    pub bytes: u64,
    pub tokens: u64,
    /// Pieces found finished from an earlier (killed) run, and pieces tokenized now.
    pub pieces_reused: u64,
    pub pieces: u64,
    pub seconds: f64,
}

/// Prepares `data` with `tok` and returns the dataset directory; a no-op returning the existing
/// directory when the same inputs were prepared before.
pub fn prepare(data: &DataSpec, tok: &DogeTokenizer, opts: &PrepareOptions) -> Result<PathBuf> {
    prepare_report(data, tok, opts).map(|p| p.dir)
}

/// [`prepare`], also returning the manifest (for the summary table).
pub fn prepare_report(
    data: &DataSpec,
    tok: &DogeTokenizer,
    opts: &PrepareOptions,
) -> Result<Prepared> {
    opts.install(|| run(data, tok, opts, Mode::Whole))
}

/// Like [`prepare_report`], but every input file must already be tokenized (by `--part` runs):
/// `doge data merge`.
pub fn merge_report(
    data: &DataSpec,
    tok: &DogeTokenizer,
    opts: &PrepareOptions,
) -> Result<Prepared> {
    opts.install(|| run(data, tok, opts, Mode::Merge))
}

/// Tokenizes part `part` (1-based) of `parts` of the inputs: every `parts`-th file, starting at
/// file `part - 1` in the order of the sources and their files. Pieces go to the cache, where
/// [`merge_report`] (or a whole run) finds them.
pub fn tokenize_part(
    data: &DataSpec,
    tok: &DogeTokenizer,
    opts: &PrepareOptions,
    part: usize,
    parts: usize,
) -> Result<PartReport> {
    if parts == 0 || part == 0 || part > parts {
        bail!("--part {part}/{parts}: give I/N with 1 <= I <= N");
    }
    opts.install(|| {
        check(data, tok)?;
        let resolved = sources::resolve(data, &opts.hub)?;
        let start = Instant::now();
        let mut k = 0usize;
        let mut mine = Vec::new();
        for r in &resolved {
            for f in 0..r.files.len() {
                if k % parts == part - 1 {
                    mine.push((r.index, f));
                }
                k += 1;
            }
        }
        let t = tokenize(data, tok, opts, &resolved, &mine)?;
        Ok(PartReport {
            files: mine.len(),
            bytes: mine.iter().map(|&(s, f)| resolved[s].files[f].bytes).sum(),
            tokens: t.iter().map(|d| d.2.tokens).sum(),
            pieces_reused: t.iter().map(|d| d.3 as u64).sum(),
            pieces: t.iter().map(|d| d.2.pieces as u64).sum(),
            seconds: start.elapsed().as_secs_f64(),
        })
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Whole,
    Merge,
}

fn check(data: &DataSpec, tok: &DogeTokenizer) -> Result<()> {
    data.check()?;
    if data.kind != Kind::Pretrain && !tok.has_chat_template() {
        bail!(
            "{} data needs a chat template, and tokenizer {} has none",
            data.kind.as_str(),
            tok.dir.display()
        );
    }
    Ok(())
}

/// Tokenizes the files `which` ((source, file) pairs), resuming finished pieces. Returns per
/// file: source, file, what it holds, pieces reused.
fn tokenize(
    data: &DataSpec,
    tok: &DogeTokenizer,
    opts: &PrepareOptions,
    resolved: &[ResolvedSource],
    which: &[(usize, usize)],
) -> Result<Vec<(usize, usize, FileDone, u32)>> {
    let total: u64 = which.iter().map(|&(s, f)| resolved[s].files[f].bytes).sum();
    let bar = Progress::bytes(opts.progress, total, "tokenizing");
    let root = pieces::pieces_root(&opts.cache_root);
    let dtype = Dtype::for_vocab(tok.vocab_size());
    let dir_of = |s: usize, f: usize| {
        let r = &resolved[s];
        root.join(pieces::file_key(
            &r.files[f],
            &r.spec,
            data.kind,
            tok,
            opts.piece_bytes,
        ))
    };
    let ctx = |s: usize| format!("data.source[{s}] `{}`", resolved[s].spec.from);
    std::thread::scope(|scope| {
        // Listed hub files are downloaded one file ahead of the tokenizer, on their own thread,
        // so the network and the cores work at once; with --delete-raw at most two raw files
        // are on disk at a time. A rendezvous channel keeps the downloader one file ahead.
        let (send, recv) = std::sync::mpsc::sync_channel::<Result<Option<PathBuf>>>(0);
        scope.spawn(move || {
            for &(s, f) in which {
                let fetched = match &resolved[s].files[f].remote {
                    Some(h) if pieces::file_done(&dir_of(s, f)).is_none() => {
                        hub::fetch(h, &opts.hub).map(Some)
                    }
                    _ => Ok(None),
                };
                if send.send(fetched).is_err() {
                    return;
                }
            }
        });
        let mut out = Vec::with_capacity(which.len());
        for &(s, f) in which {
            let r = &resolved[s];
            let fetched = recv
                .recv()
                .expect("one answer per file")
                .with_context(|| ctx(s))?;
            let file = SourceFile {
                path: fetched.unwrap_or_else(|| r.files[f].path.clone()),
                ..r.files[f].clone()
            };
            let job = TokenizeJob {
                tok,
                kind: data.kind,
                spec: &r.spec,
                dtype,
                batch_bytes: opts.batch_bytes(),
                piece_bytes: opts.piece_bytes,
                bar: &bar,
            };
            let (done, reused) =
                pieces::tokenize_file(&dir_of(s, f), &file, &job).with_context(|| ctx(s))?;
            if opts.delete_raw {
                hub::delete_raw(&file.path).with_context(|| ctx(s))?;
            }
            out.push((s, f, done, reused));
        }
        bar.finish();
        Ok(out)
    })
}

fn run(
    data: &DataSpec,
    tok: &DogeTokenizer,
    opts: &PrepareOptions,
    mode: Mode,
) -> Result<Prepared> {
    check(data, tok)?;
    let resolved = sources::resolve(data, &opts.hub)?;
    let fingerprint = fingerprint(data, &resolved, tok);
    let dir = opts.cache_root.join(&fingerprint[..16]);
    if dir.join("manifest.json").exists() {
        return Ok(Prepared {
            manifest: Manifest::read(&dir)?,
            dir,
            reused: true,
        });
    }
    let start = Instant::now();

    // 1. Tokenize every file (or, merging, find every file tokenized).
    let all: Vec<(usize, usize)> = resolved
        .iter()
        .flat_map(|r| (0..r.files.len()).map(move |f| (r.index, f)))
        .collect();
    let root = pieces::pieces_root(&opts.cache_root);
    let tokenized = match mode {
        Mode::Whole => tokenize(data, tok, opts, &resolved, &all)?,
        Mode::Merge => {
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for &(s, f) in &all {
                let r = &resolved[s];
                let key = pieces::file_key(&r.files[f], &r.spec, data.kind, tok, opts.piece_bytes);
                match pieces::file_done(&root.join(&key)) {
                    Some(d) => found.push((s, f, d, 0)),
                    None => missing.push(r.files[f].path.display().to_string()),
                }
            }
            pieces::require_done(&missing)?;
            found
        }
    };
    let tokenize_seconds = start.elapsed().as_secs_f64();
    let mut files: Vec<Vec<(PathBuf, FileDone)>> = vec![Vec::new(); resolved.len()];
    for (s, f, done, _) in &tokenized {
        let r = &resolved[*s];
        files[*s].push((
            root.join(pieces::file_key(
                &r.files[*f],
                &r.spec,
                data.kind,
                tok,
                opts.piece_bytes,
            )),
            done.clone(),
        ));
    }
    for (s, r) in resolved.iter().enumerate() {
        if files[s].iter().all(|(_, d)| d.docs == 0) {
            bail!(
                "data.source[{s}] `{}`: no documents in {} file(s) ({}); the corpus is empty or only whitespace",
                r.spec.from,
                r.files.len(),
                r.files.iter().take(3).map(|f| f.path.display().to_string()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let docs: Vec<u64> = files
        .iter()
        .map(|f| f.iter().map(|(_, d)| d.docs).sum())
        .collect();
    let index = PieceIndex::new(&files);

    // 2. Plan the mix.
    let weights: Vec<f64> = data.sources.iter().map(|s| s.weight).collect();
    let keys = MixKeys::new(data.shuffle_seed);
    let plan = plan(
        &index,
        &docs,
        &weights,
        data.test_examples,
        data.budget,
        &keys,
    )?;

    // 3. Shuffle out of core and write the rows.
    std::fs::create_dir_all(&opts.cache_root)
        .with_context(|| format!("creating {}", opts.cache_root.display()))?;
    remove_stale_temporaries(&opts.cache_root, &fingerprint[..16]);
    let tmp = opts.cache_root.join(format!(
        ".{}-tmp-{}",
        &fingerprint[..16],
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let (train_buckets, test_buckets) = scatter(&tmp.join("buckets"), &index, &plan, &keys, opts)?;
    let n_buckets = (train_buckets.entries, test_buckets.entries);

    let vocab_size = tok.vocab_size();
    let dtype = Dtype::for_vocab(vocab_size);
    let row_len = if data.kind == Kind::Dpo {
        0
    } else {
        data.seq_len + 1
    };
    let rows_per_shard = if row_len == 0 {
        u64::MAX
    } else {
        (SHARD_BYTES / (row_len * dtype.bytes()) as u64).max(1)
    };
    let layout = Layout {
        kind: data.kind,
        packing: data.packing,
        row_len,
        dtype,
        rows_per_shard,
        pad_id: tok.pad_id.unwrap_or(tok.eos_id),
    };
    let mut fetch = TokenFetcher::new(&index, dtype);
    let train = write_split(
        &tmp,
        "train",
        train_buckets,
        &mut fetch,
        &layout,
        opts.progress,
    )?;
    let test = write_split(
        &tmp,
        "test",
        test_buckets,
        &mut fetch,
        &layout,
        opts.progress,
    )?;
    let _ = std::fs::remove_dir_all(tmp.join("buckets"));
    if train.rows == 0 {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "the training mix holds {} tokens, fewer than one row of {row_len}; add data or lower data.seq-len",
            train.tokens + train.dropped_tokens
        );
    }
    if data.test_examples > 0 && test.rows == 0 {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "the {} test documents hold {} tokens, fewer than one row of {row_len}; raise data.test-examples",
            test.documents,
            test.dropped_tokens
        );
    }

    let total_train = plan.train_tokens();
    let sources = resolved
        .iter()
        .zip(&plan.sources)
        .map(|(r, sp)| SourceInfo {
            name: r.name.clone(),
            from: r.spec.from.clone(),
            weight: r.spec.weight,
            files: r.files.len(),
            bytes: r.bytes(),
            documents: sp.documents,
            test_documents: sp.test.len() as u64,
            train_documents: sp.picked_docs,
            train_tokens: sp.picked_tokens,
            share: sp.picked_tokens as f64 / total_train.max(1) as f64,
            epochs: sp.picked_tokens as f64 / sp.unique_tokens.max(1) as f64,
        })
        .collect();
    let stats = PrepareStats {
        input_bytes: resolved.iter().map(|r| r.bytes()).sum(),
        pieces: tokenized.iter().map(|t| t.2.pieces as u64).sum(),
        pieces_reused: tokenized.iter().map(|t| t.3 as u64).sum(),
        tokenize_seconds,
        memory: opts.memory,
        threads: rayon::current_num_threads(),
        shuffle_entries: n_buckets.0 + n_buckets.1,
        peak_rss_bytes: crate::bench::stats::peak_rss_bytes(),
    };
    let manifest = Manifest {
        format: FORMAT,
        fingerprint: fingerprint.clone(),
        kind: data.kind,
        seq_len: data.seq_len,
        row_len,
        packing: data.packing,
        dtype,
        vocab_size,
        bos_id: tok.bos_id,
        eos_id: tok.eos_id,
        pad_id: layout.pad_id,
        tokenizer: TokenizerInfo {
            dir: tok.dir.display().to_string(),
            fingerprint: tok.fingerprint.clone(),
        },
        rows_per_shard,
        train,
        test,
        sources,
        settings: data.clone(),
        seconds: start.elapsed().as_secs_f64(),
        stats: Some(stats),
    };
    manifest.write(&tmp)?;
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another process prepared the same fingerprint meanwhile: theirs is identical.
        if !dir.join("manifest.json").exists() {
            return Err(e)
                .with_context(|| format!("moving the prepared data to {}", dir.display()));
        }
    }
    Ok(Prepared {
        dir,
        manifest,
        reused: false,
    })
}

/// Temporary directories of this fingerprint left by killed runs (their process is gone).
fn remove_stale_temporaries(root: &Path, fp: &str) {
    let prefix = format!(".{fp}-tmp-");
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| p == std::process::id() || Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Puts every training copy and test document into shuffle buckets by its mix key.
fn scatter(
    dir: &Path,
    index: &PieceIndex,
    plan: &Plan,
    keys: &MixKeys,
    opts: &PrepareOptions,
) -> Result<(Buckets, Buckets)> {
    let bucket_bytes = opts.bucket_bytes();
    let mut train = Scatter::new(dir, "train", plan.train_entries(), bucket_bytes)?;
    let n_test: u64 = plan.sources.iter().map(|s| s.test.len() as u64).sum();
    let mut test = Scatter::new(dir, "test", n_test, bucket_bytes)?;
    let held: &HashSet<u64> = &plan.held;
    for (s, sp) in plan.sources.iter().enumerate() {
        for t in &sp.test {
            test.push(Entry {
                key: keys.test(s, t.j),
                piece: t.piece,
                rec: t.rec,
            })?;
        }
        let mut j = 0u64;
        index.for_each_doc(s, |piece, rec| {
            for r in 0..sp.copies(held, j, keys.order(s, j), rec) {
                train.push(Entry {
                    key: keys.mix(s, j, r),
                    piece,
                    rec: *rec,
                })?;
            }
            j += 1;
            Ok(())
        })?;
    }
    Ok((train.finish()?, test.finish()?))
}

/// sha256 of the layout version, the settings that change the rows, every input file's
/// contents and the tokenizer. Paths are left out: moved or copied data is the same data.
fn fingerprint(data: &DataSpec, resolved: &[ResolvedSource], tok: &DogeTokenizer) -> String {
    let sources: Vec<_> = resolved
        .iter()
        .map(|r| {
            json!({
                "weight": r.spec.weight, "field": r.spec.field, "unit": r.spec.unit, "subset": r.spec.subset,
                "split": r.spec.split, "revision": r.spec.revision,
                "files": r.files.iter().map(|f| &f.sha256).collect::<Vec<_>>(),
            })
        })
        .collect();
    let v = json!({
        "format": FORMAT, "kind": data.kind, "seq_len": data.seq_len, "packing": data.packing,
        "test_examples": data.test_examples, "shuffle_seed": data.shuffle_seed, "budget": data.budget,
        "sources": sources, "tokenizer": tok.fingerprint,
    });
    format!("{:x}", Sha256::digest(v.to_string().as_bytes()))
}

struct Layout {
    kind: Kind,
    packing: bool,
    row_len: usize,
    dtype: Dtype,
    rows_per_shard: u64,
    pad_id: u32,
}

/// Little-endian u64 or u32 values written as they come (DPO offsets, unpacked lengths).
struct ValueFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl ValueFile {
    fn create(path: PathBuf) -> Result<Self> {
        let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ValueFile {
            out: BufWriter::with_capacity(1 << 20, f),
            path,
        })
    }

    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn finish(mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Writes the rows of one split, in the buckets' key order.
fn write_split(
    dir: &Path,
    name: &str,
    buckets: Buckets,
    fetch: &mut TokenFetcher,
    l: &Layout,
    show: bool,
) -> Result<SplitInfo> {
    let bar = Progress::new(show, buckets.entries, &format!("{name} rows"), "docs");
    let mut info = SplitInfo {
        documents: buckets.entries,
        ..Default::default()
    };
    let mut tokens = ShardWriter::new(dir, name, "tokens", l.dtype, l.rows_per_shard);
    let with_mask = l.kind == Kind::Sft;
    let mut masks = ShardWriter::new(
        dir,
        &format!("{name}-mask"),
        "mask",
        Dtype::U8,
        l.rows_per_shard,
    );
    let mut packer = Packer::new(l.row_len.max(1), with_mask);
    let (index_file, lens_file) = (format!("{name}.index"), format!("{name}.lens"));
    let mut side = match l.kind {
        Kind::Dpo => {
            let mut f = ValueFile::create(dir.join(&index_file))?;
            f.push(&0u64.to_le_bytes())?;
            Some(f)
        }
        _ if !l.packing => Some(ValueFile::create(dir.join(&lens_file))?),
        _ => None,
    };
    let mut offset = 0u64;
    buckets.drain_sorted(|e| {
        let ids = fetch.tokens(e.piece, &e.rec)?;
        let mask = if with_mask {
            Some(fetch.mask(e.piece, &e.rec)?)
        } else {
            None
        };
        match l.kind {
            Kind::Dpo => {
                let side = side.as_mut().expect("an index file");
                let [p, c] = [e.rec.cuts[0] as usize, e.rec.cuts[1] as usize];
                for seg in [&ids[..p], &ids[p..c], &ids[c..]] {
                    tokens.push(seg)?;
                    offset += seg.len() as u64;
                    side.push(&offset.to_le_bytes())?;
                }
                info.rows += 1;
                info.tokens += ids.len() as u64;
            }
            _ if l.packing => {
                for row in packer.push(&ids, mask.as_deref()) {
                    tokens.push(&row.tokens)?;
                    if let Some(m) = &row.mask {
                        masks.push(m)?;
                    }
                    info.rows += 1;
                    info.tokens += l.row_len as u64;
                }
            }
            _ => {
                let (row, mask, len) = pad_row(&ids, mask.as_deref(), l.row_len, l.pad_id);
                tokens.push(&row)?;
                if let Some(m) = &mask {
                    masks.push(m)?;
                }
                side.as_mut()
                    .expect("a lens file")
                    .push(&(len as u32).to_le_bytes())?;
                info.rows += 1;
                info.tokens += len as u64;
                info.dropped_tokens += (ids.len() - len) as u64;
            }
        }
        bar.inc(1, ids.len() as u64);
        Ok(())
    })?;
    match l.kind {
        Kind::Dpo => info.index = Some(index_file),
        _ if l.packing => info.dropped_tokens = packer.leftover() as u64,
        _ => info.lens = Some(lens_file),
    }
    if let Some(f) = side {
        f.finish()?;
    }
    info.shards = tokens.finish()?;
    info.masks = masks.finish()?;
    bar.finish();
    Ok(info)
}
