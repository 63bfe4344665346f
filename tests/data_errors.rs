//! Bad input gives an error that says where (file, line, column, field) and what to do.

use std::path::Path;

use doge::data::sources::read_file;
use doge::data::tokenizer::{train_bpe, TrainOptions};
use doge::data::{
    prepare, DataSpec, DogeTokenizer, HubOptions, Kind, PrepareOptions, SourceSpec, TokenizerSpec,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data");

fn fixture(name: &str) -> String {
    Path::new(FIXTURES).join(name).display().to_string()
}

fn offline(root: &Path) -> PrepareOptions {
    PrepareOptions {
        cache_root: root.join("cache"),
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

fn tokenizer(dir: &Path) -> DogeTokenizer {
    train_bpe(
        ["plain words for a small tokenizer"].iter(),
        &TrainOptions {
            vocab_size: 600,
            min_frequency: 0,
        },
        &dir.join("tok"),
    )
    .unwrap()
}

fn prepare_err(sources: Vec<SourceSpec>, edit: impl Fn(&mut DataSpec)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let mut d = DataSpec::pretrain(sources, 16);
    d.test_examples = 1;
    edit(&mut d);
    format!("{:#}", prepare(&d, &tok, &offline(dir.path())).unwrap_err())
}

fn has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{p:?} not in: {msg}");
    }
}

#[test]
fn a_missing_file_is_named() {
    let msg = prepare_err(vec![SourceSpec::new("./no/such/corpus.txt")], |_| {});
    has(
        &msg,
        &[
            "data.source[0]",
            "no/such/corpus.txt",
            "no such file or folder",
        ],
    );
}

#[test]
fn a_row_without_the_field_names_file_line_and_fields() {
    let msg = format!(
        "{:#}",
        read_file(
            Path::new(&fixture("missing_field.jsonl")),
            &SourceSpec::new("x"),
            Kind::Pretrain
        )
        .unwrap_err()
    );
    has(
        &msg,
        &[
            "missing_field.jsonl:3:",
            "field `text` is absent",
            "fields present: `body`",
            "text \"FIELD\"",
        ],
    );
}

#[test]
fn invalid_json_is_located() {
    let msg = format!(
        "{:#}",
        read_file(
            Path::new(&fixture("bad_json.jsonl")),
            &SourceSpec::new("x"),
            Kind::Pretrain
        )
        .unwrap_err()
    );
    has(&msg, &["bad_json.jsonl:2:", "not valid JSON"]);
}

#[test]
fn invalid_utf8_is_located() {
    let msg = prepare_err(vec![SourceSpec::new(fixture("latin1.txt"))], |_| {});
    // "...Latin-1 caf" then byte 0xe9: line 2, column 29.
    has(&msg, &["latin1.txt:2:29", "invalid UTF-8", "0xe9", "iconv"]);
}

#[test]
fn an_empty_corpus_is_an_error() {
    let msg = prepare_err(vec![SourceSpec::new(fixture("blank.txt"))], |_| {});
    has(&msg, &["data.source[0]", "no documents", "blank.txt"]);
}

#[test]
fn a_folder_without_data_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "not data").unwrap();
    let msg = prepare_err(
        vec![SourceSpec::new(dir.path().display().to_string())],
        |_| {},
    );
    has(&msg, &["no data files", "*.txt", "*.parquet"]);
}

#[test]
fn a_vocab_smaller_than_the_special_tokens_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = DataSpec::pretrain(vec![SourceSpec::new(fixture("paragraphs.txt"))], 16);
    let hub = HubOptions {
        offline: true,
        cache_dir: dir.path().join("hub"),
        endpoint: None,
    };
    let e = doge::data::ensure_tokenizer(
        &TokenizerSpec::Train { vocab_size: 256 },
        &d,
        dir.path(),
        &hub,
    )
    .unwrap_err();
    has(
        &format!("{e:#}"),
        &["256", "special tokens", "at least 512"],
    );
}

#[test]
fn offline_hub_datasets_say_what_was_looked_for_and_how_to_use_a_local_copy() {
    let mut src = SourceSpec::new("HuggingFaceTB/smollm-corpus");
    src.subset = Some("fineweb-edu-dedup".into());
    let msg = prepare_err(vec![src], |_| {});
    has(
        &msg,
        &[
            "data.source[0]",
            "HuggingFaceTB/smollm-corpus",
            "HF_HUB_OFFLINE",
            "not in the hub cache",
            "point `source` at a local copy",
        ],
    );
    // With the repository in the cache but not the files: the pattern and folder it searched.
    let dir = tempfile::tempdir().unwrap();
    let repo = dir
        .path()
        .join("hub/datasets--HuggingFaceTB--smollm-corpus");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots/abc123/cosmopedia-v2")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123").unwrap();
    std::fs::write(
        repo.join("snapshots/abc123/cosmopedia-v2/train-00000-of-00104.parquet"),
        b"",
    )
    .unwrap();
    let hub = HubOptions {
        offline: true,
        cache_dir: dir.path().join("hub"),
        endpoint: None,
    };
    let e = doge::data::hub::dataset_files(
        "HuggingFaceTB/smollm-corpus",
        None,
        Some("fineweb-edu-dedup"),
        "train",
        &hub,
    )
    .unwrap_err();
    has(
        &format!("{e:#}"),
        &[
            "fineweb-edu-dedup/*train*.parquet",
            "snapshots",
            "huggingface-cli download --repo-type dataset HuggingFaceTB/smollm-corpus",
        ],
    );
    let found = doge::data::hub::dataset_files(
        "HuggingFaceTB/smollm-corpus",
        None,
        Some("cosmopedia-v2"),
        "train",
        &hub,
    )
    .unwrap();
    assert_eq!(
        found,
        vec![repo.join("snapshots/abc123/cosmopedia-v2/train-00000-of-00104.parquet")]
    );
}

#[test]
fn offline_hub_tokenizers_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = DataSpec::pretrain(vec![SourceSpec::new(fixture("paragraphs.txt"))], 16);
    let hub = HubOptions {
        offline: true,
        cache_dir: dir.path().join("hub"),
        endpoint: None,
    };
    let spec = TokenizerSpec::Hub {
        id: "SmallDoge/Doge-tokenizer".into(),
        revision: None,
    };
    let e = doge::data::ensure_tokenizer(&spec, &d, dir.path(), &hub).unwrap_err();
    has(
        &format!("{e:#}"),
        &[
            "`tokenizer.json` of `SmallDoge/Doge-tokenizer`",
            "HF_HUB_OFFLINE",
            "tokenizer \"./path/to/tokenizer\"",
        ],
    );
}

#[test]
fn settings_errors_name_the_key() {
    let msg = prepare_err(
        vec![
            SourceSpec::new(fixture("paragraphs.txt")),
            SourceSpec::new(fixture("paragraphs.txt")).weight(0.0),
        ],
        |_| {},
    );
    has(&msg, &["data.source[1]", "weight 0"]);
    let msg = prepare_err(vec![SourceSpec::new(fixture("paragraphs.txt"))], |d| {
        d.test_examples = 5
    });
    has(&msg, &["data.test-examples 5", "2 documents"]);
    let msg = prepare_err(vec![SourceSpec::new(fixture("paragraphs.txt"))], |d| {
        d.kind = Kind::Sft
    });
    has(&msg, &["paragraphs.txt", "plain text has no chats"]);
    let msg = prepare_err(vec![], |_| {});
    has(&msg, &["no sources"]);
}
