//! `prepare`: sources -> documents -> held-out split -> parallel tokenization -> weighted mix ->
//! shuffled rows in shards, in a directory named by the fingerprint of everything that went in.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::config::{DataSpec, Kind};
use super::docs::Doc;
use super::hub::HubOptions;
use super::manifest::{Manifest, SourceInfo, SplitInfo, TokenizerInfo, FORMAT};
use super::mix::{self, Pick};
use super::pack::{pad_row, Packer};
use super::progress::Progress;
use super::rng::SplitMix64;
use super::shards::{write_u32s, write_u64s, Dtype, ShardWriter};
use super::sources::{self, ResolvedSource};
use super::tokenizer::DogeTokenizer;

/// Shard files stay below this size.
const SHARD_BYTES: u64 = 1 << 30;

/// Where and how to prepare.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Datasets go to `<cache_root>/<fingerprint>/` (default `runs/data`).
    pub cache_root: PathBuf,
    pub hub: HubOptions,
    /// Progress bars on stderr.
    pub progress: bool,
}

impl PrepareOptions {
    pub fn new(cache_root: impl Into<PathBuf>) -> Self {
        PrepareOptions {
            cache_root: cache_root.into(),
            hub: HubOptions::from_env(),
            progress: true,
        }
    }
}

/// What `prepare_report` did.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The fingerprint existed: nothing was written.
    pub reused: bool,
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
    data.check()?;
    if data.kind != Kind::Pretrain && !tok.has_chat_template() {
        bail!(
            "{} data needs a chat template, and tokenizer {} has none",
            data.kind.as_str(),
            tok.dir.display()
        );
    }
    let resolved = sources::resolve(data, &opts.hub)?;
    let fingerprint = fingerprint(data, &resolved, tok);
    let dir = opts.cache_root.join(&fingerprint[..16]);
    if dir.join("manifest.json").exists() {
        return Ok(Prepared {
            manifest: super::manifest::Manifest::read(&dir)?,
            dir,
            reused: true,
        });
    }
    let start = Instant::now();

    let read = Progress::new(opts.progress, resolved.len() as u64, "reading", "sources");
    let mut docs: Vec<Vec<Doc>> = Vec::new();
    for s in &resolved {
        docs.push(sources::read_docs(s, data.kind)?);
        read.inc(1, 0);
    }
    read.finish();

    let weights: Vec<f64> = data.sources.iter().map(|s| s.weight).collect();
    let holdouts = mix::holdout(&docs, &weights, data.test_examples, data.shuffle_seed)?;
    let encoded = tokenize(&docs, tok, data.kind, &resolved, opts.progress)?;
    drop(docs);
    let lens: Vec<Vec<usize>> = encoded
        .iter()
        .map(|e| e.iter().map(|d| d.ids.len()).collect())
        .collect();
    let train_picks = mix::select(&holdouts, &lens, &weights, data.budget, data.shuffle_seed)?;
    let mut test_picks: Vec<Pick> = holdouts
        .iter()
        .enumerate()
        .flat_map(|(s, h)| h.test.iter().map(move |&j| (s, j)))
        .collect();
    SplitMix64::derive(data.shuffle_seed, "test").shuffle(&mut test_picks);

    std::fs::create_dir_all(&opts.cache_root)
        .with_context(|| format!("creating {}", opts.cache_root.display()))?;
    let tmp = opts.cache_root.join(format!(
        ".{}-tmp-{}",
        &fingerprint[..16],
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;

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
    let train = write_split(
        &tmp,
        "train",
        &train_picks,
        &encoded,
        &layout,
        opts.progress,
    )?;
    let test = write_split(&tmp, "test", &test_picks, &encoded, &layout, opts.progress)?;
    if train.rows == 0 {
        bail!(
            "the training mix holds {} tokens, fewer than one row of {row_len}; add data or lower data.seq-len",
            train.tokens + train.dropped_tokens
        );
    }
    if data.test_examples > 0 && test.rows == 0 {
        bail!(
            "the {} test documents hold {} tokens, fewer than one row of {row_len}; raise data.test-examples",
            test.documents,
            test.dropped_tokens
        );
    }

    let total_train: u64 = train_picks.iter().map(|&(s, j)| lens[s][j] as u64).sum();
    let sources = resolved
        .iter()
        .enumerate()
        .map(|(s, r)| {
            let picked: Vec<&Pick> = train_picks.iter().filter(|p| p.0 == s).collect();
            let tokens: u64 = picked.iter().map(|&&(_, j)| lens[s][j] as u64).sum();
            let unique: u64 = holdouts[s].train.iter().map(|&j| lens[s][j] as u64).sum();
            SourceInfo {
                name: r.name.clone(),
                from: r.spec.from.clone(),
                weight: r.spec.weight,
                files: r.files.len(),
                bytes: r.bytes(),
                documents: lens[s].len() as u64,
                test_documents: holdouts[s].test.len() as u64,
                train_documents: picked.len() as u64,
                train_tokens: tokens,
                share: tokens as f64 / total_train.max(1) as f64,
                epochs: tokens as f64 / unique.max(1) as f64,
            }
        })
        .collect();
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

/// One document's tokens: for SFT with its assistant mask, for DPO with the ends of the prompt
/// and of the chosen answer (`ids` = prompt + chosen + rejected).
pub struct Encoded {
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
    pub cuts: [usize; 2],
}

/// Tokenizes every document in parallel, appending eos to each (as TRL's pretraining pipeline
/// does when it is missing).
fn tokenize(
    docs: &[Vec<Doc>],
    tok: &DogeTokenizer,
    kind: Kind,
    resolved: &[ResolvedSource],
    show: bool,
) -> Result<Vec<Vec<Encoded>>> {
    let total: usize = docs.iter().map(Vec::len).sum();
    let bar = Progress::new(show, total as u64, "tokenizing", "docs");
    let out = docs
        .iter()
        .enumerate()
        .map(|(s, d)| {
            d.par_chunks(64)
                .enumerate()
                .flat_map_iter(|(c, chunk)| {
                    let res: Vec<Result<Encoded>> = chunk
                        .iter()
                        .enumerate()
                        .map(|(k, doc)| {
                            encode_doc(doc, tok, kind).with_context(|| {
                                format!(
                                    "data.source[{s}] `{}`: document {}",
                                    resolved[s].spec.from,
                                    c * 64 + k
                                )
                            })
                        })
                        .collect();
                    let n: u64 = res
                        .iter()
                        .map(|r| r.as_ref().map_or(0, |e| e.ids.len() as u64))
                        .sum();
                    bar.inc(chunk.len() as u64, n);
                    res
                })
                .collect::<Result<Vec<Encoded>>>()
        })
        .collect::<Result<Vec<_>>>();
    bar.finish();
    out
}

/// Tokens of one document for `kind`.
pub fn encode_doc(doc: &Doc, tok: &DogeTokenizer, kind: Kind) -> Result<Encoded> {
    let eos = tok.eos_id;
    let close = |ids: &mut Vec<u32>, mask: &mut Vec<u8>, with_mask: bool| {
        if ids.last() != Some(&eos) {
            ids.push(eos);
            if with_mask {
                mask.push(0);
            }
        }
    };
    match (kind, doc) {
        (Kind::Pretrain, Doc::Text(t)) => {
            let mut ids = tok.encode(t, true)?;
            close(&mut ids, &mut Vec::new(), false);
            Ok(Encoded {
                ids,
                mask: Vec::new(),
                cuts: [0; 2],
            })
        }
        (Kind::Pretrain, Doc::Chat(m)) => {
            let mut ids = tok.encode_chat(m, false)?;
            close(&mut ids, &mut Vec::new(), false);
            Ok(Encoded {
                ids,
                mask: Vec::new(),
                cuts: [0; 2],
            })
        }
        (Kind::Sft, Doc::Chat(m)) => {
            let (mut ids, mut mask) = tok.encode_chat_with_mask(m)?;
            close(&mut ids, &mut mask, true);
            Ok(Encoded {
                ids,
                mask,
                cuts: [0; 2],
            })
        }
        (
            Kind::Dpo,
            Doc::Pair {
                prompt,
                chosen,
                rejected,
            },
        ) => {
            // TRL: the prompt through the chat template with the generation prompt; answers
            // tokenized plain, each followed by eos.
            let mut ids = tok.encode_chat(prompt, true)?;
            let p = ids.len();
            ids.extend(tok.encode(chosen, false)?);
            ids.push(eos);
            let c = ids.len();
            ids.extend(tok.encode(rejected, false)?);
            ids.push(eos);
            Ok(Encoded {
                ids,
                mask: Vec::new(),
                cuts: [p, c],
            })
        }
        (k, _) => Err(anyhow!("this row does not fit {} data", k.as_str())),
    }
}

struct Layout {
    kind: Kind,
    packing: bool,
    row_len: usize,
    dtype: Dtype,
    rows_per_shard: u64,
    pad_id: u32,
}

/// Writes the rows of one split.
fn write_split(
    dir: &Path,
    name: &str,
    picks: &[Pick],
    enc: &[Vec<Encoded>],
    l: &Layout,
    show: bool,
) -> Result<SplitInfo> {
    let bar = Progress::new(show, picks.len() as u64, &format!("{name} rows"), "docs");
    let mut info = SplitInfo {
        documents: picks.len() as u64,
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
    match l.kind {
        Kind::Dpo => {
            let mut index = vec![0u64];
            for &(s, j) in picks {
                let e = &enc[s][j];
                for seg in [
                    &e.ids[..e.cuts[0]],
                    &e.ids[e.cuts[0]..e.cuts[1]],
                    &e.ids[e.cuts[1]..],
                ] {
                    tokens.push(seg)?;
                    index.push(index.last().expect("starts with 0") + seg.len() as u64);
                }
                info.rows += 1;
                info.tokens += e.ids.len() as u64;
                bar.inc(1, e.ids.len() as u64);
            }
            let file = format!("{name}.index");
            write_u64s(&dir.join(&file), &index)?;
            info.index = Some(file);
        }
        _ if l.packing => {
            let mut packer = Packer::new(l.row_len, with_mask);
            for &(s, j) in picks {
                let e = &enc[s][j];
                for row in packer.push(&e.ids, with_mask.then_some(&e.mask[..])) {
                    tokens.push(&row.tokens)?;
                    if let Some(m) = &row.mask {
                        masks.push(m)?;
                    }
                    info.rows += 1;
                    info.tokens += l.row_len as u64;
                }
                bar.inc(1, e.ids.len() as u64);
            }
            info.dropped_tokens = packer.leftover() as u64;
        }
        _ => {
            let mut lens = Vec::with_capacity(picks.len());
            for &(s, j) in picks {
                let e = &enc[s][j];
                let (row, mask, len) = pad_row(
                    &e.ids,
                    with_mask.then_some(&e.mask[..]),
                    l.row_len,
                    l.pad_id,
                );
                tokens.push(&row)?;
                if let Some(m) = &mask {
                    masks.push(m)?;
                }
                lens.push(len as u32);
                info.rows += 1;
                info.tokens += len as u64;
                info.dropped_tokens += (e.ids.len() - len) as u64;
                bar.inc(1, e.ids.len() as u64);
            }
            let file = format!("{name}.lens");
            write_u32s(&dir.join(&file), &lens)?;
            info.lens = Some(file);
        }
    }
    info.shards = tokens.finish()?;
    info.masks = masks.finish()?;
    bar.finish();
    Ok(info)
}
