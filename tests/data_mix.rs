//! Mixing: weights give token shares, seeds give orders, and the test split stays out of
//! training. Sources are generated here, each from its own alphabet, so every token of a row
//! says which source it came from without asking the pipeline.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use doge::data::tokenizer::{train_bpe, TrainOptions};
use doge::data::{
    prepare_report, Budget, DataSpec, DogeTokenizer, HubOptions, PrepareOptions, SourceSpec,
    TokenDataset,
};

const ALPHABETS: [&str; 3] = ["abcdefgh", "ijklmnop", "qrstuvwx"];

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// `docs` paragraphs of `words` random words over `alphabet`, blank-line separated.
fn corpus(alphabet: &str, docs: usize, words: usize, seed: u64) -> String {
    let letters: Vec<char> = alphabet.chars().collect();
    let mut rng = Lcg(seed);
    let mut out = String::new();
    for _ in 0..docs {
        let ws: Vec<String> = (0..words)
            .map(|_| {
                (0..1 + rng.next(5))
                    .map(|_| letters[rng.next(letters.len())])
                    .collect()
            })
            .collect();
        out += &ws.join(" ");
        out += "\n\n";
    }
    out
}

struct Fixture {
    dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    tok: DogeTokenizer,
}

fn fixture(docs: [usize; 3]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut texts = Vec::new();
    for (i, a) in ALPHABETS.iter().enumerate() {
        let text = corpus(a, docs[i], 60, 17 + i as u64);
        let p = dir.path().join(format!("source{i}.txt"));
        std::fs::write(&p, &text).unwrap();
        texts.extend(text.split("\n\n").map(str::to_string));
        files.push(p);
    }
    let tok = train_bpe(
        texts.iter(),
        &TrainOptions {
            vocab_size: 1200,
            min_frequency: 0,
        },
        &dir.path().join("tok"),
    )
    .unwrap();
    Fixture { dir, files, tok }
}

fn spec(f: &Fixture, weights: [f64; 3]) -> DataSpec {
    let sources = f
        .files
        .iter()
        .zip(weights)
        .map(|(p, w)| SourceSpec::new(p.display().to_string()).weight(w))
        .collect();
    let mut d = DataSpec::pretrain(sources, 64);
    d.test_examples = 30;
    d
}

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

/// Tokens of the training rows per source, told apart by the letters they decode to.
fn shares(ds: &TokenDataset, tok: &DogeTokenizer) -> [f64; 3] {
    let mut counts = [0u64; 3];
    for i in 0..ds.num_train_rows() {
        for id in ds.train_row(i) {
            if id < 256 {
                continue;
            }
            let text = tok.decode(&[id], false).unwrap();
            let letters: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let src: Vec<usize> = (0..3)
                .filter(|&s| letters.chars().all(|c| ALPHABETS[s].contains(c)))
                .collect();
            assert_eq!(
                src.len(),
                1,
                "token {id} {text:?} belongs to exactly one source"
            );
            counts[src[0]] += 1;
        }
    }
    let total: u64 = counts.iter().sum();
    counts.map(|c| c as f64 / total as f64)
}

#[test]
fn weights_7_2_1_give_token_shares_within_one_percent() {
    let f = fixture([400, 400, 400]);
    let cache = f.dir.path().join("cache");
    let p = prepare_report(&spec(&f, [7.0, 2.0, 1.0]), &f.tok, &options(&cache)).unwrap();
    let ds = TokenDataset::open(&p.dir).unwrap();
    let got = shares(&ds, &f.tok);
    for (g, want) in got.iter().zip([0.7, 0.2, 0.1]) {
        assert!((g - want).abs() < 0.01, "shares {got:?}");
    }
    // The scarcest source relative to its weight (the first) is used exactly once, none repeats.
    let m = p.manifest;
    assert!(
        (m.sources[0].epochs - 1.0).abs() < 1e-9,
        "{:?}",
        m.sources[0]
    );
    assert!(m.sources.iter().all(|s| s.epochs <= 1.0));
    assert!(m.summary().contains("train tokens"));
}

#[test]
fn a_token_budget_repeats_small_sources() {
    let f = fixture([60, 200, 200]);
    let mut d = spec(&f, [7.0, 2.0, 1.0]);
    d.budget = Budget::Tokens(60_000);
    let p = prepare_report(&d, &f.tok, &options(&f.dir.path().join("cache"))).unwrap();
    let m = &p.manifest;
    let total = m.train.tokens + m.train.dropped_tokens;
    // Within one document (< 200 tokens) per source of the budget.
    assert!((total as i64 - 60_000).abs() < 600, "{total}");
    assert!(
        m.sources[0].epochs > 2.0,
        "the small heavy source repeats: {:?}",
        m.sources[0]
    );
    let got = shares(&TokenDataset::open(&p.dir).unwrap(), &f.tok);
    for (g, want) in got.iter().zip([0.7, 0.2, 0.1]) {
        assert!((g - want).abs() < 0.01, "shares {got:?}");
    }
}

#[test]
fn an_example_budget_is_shared_out_exactly() {
    let f = fixture([100, 100, 100]);
    let mut d = spec(&f, [7.0, 2.0, 1.0]);
    d.budget = Budget::Examples(1000);
    let p = prepare_report(&d, &f.tok, &options(&f.dir.path().join("cache"))).unwrap();
    let docs: Vec<u64> = p
        .manifest
        .sources
        .iter()
        .map(|s| s.train_documents)
        .collect();
    assert_eq!(docs, vec![700, 200, 100]);
    assert_eq!(p.manifest.train.documents, 1000);
    assert_eq!(p.manifest.test.documents, 30);
    // 30 test documents shared 7:2:1.
    assert_eq!(
        p.manifest
            .sources
            .iter()
            .map(|s| s.test_documents)
            .collect::<Vec<_>>(),
        vec![21, 6, 3]
    );
}

#[test]
fn the_same_seed_gives_the_same_order() {
    let f = fixture([80, 80, 80]);
    let d = spec(&f, [1.0, 1.0, 1.0]);
    let a = prepare_report(&d, &f.tok, &options(&f.dir.path().join("a"))).unwrap();
    let b = prepare_report(&d, &f.tok, &options(&f.dir.path().join("b"))).unwrap();
    assert_eq!(
        a.dir.file_name(),
        b.dir.file_name(),
        "same inputs, same fingerprint"
    );
    let (da, db) = (
        TokenDataset::open(&a.dir).unwrap(),
        TokenDataset::open(&b.dir).unwrap(),
    );
    assert_eq!(da.num_train_rows(), db.num_train_rows());
    for i in 0..da.num_train_rows() {
        assert_eq!(da.train_row(i), db.train_row(i), "row {i}");
    }
    let mut other = d.clone();
    other.shuffle_seed = 234;
    let c = prepare_report(&other, &f.tok, &options(&f.dir.path().join("a"))).unwrap();
    assert_ne!(c.dir, a.dir);
    let dc = TokenDataset::open(&c.dir).unwrap();
    let same = (0..da.num_train_rows().min(dc.num_train_rows()))
        .filter(|&i| da.train_row(i) == dc.train_row(i))
        .count();
    assert!(same < 3, "another seed reorders the rows ({same} equal)");
}

#[test]
fn the_test_split_never_overlaps_training() {
    let dir = tempfile::tempdir().unwrap();
    // Unique records, plus one paragraph repeated 25 times (like "CHAPTER I" across novels).
    let mut text = String::new();
    for i in 0..300 {
        text += &format!("Record {i} of the ledger, entered by the clerk.\n\n");
        if i % 12 == 0 {
            text += "CHAPTER I\n\n";
        }
    }
    let src = dir.path().join("ledger.txt");
    std::fs::write(&src, &text).unwrap();
    let tok = train_bpe(
        text.split("\n\n").filter(|s| !s.is_empty()),
        &TrainOptions {
            vocab_size: 600,
            min_frequency: 0,
        },
        &dir.path().join("tok"),
    )
    .unwrap();
    let mut seen_chapter_in_test = false;
    for seed in 0..6 {
        let mut d = DataSpec::pretrain(vec![SourceSpec::new(src.display().to_string())], 64);
        d.packing = false;
        d.test_examples = 40;
        d.shuffle_seed = seed;
        let p = prepare_report(&d, &tok, &options(&dir.path().join("cache"))).unwrap();
        let ds = TokenDataset::open(&p.dir).unwrap();
        let texts = |n: usize, row: &dyn Fn(usize) -> (Vec<u32>, usize)| -> Vec<String> {
            (0..n)
                .map(|i| {
                    let (r, len) = row(i);
                    tok.decode(&r[..len], true).unwrap()
                })
                .collect()
        };
        let train = texts(ds.num_train_rows(), &|i| (ds.train_row(i), ds.train_len(i)));
        let test = texts(ds.num_test_rows(), &|i| (ds.test_row(i), ds.test_len(i)));
        assert_eq!(test.len(), 40);
        let train_set: HashSet<&String> = train.iter().collect();
        for t in &test {
            assert!(
                !train_set.contains(t),
                "seed {seed}: held-out {t:?} is also trained on"
            );
            assert!(text.contains(t.as_str()));
        }
        seen_chapter_in_test |= test.iter().any(|t| t == "CHAPTER I");
        // Everything not held out is trained on (the repeated paragraph only once per copy).
        let k = test.iter().filter(|t| *t == "CHAPTER I").count();
        let expected = if k > 0 { 325 - 25 + k } else { 325 };
        assert_eq!(train.len() + test.len(), expected, "seed {seed}");
    }
    assert!(
        seen_chapter_in_test,
        "some seed held out the repeated paragraph, exercising the dedup"
    );
}
