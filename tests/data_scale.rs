//! Preparation at scale, on small inputs cut into many pieces and buckets: the shards do not
//! depend on the thread count, the memory budget or the piece size; `--part` runs and a merge
//! give the single run's shards; the shuffle is a permutation that mixes input files; a killed
//! run resumes from its finished pieces; bad input is located and nothing half-written is used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use doge::data::tokenizer::{train_bpe, TrainOptions};
use doge::data::{
    merge_report, prepare_report, tokenize_part, DataSpec, DogeTokenizer, HubOptions,
    PrepareOptions, SourceSpec, TokenDataset,
};
use sha2::{Digest, Sha256};

fn options(root: &Path, threads: usize, memory: u64, piece_bytes: u64) -> PrepareOptions {
    PrepareOptions {
        cache_root: root.to_path_buf(),
        hub: HubOptions {
            offline: true,
            cache_dir: root.join("hub"),
            endpoint: None,
        },
        progress: false,
        memory,
        threads: Some(threads),
        piece_bytes,
        delete_raw: false,
    }
}

/// A tiny generator so the corpus is the same on every machine.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

const WORDS: [&str; 16] = [
    "the", "sea", "was", "calm", "and", "a", "letter", "came", "from", "Bath", "with", "news",
    "of", "her", "sister", "Anne",
];

/// `files` JSONL files of `docs` documents each; document `d` of file `f` starts with the tag
/// `f{f}d{d}` so every row can be traced back to its file.
fn corpus(dir: &Path, files: usize, docs: usize) -> PathBuf {
    let root = dir.join("corpus");
    std::fs::create_dir_all(&root).unwrap();
    let mut g = Lcg(233);
    for f in 0..files {
        let mut text = String::new();
        for d in 0..docs {
            let n = 5 + g.below(40);
            let words: Vec<&str> = (0..n).map(|_| WORDS[g.below(WORDS.len())]).collect();
            let row = serde_json::json!({"text": format!("f{f}d{d} {}", words.join(" "))});
            text.push_str(&row.to_string());
            text.push('\n');
        }
        std::fs::write(root.join(format!("part-{f:02}.jsonl")), text).unwrap();
    }
    root
}

fn tokenizer(dir: &Path) -> DogeTokenizer {
    let texts: Vec<String> = (0..200)
        .map(|i| format!("f{}d{} {}", i % 4, i, WORDS.join(" ")))
        .collect();
    train_bpe(
        texts.iter(),
        &TrainOptions {
            vocab_size: 600,
            min_frequency: 0,
        },
        &dir.join("tok"),
    )
    .unwrap()
}

fn spec(corpus: &Path, seq_len: usize, packing: bool) -> DataSpec {
    let mut s = DataSpec::pretrain(vec![SourceSpec::new(corpus.display().to_string())], seq_len);
    s.test_examples = 50;
    s.packing = packing;
    s
}

/// sha256 over every shard, mask, index and lens file of a prepared directory, by name.
fn shards_digest(dir: &Path) -> String {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "manifest.json")
        .collect();
    names.sort();
    assert!(!names.is_empty());
    let mut h = Sha256::new();
    for p in names {
        h.update(p.file_name().unwrap().to_string_lossy().as_bytes());
        h.update(std::fs::read(&p).unwrap());
    }
    format!("{:x}", h.finalize())
}

#[test]
fn shards_do_not_depend_on_threads_memory_or_piece_size() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let corpus = corpus(dir.path(), 3, 4000);
    let data = spec(&corpus, 64, true);
    let run = |name: &str, threads, memory, piece| {
        let o = options(&dir.path().join(name), threads, memory, piece);
        let p = prepare_report(&data, &tok, &o).unwrap();
        let stats = p.manifest.stats.clone().unwrap();
        (shards_digest(&p.dir), stats, p.manifest)
    };
    // 1 thread, 1 GiB, one piece per file, one bucket ...
    let (a, sa, ma) = run("a", 1, 1 << 30, 32 << 20);
    // ... against 2 threads, the smallest buckets (64 KiB: ~2,000 documents each) and pieces of
    // 16 KiB (dozens per file).
    let (b, sb, mb) = run("b", 2, 256 << 10, 16 << 10);
    assert_eq!(a, b);
    assert_eq!(sa.pieces, 3);
    assert!(sb.pieces > 30, "{} pieces", sb.pieces);
    assert_eq!((sa.threads, sb.threads), (1, 2));
    assert_eq!(ma.train, mb.train);
    assert_eq!(ma.sources, mb.sources);
    assert_eq!(ma.fingerprint, mb.fingerprint);
}

#[test]
fn parts_then_merge_equal_a_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let corpus = corpus(dir.path(), 5, 500);
    let data = spec(&corpus, 32, true);
    let single = prepare_report(
        &data,
        &tok,
        &options(&dir.path().join("one"), 2, 1 << 30, 4096),
    )
    .unwrap();

    // The parts share a cache (a cluster filesystem); merging needs every part.
    let shared = options(&dir.path().join("shared"), 1, 1 << 30, 4096);
    let p1 = tokenize_part(&data, &tok, &shared, 1, 2).unwrap();
    assert_eq!(p1.files, 3);
    let e = merge_report(&data, &tok, &shared).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("2 input file(s) are not tokenized") && msg.contains("--part"),
        "{msg}"
    );
    let p2 = tokenize_part(&data, &tok, &shared, 2, 2).unwrap();
    assert_eq!(p2.files, 2);
    let merged = merge_report(&data, &tok, &shared).unwrap();
    assert_eq!(shards_digest(&single.dir), shards_digest(&merged.dir));
    assert_eq!(single.manifest.sources, merged.manifest.sources);
    assert!(tokenize_part(&data, &tok, &shared, 3, 2).is_err());
}

#[test]
fn the_shuffle_is_a_permutation_that_mixes_input_files() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let (files, docs) = (4, 1500);
    let corpus = corpus(dir.path(), files, docs);
    // Unpacked: one document per row, so rows map to documents.
    let data = spec(&corpus, 128, false);
    let p = prepare_report(&data, &tok, &options(dir.path(), 2, 256 << 10, 8 << 10)).unwrap();
    let ds = TokenDataset::open(&p.dir).unwrap();
    let tag = |ids: Vec<u32>, len: usize| -> (usize, usize) {
        let text = tok.decode(&ids[..len], true).unwrap();
        let t = text.split_whitespace().next().unwrap().to_string();
        let (f, d) = t[1..].split_once('d').unwrap();
        (f.parse().unwrap(), d.parse().unwrap())
    };
    let train: Vec<(usize, usize)> = (0..ds.num_train_rows())
        .map(|i| tag(ds.train_row(i), ds.train_len(i)))
        .collect();
    let test: Vec<(usize, usize)> = (0..ds.num_test_rows())
        .map(|i| tag(ds.test_row(i), ds.test_len(i)))
        .collect();
    // A permutation: every document exactly once, in train or test.
    let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
    for t in train.iter().chain(&test) {
        *seen.entry(*t).or_default() += 1;
    }
    assert_eq!(test.len(), 50);
    assert_eq!(seen.len(), files * docs);
    assert!(seen.values().all(|&n| n == 1));
    // Mixed across files: consecutive rows come from different files about 3 times in 4 (as
    // for a uniform shuffle of 4 equal files), and each file's documents are spread over the
    // whole order, not in file order.
    let switches = train.windows(2).filter(|w| w[0].0 != w[1].0).count();
    let rate = switches as f64 / (train.len() - 1) as f64;
    assert!((0.70..0.80).contains(&rate), "file switch rate {rate}");
    let in_order = train
        .windows(2)
        .filter(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1)
        .count();
    let same = train.windows(2).filter(|w| w[0].0 == w[1].0).count();
    let frac = in_order as f64 / same as f64;
    assert!((0.4..0.6).contains(&frac), "in-file order kept {frac}");
    for f in 0..files {
        let pos: Vec<usize> = train
            .iter()
            .enumerate()
            .filter(|(_, t)| t.0 == f)
            .map(|(i, _)| i)
            .collect();
        let mean = pos.iter().sum::<usize>() as f64 / pos.len() as f64;
        let mid = train.len() as f64 / 2.0;
        assert!(
            (mean - mid).abs() < 0.05 * train.len() as f64,
            "file {f} mean {mean}"
        );
    }
}

fn doge_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_doge"));
    c.env("HF_HUB_OFFLINE", "1");
    c
}

fn experiment(dir: &Path, corpus: &Path, tok: &Path) -> PathBuf {
    let p = dir.join("exp.kdl");
    std::fs::write(
        &p,
        format!(
            "name \"scale\"\nmodel \"doge-tiny\"\ntokenizer \"{}\"\ndata {{\n    source \"{}\"\n    seq-len 64\n    test-examples 50\n}}\nstage \"pretrain\" {{\n    lr 1e-3\n    max-steps 1\n}}\n",
            tok.display(),
            corpus.display()
        ),
    )
    .unwrap();
    p
}

fn prepared_dir(cache: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

#[test]
fn a_killed_preparation_resumes_from_its_finished_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let corpus = corpus(dir.path(), 2, 60_000);
    let exp = experiment(dir.path(), &corpus, &tok.dir);
    let run = |cache: &Path| {
        let mut c = doge_bin();
        c.args(["data", "prepare"])
            .arg(&exp)
            .arg("--cache")
            .arg(cache)
            .args(["--quiet", "--threads", "1"])
            .env("DOGE_DATA_PIECE_BYTES", "65536")
            .stdout(std::process::Stdio::null());
        c
    };
    let whole = dir.path().join("whole");
    assert!(run(&whole).status().unwrap().success());

    let killed = dir.path().join("killed");
    let mut child = run(&killed).spawn().unwrap();
    let pieces = |cache: &Path| -> usize {
        let Ok(dirs) = std::fs::read_dir(cache.join("pieces")) else {
            return 0;
        };
        dirs.flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .filter(|f| {
                let n = f
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .into_owned();
                n.ends_with(".json") && n != "done.json" && !n.contains("partial")
            })
            .count()
    };
    let start = std::time::Instant::now();
    while pieces(&killed) < 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        assert!(start.elapsed().as_secs() < 120);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Nothing that looks complete.
    assert!(std::fs::read_dir(&killed).unwrap().all(|e| !e
        .unwrap()
        .path()
        .join("manifest.json")
        .exists()));
    let before = pieces(&killed);

    assert!(run(&killed).status().unwrap().success());
    let a = prepared_dir(&whole);
    let b = prepared_dir(&killed);
    assert_eq!(shards_digest(&a), shards_digest(&b));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("manifest.json")).unwrap()).unwrap();
    let reused = m["stats"]["pieces_reused"].as_u64().unwrap();
    let total = m["stats"]["pieces"].as_u64().unwrap();
    assert!(
        reused as usize >= before && reused < total,
        "{reused} of {total} reused, {before} done at the kill"
    );
}

#[test]
fn merge_takes_pieces_from_other_caches() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let corpus = corpus(dir.path(), 3, 300);
    let exp = experiment(dir.path(), &corpus, &tok.dir);
    let prepare = |cache: &str, extra: &[&str]| {
        let out = doge_bin()
            .args(["data", "prepare"])
            .arg(&exp)
            .arg("--cache")
            .arg(dir.path().join(cache))
            .args(["--quiet"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    prepare("single", &[]);
    let out = prepare("m1", &["--part", "1/2"]);
    assert!(
        out.contains("part 1/2: 2 file(s)") && out.contains("doge data merge"),
        "{out}"
    );
    prepare("m2", &["--part", "2/2"]);
    let out = doge_bin()
        .args(["data", "merge"])
        .arg(&exp)
        .arg("--cache")
        .arg(dir.path().join("m1"))
        .arg("--from")
        .arg(dir.path().join("m2"))
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        shards_digest(&prepared_dir(&dir.path().join("single"))),
        shards_digest(&prepared_dir(&dir.path().join("m1")))
    );
    let bad = doge_bin()
        .args(["data", "prepare"])
        .arg(&exp)
        .args(["--part", "3/2"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("I/N"));
}

/// A Parquet file of `text` rows in row groups of `per_group`, compressed with `codec`.
fn parquet(path: &Path, texts: &[String], per_group: usize, codec: parquet::basic::Compression) {
    crate::data_support::parquet_file(path, &[("text", texts.to_vec())], per_group, codec);
}

#[test]
fn parquet_in_every_hub_codec_streams_by_row_group() {
    use parquet::basic::{Compression, GzipLevel, ZstdLevel};
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let texts: Vec<String> = (0..900)
        .map(|i| format!("f0d{i} {}", WORDS[..(i % 16) + 1].join(" ")))
        .collect();
    let mut digests = Vec::new();
    for (name, codec) in [
        ("snappy", Compression::SNAPPY),
        ("zstd", Compression::ZSTD(ZstdLevel::default())),
        ("gzip", Compression::GZIP(GzipLevel::default())),
        ("lz4", Compression::LZ4_RAW),
        ("none", Compression::UNCOMPRESSED),
    ] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        parquet(&d.join("train-00000.parquet"), &texts, 100, codec);
        let mut data = spec(&d, 32, true);
        data.sources[0].from = d.display().to_string();
        let p = prepare_report(&data, &tok, &options(&d.join("cache"), 2, 1 << 30, 1 << 20))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let stats = p.manifest.stats.clone().unwrap();
        assert_eq!(stats.pieces, 9, "{name}: one piece per row group");
        assert_eq!(p.manifest.sources[0].documents, 900, "{name}");
        digests.push(shards_digest(&p.dir));
    }
    // The same rows whatever the codec.
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn bad_input_is_located_and_never_used() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    // A truncated Parquet file.
    let d = dir.path().join("pq");
    std::fs::create_dir_all(&d).unwrap();
    let texts: Vec<String> = (0..300).map(|i| format!("f0d{i} the sea")).collect();
    let file = d.join("train-00000.parquet");
    parquet(&file, &texts, 100, parquet::basic::Compression::SNAPPY);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let cache = dir.path().join("cache");
    let e = prepare_report(
        &spec(&d, 32, true),
        &tok,
        &options(&cache, 2, 1 << 30, 1 << 20),
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("train-00000.parquet") && msg.contains("not a readable Parquet file"),
        "{msg}"
    );
    let complete = |cache: &Path| {
        std::fs::read_dir(cache)
            .map(|r| {
                r.filter(|e| e.as_ref().unwrap().path().join("manifest.json").exists())
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(complete(&cache), 0);

    // An unreadable row deep in a JSONL file (in a later piece): its line is named, and the
    // pieces finished before it are never taken for the file's whole content.
    let corpus = corpus(dir.path(), 1, 2000);
    let f = corpus.join("part-00.jsonl");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("{\"text\": \"unterminated\n");
    std::fs::write(&f, &text).unwrap();
    let o = options(&cache, 2, 1 << 30, 8 << 10);
    let e = prepare_report(&spec(&corpus, 32, true), &tok, &o).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("part-00.jsonl:2001:") && msg.contains("not valid JSON"),
        "{msg}"
    );
    assert_eq!(complete(&cache), 0);
    let pieces_dir = std::fs::read_dir(cache.join("pieces"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("00000.json").exists())
        .unwrap();
    assert!(!pieces_dir.join("done.json").exists());
    // Fixed, it prepares (a changed file is a new set of pieces).
    text.truncate(text.len() - "{\"text\": \"unterminated\n".len());
    std::fs::write(&f, &text).unwrap();
    let p = prepare_report(&spec(&corpus, 32, true), &tok, &o).unwrap();
    assert_eq!(p.manifest.sources[0].documents, 2000);

    // A source that yields nothing.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("a.jsonl"), "\n\n").unwrap();
    let e = prepare_report(&spec(&empty, 32, true), &tok, &o).unwrap_err();
    assert!(format!("{e:#}").contains("no documents"), "{e:#}");
}
