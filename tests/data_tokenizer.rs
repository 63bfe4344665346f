//! Tokenizers: the Doge tokenizer reproduces transformers' outputs (../shared/ref/
//! tokenizer_doge.jsonl), and a trained byte-level BPE has Doge's special tokens and template.

use std::path::{Path, PathBuf};

use doge::data::tokenizer::{
    doge_special_tokens, min_vocab_size, train_bpe, TrainOptions, DOGE_CHAT_TEMPLATE,
};
use doge::data::{DataSpec, DogeTokenizer, HubOptions, SourceSpec, TokenizerSpec};
use serde_json::Value;

const DOGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/tokenizer/doge");
const REF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/ref/tokenizer_doge.jsonl"
);
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/corpus");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data");

fn shared_doge() -> Option<(DogeTokenizer, Vec<Value>)> {
    if !Path::new(DOGE).join("tokenizer.json").exists() || !Path::new(REF).exists() {
        println!("skipped: {DOGE} or {REF} is missing");
        return None;
    }
    let rows = std::fs::read_to_string(REF)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Some((DogeTokenizer::load(Path::new(DOGE)).unwrap(), rows))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn messages(v: &Value) -> Vec<Value> {
    v["messages"].as_array().unwrap().clone()
}

#[test]
fn encodings_match_transformers() {
    let Some((tok, rows)) = shared_doge() else {
        return;
    };
    let mut n = 0;
    for r in rows.iter().filter(|r| r["kind"] == "encode") {
        let got = tok
            .encode(
                r["text"].as_str().unwrap(),
                r["add_special_tokens"].as_bool().unwrap(),
            )
            .unwrap();
        assert_eq!(got, ids(&r["input_ids"]), "text {:?}", r["text"]);
        n += 1;
    }
    assert!(n >= 4, "only {n} encode rows");
}

#[test]
fn chat_template_matches_transformers() {
    let Some((tok, rows)) = shared_doge() else {
        return;
    };
    let mut n = 0;
    for r in rows.iter().filter(|r| r["kind"] == "chat") {
        let gen = r["add_generation_prompt"].as_bool().unwrap();
        let text = tok.apply_chat_template(&messages(r), gen).unwrap();
        assert_eq!(text, r["text"].as_str().unwrap());
        assert_eq!(
            tok.encode_chat(&messages(r), gen).unwrap(),
            ids(&r["input_ids"])
        );
        n += 1;
    }
    assert!(n >= 3, "only {n} chat rows");
}

#[test]
fn special_tokens_and_template_are_doges() {
    let Some((tok, _)) = shared_doge() else {
        return;
    };
    assert_eq!((tok.bos_id, tok.eos_id, tok.pad_id), (0, 1, Some(2)));
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(DOGE).join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    let decoder = config["added_tokens_decoder"].as_object().unwrap();
    let specials = doge_special_tokens();
    assert_eq!(specials.len(), decoder.len());
    for (id, t) in specials.iter().enumerate() {
        assert_eq!(decoder[&id.to_string()]["content"], t.as_str(), "id {id}");
    }
    assert_eq!(
        config["chat_template"].as_str().unwrap(),
        DOGE_CHAT_TEMPLATE
    );
}

#[test]
fn assistant_mask_covers_exactly_the_assistant_turns() {
    let Some((tok, rows)) = shared_doge() else {
        return;
    };
    // The haiku chat: system, user, assistant, user.
    let r = rows
        .iter()
        .find(|r| r["kind"] == "chat" && messages(r).len() == 4)
        .unwrap();
    let (ids, mask) = tok.encode_chat_with_mask(&messages(r)).unwrap();
    assert_eq!(ids, tok.encode_chat(&messages(r), false).unwrap());
    let first = mask.iter().position(|&m| m == 1).unwrap();
    let last = mask.iter().rposition(|&m| m == 1).unwrap();
    assert!(
        mask[first..=last].iter().all(|&m| m == 1),
        "the assistant span is contiguous"
    );
    let masked = tok.decode(&ids[first..=last], false).unwrap();
    assert_eq!(masked, "Red bloom on old iron,\nslow fire without a flame -\ntime's patient appetite.<|end_of_text|>");
    // The header before it is the prompt's, not the answer's.
    assert_eq!(
        tok.decode(&ids[first - 2..first], false).unwrap(),
        "<|end_header_id|>\n"
    );
}

fn train_austen(dir: &Path, vocab: usize) -> (DogeTokenizer, f64) {
    let mut texts = Vec::new();
    for f in doge::data::sources::local_files(Path::new(CORPUS)).unwrap() {
        texts.extend(doge::data::sources::text_docs(
            &std::fs::read_to_string(f).unwrap(),
            doge::data::TextUnit::Blocks,
        ));
    }
    let t = std::time::Instant::now();
    let tok = train_bpe(
        texts.iter(),
        &TrainOptions {
            vocab_size: vocab,
            min_frequency: 0,
        },
        dir,
    )
    .unwrap();
    (tok, t.elapsed().as_secs_f64())
}

#[test]
fn trained_tokenizer_has_doge_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let (tok, secs) = train_austen(tmp.path(), 4096);
    println!("trained the quick-start tokenizer (4096) in {secs:.2} s");
    assert_eq!(tok.vocab_size(), 4096);
    for (id, t) in doge_special_tokens().iter().enumerate() {
        assert_eq!(tok.inner.token_to_id(t), Some(id as u32));
    }
    assert_eq!((tok.bos_id, tok.eos_id, tok.pad_id), (0, 1, Some(2)));
    // Byte-level: any text round-trips, and the bos is prepended like Doge's post-processor does.
    let text = "Mr. Darcy's 10,000 a year — naïve café, 数学 ✓\n\ttabs  and  spaces ";
    let ids = tok.encode(text, true).unwrap();
    assert_eq!(ids[0], 0);
    assert!(
        ids[1..].iter().all(|&i| i >= 256),
        "plain text never produces special ids"
    );
    assert_eq!(tok.decode(&ids, true).unwrap(), text);
    assert_eq!(tok.encode("", true).unwrap(), vec![0]);
    // Special tokens inside text are single ids.
    assert_eq!(
        tok.encode("<|start_header_id|>user<|end_header_id|>", false)
            .unwrap()[0],
        3
    );
    // The saved folder loads on its own and carries the template.
    let again = DogeTokenizer::load(tmp.path()).unwrap();
    assert_eq!(again.encode(text, true).unwrap(), ids);
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["chat_template"].as_str().unwrap(),
        DOGE_CHAT_TEMPLATE
    );
    assert_eq!(
        config["added_tokens_decoder"]["255"]["content"],
        "<|reserved_special_token_243|>"
    );
}

#[test]
fn trained_tokenizer_renders_chats_like_transformers() {
    if !Path::new(REF).exists() {
        println!("skipped: {REF} is missing");
        return;
    }
    let rows: Vec<Value> = std::fs::read_to_string(REF)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let texts = doge::data::sources::text_docs(
        &std::fs::read_to_string(Path::new(FIXTURES).join("paragraphs.txt")).unwrap(),
        doge::data::TextUnit::Blocks,
    );
    let tok = train_bpe(
        texts.iter(),
        &TrainOptions {
            vocab_size: 600,
            min_frequency: 0,
        },
        tmp.path(),
    )
    .unwrap();
    for r in rows.iter().filter(|r| r["kind"] == "chat") {
        let gen = r["add_generation_prompt"].as_bool().unwrap();
        let text = tok.apply_chat_template(&messages(r), gen).unwrap();
        assert_eq!(text, r["text"].as_str().unwrap());
        // Our own ids differ from Doge's, but decode to the same text.
        assert_eq!(
            tok.decode(&tok.encode_chat(&messages(r), gen).unwrap(), false)
                .unwrap(),
            text
        );
    }
}

#[test]
fn training_is_deterministic() {
    let texts = doge::data::sources::text_docs(
        &std::fs::read_to_string(Path::new(FIXTURES).join("paragraphs.txt")).unwrap(),
        doge::data::TextUnit::Blocks,
    );
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = TrainOptions {
        vocab_size: 700,
        min_frequency: 0,
    };
    train_bpe(texts.iter(), &opts, a.path()).unwrap();
    train_bpe(texts.iter(), &opts, b.path()).unwrap();
    let read = |d: &Path| std::fs::read(d.join("tokenizer.json")).unwrap();
    assert_eq!(read(a.path()), read(b.path()));
}

#[test]
fn vocab_smaller_than_the_special_tokens_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let e = train_bpe(
        ["some text"].iter(),
        &TrainOptions {
            vocab_size: 300,
            min_frequency: 0,
        },
        tmp.path(),
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("300")
            && msg.contains(&min_vocab_size().to_string())
            && msg.contains("special tokens"),
        "{msg}"
    );
    assert_eq!(min_vocab_size(), 512);
}

#[test]
fn tokenizer_spec_parses_train_paths_and_hub_ids() {
    let base = Path::new(FIXTURES);
    assert_eq!(
        TokenizerSpec::parse("train", base, Some(4096)).unwrap(),
        TokenizerSpec::Train { vocab_size: 4096 }
    );
    assert_eq!(
        TokenizerSpec::parse("train:1024", base, None).unwrap(),
        TokenizerSpec::Train { vocab_size: 1024 }
    );
    assert!(TokenizerSpec::parse("train", base, None).is_err());
    assert_eq!(
        TokenizerSpec::parse("./tok", base, None).unwrap(),
        TokenizerSpec::Path(base.join("./tok"))
    );
    assert_eq!(
        TokenizerSpec::parse("SmallDoge/Doge-tokenizer@v2", base, None).unwrap(),
        TokenizerSpec::Hub {
            id: "SmallDoge/Doge-tokenizer".into(),
            revision: Some("v2".into())
        }
    );
}

#[test]
fn trained_tokenizer_is_cached_by_fingerprint() {
    let cache = tempfile::tempdir().unwrap();
    let mut data = DataSpec::pretrain(
        vec![SourceSpec::new(
            Path::new(FIXTURES)
                .join("paragraphs.txt")
                .display()
                .to_string(),
        )],
        16,
    );
    data.test_examples = 1;
    let spec = TokenizerSpec::Train { vocab_size: 600 };
    let hub = HubOptions {
        offline: true,
        cache_dir: cache.path().join("hub"),
        endpoint: None,
    };
    let a = doge::data::ensure_tokenizer(&spec, &data, cache.path(), &hub).unwrap();
    let stamp = |t: &DogeTokenizer| {
        std::fs::metadata(t.dir.join("tokenizer.json"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let b = doge::data::ensure_tokenizer(&spec, &data, cache.path(), &hub).unwrap();
    assert_eq!(a.dir, b.dir);
    assert_eq!(
        stamp(&a),
        stamp(&b),
        "the second call reuses the first tokenizer"
    );
    let c = doge::data::ensure_tokenizer(
        &TokenizerSpec::Train { vocab_size: 640 },
        &data,
        cache.path(),
        &hub,
    )
    .unwrap();
    assert_ne!(a.dir, c.dir, "another size is another tokenizer");
    assert_eq!(c.vocab_size(), 640);
    let _: PathBuf = a.dir;
}

/// Texts that exercise every branch of the Llama-3 split regex: contractions in both cases,
/// letters after punctuation, digit runs longer than 3, whitespace runs before words and at the
/// end, CR/LF mixes, tabs, non-Latin scripts, emoji, and text around added tokens.
fn tricky_texts() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "It's DON'T we'd THEY'LL you've I'M she's",
        "(hello)world,x=1;y=22;z=333;w=4444;v=1234567",
        "  leading spaces\tand\ttabs   trailing   ",
        "line\r\nbreaks\n\n\nmany\r\r\n  \n indented",
        "naïve café — “quotes” … ½ ²",
        "東京は晴れ。Привет, мир! مرحبا 🙂👍🏽 e\u{301}",
        "a<|begin_of_text|>b <|im_start|>user\nhi<|im_end|>",
        "<|not a token|> <| |>",
        "\u{0}\u{1}\u{7f} control",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for f in doge::data::sources::local_files(Path::new(CORPUS)).unwrap() {
        v.extend(
            doge::data::sources::text_docs(
                &std::fs::read_to_string(f).unwrap(),
                doge::data::TextUnit::Blocks,
            )
            .into_iter()
            .step_by(7),
        );
    }
    v
}

fn assert_fast_path_exact(tok: &DogeTokenizer) {
    assert!(tok.has_fast_path(), "{}: no fast path", tok.dir.display());
    let texts = tricky_texts();
    for t in &texts {
        for special in [false, true] {
            assert_eq!(
                tok.encode(t, special).unwrap(),
                tok.encode_full(t, special).unwrap(),
                "{t:?} (special tokens: {special})"
            );
        }
    }
    // The same text with all of them at once (a long document).
    let all = texts.join("\n\n");
    assert_eq!(
        tok.encode(&all, true).unwrap(),
        tok.encode_full(&all, true).unwrap()
    );
}

#[test]
fn the_direct_bpe_path_gives_the_full_pipelines_ids() {
    let dir = tempfile::tempdir().unwrap();
    let texts = tricky_texts();
    let trained = train_bpe(
        texts.iter(),
        &TrainOptions {
            vocab_size: 1024,
            min_frequency: 0,
        },
        &dir.path().join("tok"),
    )
    .unwrap();
    assert_fast_path_exact(&trained);
    assert_fast_path_exact(&DogeTokenizer::load(&dir.path().join("tok")).unwrap());
    if Path::new(DOGE).exists() {
        assert_fast_path_exact(&DogeTokenizer::load(Path::new(DOGE)).unwrap());
    }
}
