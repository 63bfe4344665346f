//! Storage: rows read back from the shards are the tokenizer's output for every document;
//! u16/u32 shards round-trip; preparing twice is a no-op and a changed input a new version;
//! SFT masks and DPO rows hold what the chat template and tokenizer give.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use doge::data::shards::{Dtype, ShardReader, ShardWriter};
use doge::data::sources::text_docs;
use doge::data::tokenizer::{train_bpe, TrainOptions};
use doge::data::{
    prepare_report, DataSpec, DogeTokenizer, HubOptions, Kind, PrepareOptions, SourceSpec,
    TextUnit, TokenDataset,
};
use serde_json::Value;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/corpus");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data");

fn options(root: &Path) -> PrepareOptions {
    PrepareOptions {
        cache_root: root.to_path_buf(),
        hub: HubOptions {
            offline: true,
            cache_dir: root.join("hub"),
            endpoint: None,
        },
        progress: false,
        memory: doge::data::prepare::DEFAULT_MEMORY,
        threads: None,
        piece_bytes: doge::data::prepare::default_piece_bytes(),
        delete_raw: false,
    }
}

/// Persuasion (one novel of the quick-start corpus) and a tokenizer trained on it.
fn novel(dir: &Path) -> (PathBuf, Vec<String>, DogeTokenizer) {
    let path = Path::new(CORPUS).join("persuasion.txt");
    let docs = text_docs(&std::fs::read_to_string(&path).unwrap(), TextUnit::Blocks);
    let tok = train_bpe(
        docs.iter(),
        &TrainOptions {
            vocab_size: 2048,
            min_frequency: 0,
        },
        &dir.join("tok"),
    )
    .unwrap();
    (path, docs, tok)
}

/// Each document's tokens as the tokenizer gives them, with the eos the pipeline appends.
fn expected(docs: &[String], tok: &DogeTokenizer) -> HashMap<Vec<u32>, usize> {
    let mut m = HashMap::new();
    for d in docs {
        let mut ids = tok.encode(d, true).unwrap();
        ids.push(tok.eos_id);
        *m.entry(ids).or_insert(0) += 1;
    }
    m
}

/// Cuts a packed stream after every eos.
fn split_at_eos(stream: &[u32], eos: u32) -> (Vec<Vec<u32>>, Vec<u32>) {
    let mut pieces = Vec::new();
    let mut cur = Vec::new();
    for &t in stream {
        cur.push(t);
        if t == eos {
            pieces.push(std::mem::take(&mut cur));
        }
    }
    (pieces, cur)
}

#[test]
fn packed_rows_are_the_tokenized_documents() {
    let dir = tempfile::tempdir().unwrap();
    let (path, docs, tok) = novel(dir.path());
    let mut d = DataSpec::pretrain(vec![SourceSpec::new(path.display().to_string())], 128);
    d.test_examples = 50;
    let p = prepare_report(&d, &tok, &options(&dir.path().join("cache"))).unwrap();
    let ds = TokenDataset::open(&p.dir).unwrap();
    assert_eq!(ds.manifest().dtype, Dtype::U16);
    let mut want = expected(&docs, &tok);
    let mut pieces_total = 0;
    for (n, row) in [(ds.num_train_rows(), 0), (ds.num_test_rows(), 1)] {
        let stream: Vec<u32> = (0..n)
            .flat_map(|i| {
                if row == 0 {
                    ds.train_row(i)
                } else {
                    ds.test_row(i)
                }
            })
            .collect();
        let (pieces, tail) = split_at_eos(&stream, tok.eos_id);
        for p in &pieces {
            let left = want.get_mut(p).unwrap_or_else(|| {
                panic!(
                    "a stored document is no document's tokens: {:?}",
                    tok.decode(p, false)
                )
            });
            assert!(*left > 0, "a document stored more often than it occurs");
            *left -= 1;
        }
        // What follows the last eos is the start of one more document (cut by the row end).
        assert!(
            tail.is_empty() || want.keys().any(|d| d.starts_with(&tail)),
            "the tail is no document's start"
        );
        pieces_total += pieces.len() + usize::from(!tail.is_empty());
    }
    assert!(
        (0..ds.num_train_rows()).all(|i| ds.train_len(i) == 129 && ds.train_row(i).len() == 129)
    );
    let m = ds.manifest();
    // Documents wholly inside a split's dropped tail (< one row) are the only ones not stored.
    let stored = pieces_total as u64;
    assert!(stored <= m.train.documents + m.test.documents);
    assert!(
        m.train.documents + m.test.documents - stored
            <= (m.train.dropped_tokens + m.test.dropped_tokens) / 3
    );
    assert_eq!(m.test.documents, 50);
    // Closed form: rows = floor(tokens / 129).
    let train_tokens: u64 = m.sources[0].train_tokens;
    assert_eq!(m.train.rows, train_tokens / 129);
    assert_eq!(m.train.dropped_tokens, train_tokens % 129);
}

#[test]
fn unpacked_rows_hold_one_padded_document_each() {
    let dir = tempfile::tempdir().unwrap();
    let (path, docs, tok) = novel(dir.path());
    // Rows longer than the longest paragraph, so no document is cut.
    let mut d = DataSpec::pretrain(vec![SourceSpec::new(path.display().to_string())], 2048);
    d.packing = false;
    d.test_examples = 10;
    let p = prepare_report(&d, &tok, &options(&dir.path().join("cache"))).unwrap();
    let ds = TokenDataset::open(&p.dir).unwrap();
    let want = expected(&docs, &tok);
    assert!(want.keys().all(|k| k.len() <= 2049));
    let pad = tok.pad_id.unwrap();
    for i in 0..ds.num_train_rows() {
        let (row, len) = (ds.train_row(i), ds.train_len(i));
        assert_eq!(row.len(), 2049);
        assert!(want.contains_key(&row[..len]), "row {i} is not a document");
        assert!(row[len..].iter().all(|&t| t == pad));
    }
    assert_eq!(
        ds.num_train_rows() + ds.num_test_rows(),
        docs.len() - duplicates_dropped(&docs, &ds, &tok)
    );
}

/// Training copies of held-out paragraphs that occur more than once (dropped on purpose).
fn duplicates_dropped(docs: &[String], ds: &TokenDataset, tok: &DogeTokenizer) -> usize {
    let mut held: HashMap<String, usize> = HashMap::new();
    for i in 0..ds.num_test_rows() {
        *held
            .entry(tok.decode(&ds.test_row(i)[..ds.test_len(i)], true).unwrap())
            .or_default() += 1;
    }
    held.iter()
        .map(|(t, &in_test)| docs.iter().filter(|d| *d == t).count() - in_test)
        .sum()
}

#[test]
fn u16_and_u32_shards_round_trip() {
    assert_eq!(Dtype::for_vocab(65_536), Dtype::U16);
    assert_eq!(Dtype::for_vocab(65_537), Dtype::U32);
    let dir = tempfile::tempdir().unwrap();
    for (dtype, max) in [(Dtype::U16, 65_535u32), (Dtype::U32, 200_000)] {
        let rows: Vec<Vec<u32>> = (0..7u32)
            .map(|r| {
                (0..5)
                    .map(|k| (r * 7919 + k * 104_729) % (max + 1))
                    .collect()
            })
            .collect();
        let mut w = ShardWriter::new(dir.path(), &format!("{dtype:?}"), "tokens", dtype, 3);
        for r in &rows {
            w.push(r).unwrap();
        }
        let files = w.finish().unwrap();
        assert_eq!(
            files.iter().map(|f| f.rows).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );
        let bytes: u64 = files
            .iter()
            .map(|f| std::fs::metadata(dir.path().join(&f.file)).unwrap().len())
            .sum();
        assert_eq!(bytes, 35 * dtype.bytes() as u64);
        let r = ShardReader::open(dir.path(), &files, dtype, 3).unwrap();
        for (i, want) in rows.iter().enumerate() {
            assert_eq!(&r.row(i as u64, 5), want);
        }
    }
}

#[test]
fn preparing_twice_is_a_noop_and_a_change_is_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("p.txt");
    std::fs::copy(Path::new(FIXTURES).join("paragraphs.txt"), &src).unwrap();
    let tok = train_bpe(
        ["a b c"].iter(),
        &TrainOptions {
            vocab_size: 600,
            min_frequency: 0,
        },
        &dir.path().join("tok"),
    )
    .unwrap();
    let mut d = DataSpec::pretrain(vec![SourceSpec::new(src.display().to_string())], 8);
    d.test_examples = 1;
    let opts = options(&dir.path().join("cache"));
    let a = prepare_report(&d, &tok, &opts).unwrap();
    assert!(!a.reused);
    let stamp = std::fs::metadata(a.dir.join("manifest.json"))
        .unwrap()
        .modified()
        .unwrap();
    let b = prepare_report(&d, &tok, &opts).unwrap();
    assert!(b.reused);
    assert_eq!(a.dir, b.dir);
    assert_eq!(
        std::fs::metadata(b.dir.join("manifest.json"))
            .unwrap()
            .modified()
            .unwrap(),
        stamp
    );
    let mut longer = d.clone();
    longer.seq_len = 16;
    let c = prepare_report(&longer, &tok, &opts).unwrap();
    assert_ne!(c.dir, a.dir);
    std::fs::write(
        &src,
        std::fs::read_to_string(&src).unwrap() + "\nA fourth paragraph.\n",
    )
    .unwrap();
    let e = prepare_report(&d, &tok, &opts).unwrap();
    assert!(!e.reused);
    assert_ne!(e.dir, a.dir, "changed contents, new version");
    assert_eq!(e.manifest.sources[0].documents, 4);
    assert!(!std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().contains("tmp")));
}

/// A tokenizer (with Doge's chat template) trained on the chat fixtures.
fn chat_tokenizer(dir: &Path) -> DogeTokenizer {
    let mut texts =
        vec![std::fs::read_to_string(Path::new(FIXTURES).join("paragraphs.txt")).unwrap()];
    for f in ["chats.jsonl", "pairs.jsonl", "cosmo.jsonl"] {
        texts.push(std::fs::read_to_string(Path::new(FIXTURES).join(f)).unwrap());
    }
    train_bpe(
        texts.iter(),
        &TrainOptions {
            vocab_size: 800,
            min_frequency: 0,
        },
        &dir.join("tok"),
    )
    .unwrap()
}

fn fixture_spec(file: &str, kind: Kind, seq_len: usize) -> DataSpec {
    let mut d = DataSpec::pretrain(
        vec![SourceSpec::new(
            Path::new(FIXTURES).join(file).display().to_string(),
        )],
        seq_len,
    );
    d.kind = kind;
    d.test_examples = 0;
    d
}

#[test]
fn sft_masks_mark_the_assistant_turns() {
    let dir = tempfile::tempdir().unwrap();
    let tok = chat_tokenizer(dir.path());
    let mut d = fixture_spec("chats.jsonl", Kind::Sft, 200);
    d.packing = false;
    let p = prepare_report(&d, &tok, &options(&dir.path().join("cache"))).unwrap();
    let ds = TokenDataset::open(&p.dir).unwrap();
    assert_eq!(ds.num_train_rows(), 4);
    let rows: Vec<Value> = std::fs::read_to_string(Path::new(FIXTURES).join("chats.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut want: Vec<String> = rows
        .iter()
        .map(|r| {
            r["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| {
                    m.get("role")
                        .or(m.get("from"))
                        .is_some_and(|v| v == "assistant" || v == "gpt")
                })
                .map(|m| {
                    format!(
                        "{}<|end_of_text|>",
                        m.get("content")
                            .or(m.get("value"))
                            .unwrap()
                            .as_str()
                            .unwrap()
                    )
                })
                .collect()
        })
        .collect();
    let mut got: Vec<String> = (0..4)
        .map(|i| {
            let (row, mask) = (ds.train_row(i), ds.train_mask(i).unwrap());
            assert_eq!(mask.len(), row.len());
            let ids: Vec<u32> = row.iter().zip(&mask).filter(|(_, &m)| m == 1).map(|(&t, _)| t).collect();
            // The full row is the template's rendering plus the appended eos.
            let text = tok.decode(&row[..ds.train_len(i)], false).unwrap();
            assert!(text.starts_with("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\nCutting Knowledge Date: December 2024\n"), "{text}");
            assert!(text.ends_with("<|end_of_text|>\n\n<|end_of_text|>"), "{text:?}");
            tok.decode(&ids, false).unwrap()
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn dpo_rows_keep_prompt_chosen_and_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let tok = chat_tokenizer(dir.path());
    let p = prepare_report(
        &fixture_spec("pairs.jsonl", Kind::Dpo, 512),
        &tok,
        &options(&dir.path().join("cache")),
    )
    .unwrap();
    let ds = TokenDataset::open(&p.dir).unwrap();
    assert_eq!(ds.num_train_rows(), 3);
    let mut got: Vec<(String, String, String)> = (0..3)
        .map(|i| {
            let r = ds.train_pair(i);
            assert_eq!(
                ds.train_row(i),
                [r.prompt.clone(), r.chosen.clone()].concat()
            );
            (
                tok.decode(&r.prompt, false).unwrap(),
                tok.decode(&r.chosen, false).unwrap(),
                tok.decode(&r.rejected, false).unwrap(),
            )
        })
        .collect();
    got.sort();
    let prompt = |q: &str| {
        tok.apply_chat_template(&[serde_json::json!({"role": "user", "content": q})], true)
            .unwrap()
    };
    let mut want = vec![
        (
            prompt("Is the sea salty?"),
            "Yes, sea water holds dissolved salts.<|end_of_text|>".to_string(),
            "No.<|end_of_text|>".to_string(),
        ),
        (
            prompt("Name a planet."),
            "Mars.<|end_of_text|>".into(),
            "The Moon.<|end_of_text|>".into(),
        ),
        (
            prompt("Spell cat."),
            "C-A-T.<|end_of_text|>".into(),
            "K-A-T.<|end_of_text|>".into(),
        ),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(want[0]
        .0
        .ends_with("<|start_header_id|>assistant<|end_header_id|>\n"));
}

#[test]
fn prompt_and_text_rows_pretrain_as_chats() {
    let dir = tempfile::tempdir().unwrap();
    let tok = chat_tokenizer(dir.path());
    let mut d = fixture_spec("cosmo.jsonl", Kind::Pretrain, 200);
    d.sources[0].field = Some("prompt+text".into());
    d.packing = false;
    let p = prepare_report(&d, &tok, &options(&dir.path().join("cache"))).unwrap();
    let ds = TokenDataset::open(&p.dir).unwrap();
    let mut got: Vec<String> = (0..2)
        .map(|i| {
            tok.decode(&ds.train_row(i)[..ds.train_len(i)], false)
                .unwrap()
        })
        .collect();
    got.sort();
    let chat = |q: &str, a: &str| {
        let m = [
            serde_json::json!({"role": "user", "content": q}),
            serde_json::json!({"role": "assistant", "content": a}),
        ];
        tok.apply_chat_template(&m, false).unwrap() + "<|end_of_text|>"
    };
    let want = vec![
        chat(
            "Write a sentence about bread.",
            "Bread is baked from flour, water, salt and yeast.",
        ),
        chat(
            "Write a sentence about rivers.",
            "Rivers carry water from the hills down to the sea.",
        ),
    ];
    assert_eq!(got, want);
    assert!(want[1].contains(
        "<|start_header_id|>user<|end_header_id|>\nWrite a sentence about rivers.<|end_of_text|>"
    ));
}
