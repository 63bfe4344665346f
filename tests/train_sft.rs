//! SFT: chats in the three layouts (messages, ShareGPT, Alpaca) are rendered with the Doge chat
//! template, exactly the assistant's tokens and their end-of-turn token carry loss (checked against
//! hand-written renderings, spec section 7.5), packing puts no loss across conversations, and the
//! loop's SFT loss is the mean negative log-likelihood of exactly those tokens.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use doge::checkpoint::Checkpoint;
use doge::data::hub::HubOptions;
use doge::data::tokenizer::{train_bpe, TrainOptions};
use doge::data::{
    prepare, DataSpec, DogeTokenizer, Kind, PrepareOptions, SourceSpec, TokenDataset,
};
use doge::model::doge::IGNORE_INDEX;
use doge::model::presets::DOGE_TINY;
use doge::score::score_sequences;
use doge::train::optimizer::AdamWConfig;
use doge::train::pretrain::{row_labels, StageObserver, StageSettings};
use doge::train::rows::TokenRows;
use doge::train::schedule::Schedule;
use doge::train::trainer::Objective;

const SYSTEM_HEADER: &str = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\nCutting Knowledge Date: December 2024\nToday Date: December 2024\n";

/// A small byte-level BPE with the Doge specials and chat template, trained on the quick start's
/// chat data.
fn tokenizer(dir: &Path) -> DogeTokenizer {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/chat/sft.jsonl"),
    )
    .unwrap();
    train_bpe(
        text.lines().take(200),
        &TrainOptions {
            vocab_size: 600,
            min_frequency: 0,
        },
        &dir.join("tok"),
    )
    .unwrap()
}

fn prepared(
    dir: &Path,
    tok: &DogeTokenizer,
    rows: &str,
    seq_len: usize,
    packing: bool,
) -> TokenDataset {
    let file = dir.join(format!("chats-{seq_len}-{packing}.jsonl"));
    std::fs::write(&file, rows).unwrap();
    let mut spec = DataSpec::pretrain(vec![SourceSpec::new(file.display().to_string())], seq_len);
    spec.kind = Kind::Sft;
    spec.test_examples = 0;
    spec.packing = packing;
    let opts = PrepareOptions {
        cache_root: dir.join("cache"),
        hub: HubOptions {
            offline: true,
            cache_dir: dir.join("hub"),
            endpoint: None,
        },
        progress: false,
        memory: doge::data::prepare::DEFAULT_MEMORY,
        threads: None,
        piece_bytes: doge::data::prepare::default_piece_bytes(),
        delete_raw: false,
    };
    TokenDataset::open(&prepare(&spec, tok, &opts).unwrap()).unwrap()
}

/// The labelled stretches of a row (labels are predicted from position 1 on), decoded.
fn labelled_runs(tok: &DogeTokenizer, row: &[u32], labels: &[i64]) -> Vec<String> {
    let mut runs = Vec::new();
    let mut cur = Vec::new();
    for j in 1..row.len() {
        if labels[j] != IGNORE_INDEX {
            assert_eq!(labels[j], row[j] as i64, "a label is its own token");
            cur.push(row[j]);
        } else if !cur.is_empty() {
            runs.push(tok.decode(&cur, false).unwrap());
            cur.clear();
        }
    }
    if !cur.is_empty() {
        runs.push(tok.decode(&cur, false).unwrap());
    }
    runs
}

const CHATS: &str = r#"{"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another one?"}, {"role": "assistant", "content": "Green."}]}
{"system": "Be kind.", "conversations": [{"from": "human", "value": "Say hello."}, {"from": "gpt", "value": "Hello!"}]}
{"instruction": "Spell cat.", "input": "Use capitals.", "output": "C-A-T."}
"#;

#[test]
fn exactly_the_assistant_tokens_and_their_end_token_carry_loss() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let ds = prepared(dir.path(), &tok, CHATS, 200, false);
    assert_eq!(ds.num_train_rows(), 3);
    // Hand-written from the template (spec 7.5): every turn ends `<|end_of_text|>\n\n`; the data
    // pipeline appends one more eos to each document.
    let want: Vec<(String, Vec<&str>)> = vec![
        (
            format!("{SYSTEM_HEADER}Answer briefly.<|end_of_text|>\n\n<|start_header_id|>user<|end_header_id|>\nName a colour.<|end_of_text|>\n\n<|start_header_id|>assistant<|end_header_id|>\nBlue.<|end_of_text|>\n\n<|start_header_id|>user<|end_header_id|>\nAnother one?<|end_of_text|>\n\n<|start_header_id|>assistant<|end_header_id|>\nGreen.<|end_of_text|>\n\n<|end_of_text|>"),
            vec!["Blue.<|end_of_text|>", "Green.<|end_of_text|>"],
        ),
        (
            format!("{SYSTEM_HEADER}Be kind.<|end_of_text|>\n\n<|start_header_id|>user<|end_header_id|>\nSay hello.<|end_of_text|>\n\n<|start_header_id|>assistant<|end_header_id|>\nHello!<|end_of_text|>\n\n<|end_of_text|>"),
            vec!["Hello!<|end_of_text|>"],
        ),
        (
            format!("{SYSTEM_HEADER}<|end_of_text|>\n\n<|start_header_id|>user<|end_header_id|>\nSpell cat.\nUse capitals.<|end_of_text|>\n\n<|start_header_id|>assistant<|end_header_id|>\nC-A-T.<|end_of_text|>\n\n<|end_of_text|>"),
            vec!["C-A-T.<|end_of_text|>"],
        ),
    ];
    let mut got: Vec<(String, Vec<String>)> = (0..3)
        .map(|i| {
            let row = ds.train_row(i);
            let len = ds.train_len(i);
            let labels = row_labels(&row, len, ds.train_mask(i).as_deref());
            // Padding after the document carries no loss.
            assert!(labels[len..].iter().all(|&l| l == IGNORE_INDEX));
            (
                tok.decode(&row[..len], false).unwrap(),
                labelled_runs(&tok, &row, &labels),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, Vec<String>)> = want
        .into_iter()
        .map(|(t, r)| (t, r.into_iter().map(String::from).collect()))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

/// Twelve one-turn chats as `messages` rows, `{k}` in the texts replaced by 0..12.
fn counting_chats(user: &str, assistant: &str) -> String {
    (0..12)
        .map(|k| {
            let turn = |role: &str, text: &str| {
                serde_json::json!({"role": role, "content": text.replace("{k}", &k.to_string())})
            };
            let row = serde_json::json!({"messages": [turn("user", user), turn("assistant", assistant)]});
            format!("{row}\n")
        })
        .collect()
}

#[test]
fn packed_rows_put_no_loss_across_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let rows = counting_chats("Count to {k}.", "Done {k}.");
    let ds = prepared(dir.path(), &tok, &rows, 48, true);
    assert!(ds.num_train_rows() >= 4, "{} rows", ds.num_train_rows());
    let answers: Vec<String> = (0..12)
        .map(|k| format!("Done {k}.<|end_of_text|>"))
        .collect();
    let mut labelled = 0;
    for i in 0..ds.num_train_rows() {
        let row = ds.train_row(i);
        let labels = row_labels(&row, ds.train_len(i), ds.train_mask(i).as_deref());
        for j in 1..row.len() {
            if labels[j] != IGNORE_INDEX {
                // The next conversation's first token is never predicted from the previous one.
                assert_ne!(row[j], tok.bos_id, "row {i} position {j}: loss on <bos>");
                labelled += 1;
            }
        }
        // Every labelled stretch lies inside one answer (a row may cut an answer in two).
        for run in labelled_runs(&tok, &row, &labels) {
            assert!(
                answers.iter().any(|a| a.contains(&run)),
                "row {i}: labelled {run:?} is not (part of) an assistant answer"
            );
        }
    }
    assert!(labelled > 0);
}

/// Packed conversations attend only inside themselves: the loss of packed rows equals the NLL of
/// every labelled token scored with only its own conversation's earlier tokens (each stretch of a
/// row from one `<bos>` to the next, scored alone by `score_sequences`).
#[test]
fn packed_conversations_do_not_attend_to_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let rows = counting_chats("Count to {k} and stop.", "Done {k}, stopped.");
    let ds = prepared(dir.path(), &tok, &rows, 256, true);
    assert_eq!(ds.document_separator(), Some(tok.bos_id));
    let mut cfg = DOGE_TINY.config();
    cfg.vocab_size = 600;
    cfg.num_hidden_layers = 2;
    // Weights large enough that a token's prediction depends on what it attends to (at the
    // default 0.02 the attention output is too small for the check below to tell).
    cfg.initializer_range = 0.3;
    let model = Checkpoint::init(&cfg, 11, DType::F32, &Device::Cpu)
        .unwrap()
        .model()
        .unwrap();

    let n = ds.num_train_rows().min(3);
    let (mut sum, mut count, mut documents) = (0f64, 0usize, 0);
    for i in 0..n {
        let row = ds.train_row(i);
        let labels = row_labels(&row, ds.train_len(i), ds.train_mask(i).as_deref());
        let mut starts: Vec<usize> = (1..row.len()).filter(|&j| row[j] == tok.bos_id).collect();
        starts.insert(0, 0);
        starts.push(row.len());
        for w in starts.windows(2) {
            let (a, b) = (w[0], w[1]);
            documents += 1;
            if b - a < 2 {
                continue;
            }
            let score = &score_sequences(&model, &[row[a..b].to_vec()], 1).unwrap()[0];
            for (k, lp) in score.token_logprobs.iter().enumerate() {
                if labels[a + k + 1] != IGNORE_INDEX {
                    sum -= *lp as f64;
                    count += 1;
                }
            }
        }
    }
    assert!(documents > n, "the rows hold several conversations each");
    let want = sum / count as f64;
    let objective = doge::train::sft::objective(&ds).unwrap();
    let got = objective
        .micro_batch(&model, 0, n)
        .unwrap()
        .loss
        .to_scalar::<f32>()
        .unwrap() as f64;
    assert!(
        (got - want).abs() < 1e-5 * want,
        "packed loss {got} vs conversations scored alone {want}"
    );
    // The same rows with attention across conversations score differently: the check above
    // would fail without the document mask.
    let ids: Vec<u32> = (0..n).flat_map(|i| ds.train_row(i)).collect();
    let labels: Vec<i64> = (0..n)
        .flat_map(|i| {
            row_labels(
                &ds.train_row(i),
                ds.train_len(i),
                ds.train_mask(i).as_deref(),
            )
        })
        .collect();
    let width = ds.row_len();
    let crossing = model
        .loss(
            &Tensor::from_vec(ids, (n, width), &Device::Cpu).unwrap(),
            &Tensor::from_vec(labels, (n, width), &Device::Cpu).unwrap(),
        )
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    assert!(
        (crossing - want).abs() > 1e-3 * want,
        "attention across conversations changed nothing ({crossing} vs {want}): the test cannot tell"
    );
}

struct Recorder(Vec<(u64, String, f64)>);

impl StageObserver for Recorder {
    fn metrics(&mut self, step: u64, values: &[(&str, f64)]) -> anyhow::Result<()> {
        self.0
            .extend(values.iter().map(|(k, v)| (step, k.to_string(), *v)));
        Ok(())
    }
    fn checkpoint(&mut self, _dir: &Path, _step: u64) -> anyhow::Result<()> {
        Ok(())
    }
    fn println(&mut self, _line: &str) {}
}

#[test]
fn the_sft_loss_is_the_mean_nll_of_the_assistant_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let ds = prepared(dir.path(), &tok, CHATS, 200, false);
    let mut cfg = DOGE_TINY.config();
    cfg.vocab_size = 600;
    cfg.num_hidden_layers = 2;
    let start = Checkpoint::init(&cfg, 7, DType::F32, &Device::Cpu).unwrap();

    // Independently of the loop: score each row with `score_sequences` and average -log p over
    // the positions whose mask byte is 1.
    let model = start.model().unwrap();
    let (mut sum, mut count) = (0f64, 0usize);
    for i in 0..3 {
        let row = ds.train_row(i);
        let len = ds.train_len(i);
        let mask = ds.train_mask(i).unwrap();
        let score = &score_sequences(&model, &[row[..len].to_vec()], 1).unwrap()[0];
        // token_logprobs[k] is log p(token k + 1 | tokens ..= k).
        for (lp, &m) in score.token_logprobs.iter().zip(&mask[1..len]) {
            if m == 1 {
                sum -= *lp as f64;
                count += 1;
            }
        }
    }
    let want = sum / count as f64;

    let s = StageSettings {
        adamw: AdamWConfig {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        },
        schedule: Schedule::Constant { warmup_steps: 0 },
        total_steps: 12,
        batch_size: 3,
        grad_accum: 1,
        grad_clip: Some(1.0),
        log_every: 1,
        eval_every: 0,
        save_every: 0,
        keep_last: 1,
        max_bad_steps: 3,
        decay_all: false,
        config_hash: "sft-test".into(),
    };
    let mut rec = Recorder(Vec::new());
    let stop = AtomicBool::new(false);
    doge::train::sft::train(start, &ds, &s, &dir.path().join("stage"), &mut rec, &stop).unwrap();
    let losses: Vec<f64> = rec
        .0
        .iter()
        .filter(|(_, k, _)| k == "loss")
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(losses.len(), 12);
    assert!(
        (losses[0] - want).abs() < 1e-5 * want,
        "first SFT loss {} vs {want} from score_sequences",
        losses[0]
    );
    assert!(
        losses[11] < 0.5 * losses[0],
        "SFT does not learn: {losses:?}"
    );
}

#[test]
fn text_rows_are_refused_for_sft() {
    let rows = doge::train::rows::MemoryRows {
        train: vec![vec![1, 2, 3]],
        test: vec![],
    };
    let err = doge::train::sft::objective(&rows)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no assistant masks"), "{err}");
    assert_eq!(rows.row_len(), 3);
}

/// The real chat demo sets in ../shared (LLaMA-Factory's Alpaca and ShareGPT-with-preferences
/// files) read with no field named; skipped when ../shared is absent.
#[test]
fn shared_alpaca_and_dpo_demo_files_read_in_their_layouts() {
    use doge::data::docs::Doc;
    use doge::data::sources::read_file;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/chat");
    if !dir.join("alpaca_en_demo.json").exists() {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    }
    let alpaca = dir.join("alpaca_en_demo.json");
    let docs = read_file(
        &alpaca,
        &SourceSpec::new(alpaca.display().to_string()),
        Kind::Sft,
    )
    .unwrap();
    assert_eq!(docs.len(), 999);
    let Doc::Chat(first) = &docs[0] else {
        panic!("{:?}", docs[0])
    };
    assert_eq!(first[0]["content"], "Describe a process of making crepes.");
    assert_eq!(first[1]["role"], "assistant");

    let dpo = dir.join("dpo_en_demo.json");
    let docs = read_file(&dpo, &SourceSpec::new(dpo.display().to_string()), Kind::Dpo).unwrap();
    assert_eq!(docs.len(), 300);
    let Doc::Pair {
        prompt,
        chosen,
        rejected,
    } = &docs[0]
    else {
        panic!("{:?}", docs[0])
    };
    assert_eq!(prompt[0]["role"], "user");
    assert!(prompt[0]["content"].as_str().unwrap().contains("Angela"));
    assert!(chosen.starts_with("That sounds like a fun and engaging idea!"));
    assert_ne!(chosen, rejected);
}
