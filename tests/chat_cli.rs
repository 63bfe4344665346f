//! `doge chat` driven through stdin: it renders the conversation with the chat template (checked
//! against a hand-written rendering, spec section 7.5), answers each line with what `generate`
//! gives for that prompt, keeps the conversation, forgets it on `/reset`, and exits with status 0
//! on `/exit` or at the end of input.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use candle_core::{DType, Device};
use doge::checkpoint::Checkpoint;
use doge::data::tokenizer::{train_bpe, TrainOptions};
use doge::data::DogeTokenizer;
use doge::generate::{generate, GenerationSettings};
use doge::model::presets::DOGE_TINY;

/// A random 2-layer model with a 600-token tokenizer (Doge specials and chat template) beside it.
fn model_dir(dir: &Path) -> DogeTokenizer {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/chat/sft.jsonl"),
    )
    .unwrap();
    let tok = train_bpe(
        text.lines().take(100),
        &TrainOptions {
            vocab_size: 600,
            min_frequency: 0,
        },
        dir,
    )
    .unwrap();
    let mut cfg = DOGE_TINY.config();
    cfg.vocab_size = 600;
    cfg.num_hidden_layers = 2;
    Checkpoint::init(&cfg, 11, DType::F32, &Device::Cpu)
        .unwrap()
        .save(dir, DType::F32)
        .unwrap();
    tok
}

fn chat(dir: &Path, extra: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_doge"))
        .arg("chat")
        .arg("--model")
        .arg(dir)
        .args(["--greedy", "--max-new-tokens", "6", "--show-prompt"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refused model exits before reading its input: a broken pipe here is not the test's failure.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The prompts the chat printed with `--show-prompt`.
fn prompts(stderr: &str) -> Vec<String> {
    stderr
        .split("--- prompt ---\n")
        .skip(1)
        .map(|p| p.split("\n--- end prompt ---").next().unwrap().to_string())
        .collect()
}

const HEAD: &str = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\nCutting Knowledge Date: December 2024\nToday Date: December 2024\n";

#[test]
fn chat_answers_keeps_the_conversation_resets_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let tok = model_dir(dir.path());
    let (code, stdout, stderr) = chat(
        dir.path(),
        &["--system", "Be brief."],
        "Hello there\nWhat next?\n/reset\nAgain\n/exit\nnever read\n",
    );
    assert_eq!(code, 0, "{stderr}");
    let p = prompts(&stderr);
    assert_eq!(p.len(), 3, "{stderr}");
    let first = format!("{HEAD}Be brief.<|end_of_text|>\n\n<|start_header_id|>user<|end_header_id|>\nHello there<|end_of_text|>\n\n<|start_header_id|>assistant<|end_header_id|>\n");
    assert_eq!(p[0], first);
    // Each reply is greedy generation from its prompt, streamed, one reply per turn.
    let model = Checkpoint::load(dir.path(), DType::F32, &Device::Cpu)
        .unwrap()
        .model()
        .unwrap();
    let settings = GenerationSettings {
        max_new_tokens: 6,
        sampling: None,
        repetition_penalty: 1.0,
        eos_token_id: Some(tok.eos_id),
    };
    let reply = |prompt: &str| {
        let ids = tok.encode(prompt, false).unwrap();
        let new = generate(&model, &ids, &settings, |_| Ok(())).unwrap();
        tok.decode(&new, true).unwrap()
    };
    let replies: Vec<String> = p.iter().map(|q| reply(q)).collect();
    assert_eq!(
        stdout,
        format!("{}\n{}\n{}\n", replies[0], replies[1], replies[2])
    );
    // The second prompt holds the first exchange, the reply as the model wrote it.
    assert_eq!(
        p[1],
        format!(
            "{}{}<|end_of_text|>\n\n<|start_header_id|>user<|end_header_id|>\nWhat next?<|end_of_text|>\n\n<|start_header_id|>assistant<|end_header_id|>\n",
            first,
            replies[0].trim()
        )
    );
    // After /reset only the system message remains.
    assert_eq!(p[2], format!("{HEAD}Be brief.<|end_of_text|>\n\n<|start_header_id|>user<|end_header_id|>\nAgain<|end_of_text|>\n\n<|start_header_id|>assistant<|end_header_id|>\n"));
    assert!(!stderr.contains("never read"));
}

#[test]
fn end_of_input_exits_cleanly_and_sampling_flags_work() {
    let dir = tempfile::tempdir().unwrap();
    model_dir(dir.path());
    let (code, stdout, stderr) = chat(
        dir.path(),
        &[
            "--temperature",
            "0.8",
            "--top-p",
            "0.9",
            "--repetition-penalty",
            "1.0",
        ],
        "Hi\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.ends_with('\n'), "{stdout:?}");
    assert_eq!(prompts(&stderr).len(), 1, "{stderr}");
    // Without a system message the template still writes its system header, with empty text.
    assert!(prompts(&stderr)[0]
        .starts_with(&format!("{HEAD}<|end_of_text|>\n\n<|start_header_id|>user")));
}

#[test]
fn a_model_without_a_tokenizer_is_refused_with_the_reason() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/doge-tiny/dense");
    let (code, _, stderr) = chat(&fixture, &[], "Hi\n");
    assert_eq!(code, 1);
    assert!(stderr.contains("needs the model's tokenizer"), "{stderr}");
}
