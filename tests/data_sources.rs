//! Sources: plain text, JSONL, JSON and Parquet rows become the documents they hold.

use std::path::Path;
use std::sync::Arc;

use doge::data::docs::Doc;
use doge::data::sources::{local_files, read_file};
use doge::data::{Kind, SourceSpec, TextUnit};
use serde_json::json;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data");

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(FIXTURES).join(name)
}

#[test]
fn text_files_split_into_blank_line_blocks_or_stay_whole() {
    let spec = SourceSpec::new("x");
    let docs = read_file(&fixture("paragraphs.txt"), &spec, Kind::Pretrain).unwrap();
    let want = [
        "It is a truth universally acknowledged, that a single man in possession\nof a good fortune, must be in want of a wife.",
        "However little known the feelings or views of such a man may be on his\nfirst entering a neighbourhood, this truth is so well fixed in the minds\nof the surrounding families, that he is considered the rightful property\nof some one or other of their daughters.",
        "\"My dear Mr. Bennet,\" said his lady to him one day, \"have you heard that\nNetherfield Park is let at last?\"",
    ];
    assert_eq!(
        docs,
        want.iter()
            .map(|t| Doc::Text(t.to_string()))
            .collect::<Vec<_>>()
    );
    let whole = read_file(
        &fixture("paragraphs.txt"),
        &spec.clone().unit(TextUnit::File),
        Kind::Pretrain,
    )
    .unwrap();
    assert_eq!(
        whole,
        vec![Doc::Text(
            std::fs::read_to_string(fixture("paragraphs.txt")).unwrap()
        )]
    );
}

#[test]
fn folders_list_data_files_in_name_order_and_skip_the_rest() {
    let files = local_files(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/corpus"
    )))
    .unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "emma.txt",
            "mansfieldpark.txt",
            "northangerabbey.txt",
            "persuasion.txt",
            "prideprejudice.txt",
            "sensesensibility.txt"
        ]
    );
}

#[test]
fn jsonl_messages_and_sharegpt_turns_become_chats() {
    let docs = read_file(&fixture("chats.jsonl"), &SourceSpec::new("x"), Kind::Sft).unwrap();
    assert_eq!(docs.len(), 4);
    assert_eq!(
        docs[2],
        Doc::Chat(vec![
            json!({"role": "user", "content": "Say hello."}),
            json!({"role": "assistant", "content": "Hello!"})
        ])
    );
    let Doc::Chat(m) = &docs[1] else {
        panic!("{:?}", docs[1])
    };
    assert_eq!(m.len(), 5);
    assert_eq!(m[0]["role"], "system");
}

#[test]
fn two_fields_become_a_user_assistant_chat() {
    let docs = read_file(
        &fixture("cosmo.jsonl"),
        &SourceSpec::new("x").field("prompt+text"),
        Kind::Pretrain,
    )
    .unwrap();
    assert_eq!(
        docs[0],
        Doc::Chat(vec![
            json!({"role": "user", "content": "Write a sentence about rivers."}),
            json!({"role": "assistant", "content": "Rivers carry water from the hills down to the sea."}),
        ])
    );
    // The same rows read as plain text take the `text` field alone.
    let plain = read_file(
        &fixture("cosmo.jsonl"),
        &SourceSpec::new("x"),
        Kind::Pretrain,
    )
    .unwrap();
    assert_eq!(
        plain[1],
        Doc::Text("Bread is baked from flour, water, salt and yeast.".into())
    );
    // A JSON list of rows (alpaca layout) works the same way.
    let alpaca = read_file(
        &fixture("alpaca.json"),
        &SourceSpec::new("x").field("instruction+output"),
        Kind::Sft,
    )
    .unwrap();
    assert_eq!(alpaca.len(), 2);
    assert_eq!(
        alpaca[1],
        Doc::Chat(vec![
            json!({"role": "user", "content": "Add two and two."}),
            json!({"role": "assistant", "content": "Four."})
        ])
    );
}

#[test]
fn dpo_rows_in_three_layouts() {
    let docs = read_file(&fixture("pairs.jsonl"), &SourceSpec::new("x"), Kind::Dpo).unwrap();
    let user = |q: &str| vec![json!({"role": "user", "content": q})];
    assert_eq!(
        docs,
        vec![
            Doc::Pair {
                prompt: user("Is the sea salty?"),
                chosen: "Yes, sea water holds dissolved salts.".into(),
                rejected: "No.".into()
            },
            Doc::Pair {
                prompt: user("Name a planet."),
                chosen: "Mars.".into(),
                rejected: "The Moon.".into()
            },
            Doc::Pair {
                prompt: user("Spell cat."),
                chosen: "C-A-T.".into(),
                rejected: "K-A-T.".into()
            },
        ]
    );
}

#[test]
fn parquet_rows_are_read_like_json_rows() {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train-00000-of-00001.parquet");
    let schema = Arc::new(
        parse_message_type("message schema { REQUIRED INT64 id; REQUIRED BYTE_ARRAY prompt (UTF8); REQUIRED BYTE_ARRAY text (UTF8); }").unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(&path).unwrap(), schema, props).unwrap();
    let prompts = ["Say one.", "Say two.", "Say three."];
    let texts = ["One.", "Two.", "Three — 3."];
    let mut rg = w.next_row_group().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<Int64Type>()
        .write_batch(&[1, 2, 3], None, None)
        .unwrap();
    col.close().unwrap();
    for values in [&prompts, &texts] {
        let mut col = rg.next_column().unwrap().unwrap();
        let v: Vec<ByteArray> = values.iter().map(|s| ByteArray::from(*s)).collect();
        col.typed::<ByteArrayType>()
            .write_batch(&v, None, None)
            .unwrap();
        col.close().unwrap();
    }
    rg.close().unwrap();
    w.close().unwrap();

    let docs = read_file(&path, &SourceSpec::new("x"), Kind::Pretrain).unwrap();
    assert_eq!(
        docs,
        texts
            .iter()
            .map(|t| Doc::Text(t.to_string()))
            .collect::<Vec<_>>()
    );
    let chats = read_file(&path, &SourceSpec::new("x").field("prompt+text"), Kind::Sft).unwrap();
    assert_eq!(
        chats[2],
        Doc::Chat(vec![
            json!({"role": "user", "content": "Say three."}),
            json!({"role": "assistant", "content": "Three — 3."})
        ])
    );
    let e = read_file(&path, &SourceSpec::new("x").field("body"), Kind::Pretrain).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("row 0") && msg.contains("`body` is absent") && msg.contains("`prompt`"),
        "{msg}"
    );
}
