//! Hub downloads against a local stand-in for the Hugging Face hub (no network here or in CI).
//!
//! The stand-in speaks the part of the hub's HTTP protocol that clients use, as the hub documents
//! and serves it: `GET /api/{models,datasets}/{id}/revision/{rev}` answers the repository's commit
//! (`sha`) and file list (`siblings[].rfilename`); `GET [datasets/]{id}/resolve/{rev}/{path}`
//! answers the file, honouring `Range` (206 with `Content-Range`), with its `ETag` and the
//! `X-Repo-Commit` header; with `?blobs=true` the list gives sizes and LFS hashes. Checked: files arrive byte for byte in the cache layout
//! `huggingface_hub` uses, `HF_ENDPOINT` is honoured by the binary, and offline mode then reads the
//! cache without a single request.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use doge::data::hub::{dataset_files, model_file, HubOptions};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Files by repository (`datasets/owner/name` or `owner/name`), then path in the repository.
type Repos = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// Requests served: target and `Range` header.
type Log = Mutex<Vec<(String, Option<String>)>>;

struct MockHub {
    url: String,
    /// Every request's target and `Range` header.
    requests: Arc<Log>,
}

impl MockHub {
    fn start(repos: Repos) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (log, repos) = (requests.clone(), Arc::new(repos));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, repos) = (log.clone(), repos.clone());
                std::thread::spawn(move || serve(stream, &repos, &log));
            }
        });
        MockHub { url, requests }
    }

    /// Online hub options on this stand-in, with the hub cache under `dir`.
    fn options(&self, dir: &Path) -> HubOptions {
        HubOptions {
            offline: false,
            cache_dir: dir.join("hub"),
            endpoint: Some(self.url.clone()),
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }

    fn ranges(&self) -> Vec<(String, Option<String>)> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, repos: &Repos, log: &Log) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut range = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("range") {
                    range = Some(v.trim().to_string());
                }
            }
        }
        log.lock().unwrap().push((target.clone(), range.clone()));
        let (status, headers, body) = respond(&target, range.as_deref(), repos);
        let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            head += &format!("{k}: {v}\r\n");
        }
        head += "\r\n";
        if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&body).is_err() {
            return;
        }
        // Keep-alive: the client may send its next request (they have no body) on this stream.
        let _ = stream.flush();
    }
}

fn respond(
    target: &str,
    range: Option<&str>,
    repos: &Repos,
) -> (String, Vec<(String, String)>, Vec<u8>) {
    let not_found = || ("404 Not Found".to_string(), vec![], b"{}".to_vec());
    if let Some(rest) = target.strip_prefix("/api/") {
        // {models|datasets}/{owner}/{name}/revision/{rev}
        let Some((kind_and_id, _rev)) = rest.split_once("/revision/") else {
            return not_found();
        };
        let key = match kind_and_id.split_once('/') {
            Some(("datasets", id)) => format!("datasets/{id}"),
            Some(("models", id)) => id.to_string(),
            _ => return not_found(),
        };
        let Some(files) = repos.get(&key) else {
            return not_found();
        };
        // `?blobs=true` adds sizes and, for files in Git LFS (here: Parquet), their sha256.
        let blobs = target.contains("blobs=true");
        let siblings: Vec<serde_json::Value> = files
            .iter()
            .map(|(f, bytes)| match (blobs, f.ends_with(".parquet")) {
                (true, true) => serde_json::json!({ "rfilename": f, "size": bytes.len(),
                    "lfs": { "sha256": sha256_hex(bytes), "size": bytes.len(), "pointerSize": 134 } }),
                (true, false) => serde_json::json!({ "rfilename": f, "size": bytes.len() }),
                _ => serde_json::json!({ "rfilename": f }),
            })
            .collect();
        let body = serde_json::json!({ "id": key, "sha": COMMIT, "siblings": siblings });
        return (
            "200 OK".into(),
            vec![("Content-Type".into(), "application/json".into())],
            body.to_string().into_bytes(),
        );
    }
    // /{repo}/resolve/{rev}/{path}
    let Some((repo, rest)) = target.trim_start_matches('/').split_once("/resolve/") else {
        return not_found();
    };
    let Some((_rev, path)) = rest.split_once('/') else {
        return not_found();
    };
    let Some(bytes) = repos.get(repo).and_then(|files| files.get(path)) else {
        return not_found();
    };
    let size = bytes.len();
    let etag = format!("\"{}\"", sha256_hex(bytes));
    let mut headers = vec![
        ("ETag".to_string(), etag),
        ("X-Repo-Commit".to_string(), COMMIT.to_string()),
    ];
    let (start, end) = match range.and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => {
            let (a, b) = r.split_once('-').unwrap();
            let a: usize = a.parse().unwrap();
            let b: usize = if b.is_empty() {
                size - 1
            } else {
                b.parse::<usize>().unwrap().min(size - 1)
            };
            (a, b)
        }
        None => return ("200 OK".into(), headers, bytes.clone()),
    };
    headers.push((
        "Content-Range".to_string(),
        format!("bytes {start}-{end}/{size}"),
    ));
    (
        "206 Partial Content".into(),
        headers,
        bytes[start..=end].to_vec(),
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn arc_rows() -> Vec<u8> {
    std::fs::read(fixtures().join("eval/rows/arc_easy/validation.jsonl")).unwrap()
}

/// A dataset repository laid out as allenai/ai2_arc is (one folder per configuration, files named
/// after their split), and a tokenizer repository.
fn repos() -> Repos {
    let mut arc = BTreeMap::new();
    arc.insert(
        "ARC-Easy/validation-00000-of-00001.jsonl".to_string(),
        arc_rows(),
    );
    arc.insert(
        "ARC-Easy/train-00000-of-00001.jsonl".to_string(),
        b"{}\n".to_vec(),
    );
    arc.insert(
        "ARC-Challenge/validation-00000-of-00001.jsonl".to_string(),
        b"{}\n".to_vec(),
    );
    arc.insert("README.md".to_string(), b"# ai2_arc\n".to_vec());
    let mut tok = BTreeMap::new();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        tok.insert(
            f.to_string(),
            std::fs::read(fixtures().join("eval/tokenizer-256").join(f)).unwrap(),
        );
    }
    let mut model = tok.clone();
    for f in ["config.json", "model.safetensors"] {
        model.insert(
            f.to_string(),
            std::fs::read(fixtures().join("doge-tiny/dense").join(f)).unwrap(),
        );
    }
    model.insert("pytorch_model.bin".to_string(), b"not fetched".to_vec());
    let mut repos = Repos::new();
    repos.insert("datasets/allenai/ai2_arc".to_string(), arc);
    repos.insert("owner/tiny-tokenizer".to_string(), tok);
    repos.insert("owner/doge-tiny".to_string(), model);
    repos
}

/// The tiny reference model and its tokenizer as a local checkpoint directory.
fn local_model(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("doge-tiny/dense").join(f), model.join(f)).unwrap();
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixtures().join("eval/tokenizer-256").join(f), model.join(f)).unwrap();
    }
    model
}

/// Runs the doge binary in `dir` against the stand-in hub, with the hub cache in `dir/hf`.
fn doge(dir: &Path, hub: &MockHub, offline: bool, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_doge"));
    c.current_dir(dir)
        .env("HF_ENDPOINT", &hub.url)
        .env("HF_HOME", dir.join("hf"))
        .args(args);
    if offline {
        c.env("HF_HUB_OFFLINE", "1");
    } else {
        c.env_remove("HF_HUB_OFFLINE");
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "doge {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn dataset_and_model_files_download_into_the_cache_then_work_offline() {
    let hub = MockHub::start(repos());
    let cache = tempfile::tempdir().unwrap();
    let online = hub.options(cache.path());
    let files = dataset_files(
        "allenai/ai2_arc",
        None,
        Some("ARC-Easy"),
        "validation",
        &online,
    )
    .unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), arc_rows());
    // huggingface_hub's layout: refs/main holds the commit, snapshots/<commit>/<path>.
    let repo_dir = cache.path().join("hub/datasets--allenai--ai2_arc");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    assert_eq!(
        files[0],
        repo_dir.join(format!(
            "snapshots/{COMMIT}/ARC-Easy/validation-00000-of-00001.jsonl"
        ))
    );
    let tok = model_file("owner/tiny-tokenizer", None, "tokenizer.json", &online).unwrap();
    assert_eq!(
        std::fs::read(&tok).unwrap(),
        std::fs::read(fixtures().join("eval/tokenizer-256/tokenizer.json")).unwrap()
    );
    let seen = hub.requests();
    assert!(
        seen.iter()
            .any(|r| r == "/api/datasets/allenai/ai2_arc/revision/main"),
        "{seen:?}"
    );
    // Only the split asked for was fetched.
    assert!(!seen.iter().any(|r| r.contains("train-0000")), "{seen:?}");

    let offline = HubOptions {
        offline: true,
        ..online
    };
    let again = dataset_files(
        "allenai/ai2_arc",
        None,
        Some("ARC-Easy"),
        "validation",
        &offline,
    )
    .unwrap();
    assert_eq!(again, files);
    assert_eq!(
        model_file("owner/tiny-tokenizer", None, "tokenizer.json", &offline).unwrap(),
        tok
    );
    assert_eq!(hub.requests().len(), seen.len(), "offline made no request");
}

#[test]
fn a_missing_repository_names_it_and_the_way_out() {
    let hub = MockHub::start(repos());
    let cache = tempfile::tempdir().unwrap();
    let online = hub.options(cache.path());
    let e = dataset_files("nobody/nothing", None, None, "validation", &online).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("nobody/nothing"), "{msg}");
    assert!(msg.contains("HF_HUB_OFFLINE"), "{msg}");
}

/// `doge eval` reads a task from the hub through HF_ENDPOINT and scores it exactly as from the
/// same rows on disk.
#[test]
fn eval_reads_a_hub_task_through_hf_endpoint() {
    let hub = MockHub::start(repos());
    let dir = tempfile::tempdir().unwrap();
    local_model(dir.path());
    let local = dir.path().join("arc.jsonl");
    std::fs::write(&local, arc_rows()).unwrap();
    let run = |task: String, samples: &str| {
        let args = ["eval", "--model", "model", "--tasks", &task, "--shots", "0"];
        let tail = ["--log-samples", samples, "--no-registry", "--quiet"];
        doge(dir.path(), &hub, false, &[&args[..], &tail[..]].concat());
        logliks(&dir.path().join(samples))
    };
    let from_hub = run(
        "arc_easy=hub:allenai/ai2_arc:ARC-Easy".to_string(),
        "hub.jsonl",
    );
    let from_disk = run(format!("arc_easy={}", local.display()), "disk.jsonl");
    assert_eq!(from_hub.len(), 3);
    assert_eq!(from_hub, from_disk);
    assert!(hub
        .requests()
        .iter()
        .any(|r| r.ends_with("ARC-Easy/validation-00000-of-00001.jsonl")));
}

fn logliks(samples: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(samples)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loglikelihoods"].clone())
        .collect()
}

/// `--model owner/name` downloads the checkpoint (config, safetensors, tokenizer; not the
/// `pytorch_model.bin` beside them) and evaluates exactly as the local copy; offline, the cache
/// serves it without a request.
#[test]
fn a_hub_model_evaluates_as_its_local_copy() {
    let hub = MockHub::start(repos());
    let dir = tempfile::tempdir().unwrap();
    local_model(dir.path());
    let rows = dir.path().join("arc.jsonl");
    std::fs::write(&rows, arc_rows()).unwrap();
    let task = format!("arc_easy={}", rows.display());
    let run = |model: &str, offline: bool, samples: &str| {
        let args = ["eval", "--model", model, "--tasks", &task, "--shots", "0"];
        let tail = ["--log-samples", samples, "--no-registry", "--quiet"];
        doge(dir.path(), &hub, offline, &[&args[..], &tail[..]].concat());
        logliks(&dir.path().join(samples))
    };
    let local = run("model", false, "local.jsonl");
    let online = run("owner/doge-tiny@main", false, "hub.jsonl");
    assert_eq!(online, local);
    let seen = hub.requests();
    assert!(
        seen.iter()
            .any(|r| r == "/owner/doge-tiny/resolve/main/model.safetensors"),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|r| r.contains("pytorch_model.bin")),
        "{seen:?}"
    );
    let offline = run("owner/doge-tiny", true, "offline.jsonl");
    assert_eq!(offline, local);
    assert_eq!(hub.requests().len(), seen.len(), "offline made no request");
}

const HUB_INIT: &str = r#"
name "hub-init"
seed 5
device "cpu"
registry "./registry"
model {
    init "INIT"
}
tokenizer "TOKENIZER"
data {
    source "./corpus.txt"
    seq-len 32
    test-examples 4
}
stage "pretrain" {
    lr 1e-3
    batch-size 2
    max-steps 3
    log-every 1
    eval-every 0
    save-every 3
}
"#;

/// An experiment whose `model.init` and `tokenizer` are hub ids trains exactly as one pointing at
/// a local copy of the same checkpoint: the same losses, step by step.
#[test]
fn an_experiment_starts_from_a_hub_checkpoint() {
    let hub = MockHub::start(repos());
    let dir = tempfile::tempdir().unwrap();
    local_model(dir.path());
    let text: String = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/corpus/persuasion.txt"),
    )
    .unwrap()
    .chars()
    .take(20_000)
    .collect();
    std::fs::write(dir.path().join("corpus.txt"), text).unwrap();
    let losses = |name: &str, init: &str, tokenizer: &str| {
        let exp = HUB_INIT
            .replace("hub-init", name)
            .replace("INIT", init)
            .replace("TOKENIZER", tokenizer);
        std::fs::write(dir.path().join(format!("{name}.kdl")), exp).unwrap();
        doge(
            dir.path(),
            &hub,
            false,
            &["exp", "run", &format!("{name}.kdl")],
        );
        let conn = rusqlite::Connection::open(dir.path().join("registry/doge.sqlite")).unwrap();
        let mut q = conn
            .prepare(
                "SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id \
                 WHERE r.experiment = ?1 AND m.name = 'loss' ORDER BY m.step",
            )
            .unwrap();
        q.query_map([name], |r| r.get::<_, f64>(0))
            .unwrap()
            .map(|v| v.unwrap())
            .collect::<Vec<f64>>()
    };
    let local = losses("from-disk", "./model", "./model");
    let hubbed = losses("from-hub", "owner/doge-tiny", "owner/doge-tiny");
    assert_eq!(local.len(), 3);
    assert_eq!(hubbed, local);
    // The lineage names the downloaded snapshot as the run's starting weights.
    let conn = rusqlite::Connection::open(dir.path().join("registry/doge.sqlite")).unwrap();
    let init: String = conn
        .query_row(
            "SELECT a.path FROM artifacts a JOIN runs r ON r.id = a.run_id \
             WHERE r.experiment = 'from-hub' AND a.kind = 'init'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        init.contains("models--owner--doge-tiny/snapshots/"),
        "{init}"
    );
}

const SMALLDOGE_SFT_EVAL: &str = r#"
stage "sft" {
    data {
        source "./chats.jsonl"
        seq-len 128
        packing #true
        test-examples 4
    }
    lr 1e-3
    batch-size 2
    max-steps 2
    log-every 1
    eval-every 0
    save-every 2
}
stage "dpo" {
    data {
        source "./pairs.jsonl"
        seq-len 128
        test-examples 4
    }
    lr 1e-4
    batch-size 2
    max-steps 2
    log-every 1
    eval-every 0
    save-every 2
    beta 0.1
}
stage "eval" {
    batch-size 4
    tasks "perplexity=./texts"
}
"#;

/// A SmallDoge remote-code checkpoint (variant B: no q/k norms, `A` per query head), with its
/// `auto_map` and remote `.py` files, made from a tokenizer trained here.
fn smalldoge_model(dir: &Path) -> (PathBuf, BTreeMap<String, Vec<u8>>) {
    use doge::data::tokenizer::{train_bpe, TrainOptions};
    let chats = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/chat/sft.jsonl"),
    )
    .unwrap();
    let tok = train_bpe(
        chats.lines().take(200),
        &TrainOptions {
            vocab_size: 600,
            min_frequency: 0,
        },
        &dir.join("tok"),
    )
    .unwrap();
    let cfg = doge::model::DogeConfig {
        vocab_size: tok.vocab_size(),
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        keep_window_size: 16,
        tie_word_embeddings: true,
        layout: doge::model::Layout::SmallDoge,
        auto_map: Some(serde_json::json!({
            "AutoConfig": "configuration_doge.DogeConfig",
            "AutoModelForCausalLM": "modeling_doge.DogeForCausalLM"
        })),
        ..doge::model::DogeConfig::default()
    };
    let mut ckpt = doge::checkpoint::Checkpoint::init(
        &cfg,
        9,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    for f in ["configuration_doge.py", "modeling_doge.py"] {
        ckpt.remote_code.insert(
            f.into(),
            format!("# {f}: stands in for the hub repo's code\n").into(),
        );
    }
    let model = dir.join("model-b");
    ckpt.save(&model, candle_core::DType::F32).unwrap();
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&model).unwrap() {
        let path = entry.unwrap().path();
        files.insert(
            path.file_name().unwrap().to_str().unwrap().to_string(),
            std::fs::read(&path).unwrap(),
        );
    }
    (model, files)
}

/// An experiment starting from a SmallDoge checkpoint pre-trains, fine-tunes (SFT, DPO) and evaluates in that
/// layout, from a local folder and from a hub id alike; each run records the layout, and every
/// checkpoint it writes is again a SmallDoge repo (auto_map and remote code beside the weights).
#[test]
fn an_experiment_trains_sfts_and_evaluates_a_smalldoge_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (model, files) = smalldoge_model(dir.path());
    let mut repos = Repos::new();
    repos.insert("SmallDoge/tiny-b".to_string(), files.clone());
    let hub = MockHub::start(repos);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text: String = std::fs::read_to_string(root.join("experiments/corpus/persuasion.txt"))
        .unwrap()
        .chars()
        .take(20_000)
        .collect();
    std::fs::write(dir.path().join("corpus.txt"), &text).unwrap();
    let chats: String = std::fs::read_to_string(root.join("experiments/chat/sft.jsonl"))
        .unwrap()
        .lines()
        .take(24)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("chats.jsonl"), chats).unwrap();
    let pairs: String = std::fs::read_to_string(root.join("experiments/chat/dpo.jsonl"))
        .unwrap()
        .lines()
        .take(16)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("pairs.jsonl"), pairs).unwrap();
    std::fs::create_dir_all(dir.path().join("texts")).unwrap();
    std::fs::write(dir.path().join("texts/austen.txt"), &text[..4000]).unwrap();

    let run = |name: &str, init: &str, extra: &str| {
        // HUB_INIT's pre-training stage, then `extra`.
        let exp = HUB_INIT
            .replace("hub-init", name)
            .replace("INIT", init)
            .replace("TOKENIZER", "./tok")
            + extra;
        std::fs::write(dir.path().join(format!("{name}.kdl")), exp).unwrap();
        doge(
            dir.path(),
            &hub,
            false,
            &["exp", "run", &format!("{name}.kdl")],
        );
    };
    run("b-local", "./model-b", SMALLDOGE_SFT_EVAL);
    run("b-hub", "SmallDoge/tiny-b", SMALLDOGE_SFT_EVAL);

    let conn = rusqlite::Connection::open(dir.path().join("registry/doge.sqlite")).unwrap();
    let losses = |exp: &str, stage: &str| -> Vec<f64> {
        let mut q = conn
            .prepare(
                "SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id \
                 WHERE r.experiment = ?1 AND r.stage = ?2 AND m.name = 'loss' ORDER BY m.step",
            )
            .unwrap();
        q.query_map([exp, stage], |r| r.get::<_, f64>(0))
            .unwrap()
            .map(|v| v.unwrap())
            .collect()
    };
    let local = losses("b-local", "pretrain");
    assert_eq!(local.len(), 3);
    assert_eq!(losses("b-hub", "pretrain"), local);
    assert_eq!(losses("b-local", "sft").len(), 2);
    assert_eq!(losses("b-hub", "sft"), losses("b-local", "sft"));
    assert_eq!(losses("b-local", "dpo").len(), 2);
    assert_eq!(losses("b-hub", "dpo"), losses("b-local", "dpo"));
    let bpb = |exp: &str| -> f64 {
        conn.query_row(
            "SELECT e.value FROM evals e JOIN runs r ON r.id = e.run_id \
             WHERE r.experiment = ?1 AND e.metric = 'bits_per_byte'",
            [exp],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(bpb("b-local").is_finite() && bpb("b-local") > 0.0);
    assert_eq!(bpb("b-hub"), bpb("b-local"));

    // Every run records the layout; `doge runs show` says it.
    let ids: Vec<String> = conn
        .prepare("SELECT id FROM runs ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(ids.len(), 8, "{ids:?}");
    for id in &ids {
        let out = doge(dir.path(), &hub, true, &["runs", "show", id]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("layout      smalldoge (variant B)")
                && text.contains("\"layout\": \"smalldoge\""),
            "{id}: {text}"
        );
    }

    // The fine-tuned checkpoint is a SmallDoge repo again, and loads as one.
    let sft_dir = std::fs::read_dir(dir.path().join("registry"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("b-local-")
        })
        .unwrap()
        .join("sft/checkpoint-00000002");
    for f in ["configuration_doge.py", "modeling_doge.py"] {
        assert_eq!(
            std::fs::read(sft_dir.join(f)).unwrap(),
            std::fs::read(model.join(f)).unwrap()
        );
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sft_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        saved["auto_map"]["AutoModelForCausalLM"],
        "modeling_doge.DogeForCausalLM"
    );
    let loaded = doge::checkpoint::Checkpoint::load(
        &sft_dir,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(loaded.config.layout, doge::model::Layout::SmallDoge);
    assert!(!loaded.tensors.keys().any(|k| k.contains("q_norm")));
}

/// smollm-corpus as the hub lays it out (one folder per subset, `train-NNNNN-of-NNNNN.parquet`,
/// its column names), plus finemath's `finemath-4plus`, in the seed's 7:2:1 mix (python-edu left
/// out: its contents are not in the repository).
fn smollm_repos() -> Repos {
    use parquet::basic::{Compression, ZstdLevel};
    let dir = tempfile::tempdir().unwrap();
    let words = [
        "the", "ocean", "tide", "rises", "when", "moon", "pulls", "water", "and",
    ];
    let text = |tag: &str, i: usize| {
        let n = 20 + (i * 7) % 30;
        let w: Vec<&str> = (0..n).map(|k| words[(i + k * 3) % words.len()]).collect();
        format!("{tag}{i} {}", w.join(" "))
    };
    let file = |columns: &[(&str, Vec<String>)], codec| {
        let p = dir.path().join("f.parquet");
        crate::data_support::parquet_file(&p, columns, 200, codec);
        std::fs::read(&p).unwrap()
    };
    let zstd = Compression::ZSTD(ZstdLevel::default());
    let mut corpus = BTreeMap::new();
    for part in 0..2 {
        let texts: Vec<String> = (0..700).map(|i| text("fw", part * 1000 + i)).collect();
        let ids: Vec<String> = (0..700).map(|i| format!("<urn:uuid:{part}-{i}>")).collect();
        corpus.insert(
            format!("fineweb-edu-dedup/train-{part:05}-of-00002.parquet"),
            file(&[("text", texts), ("id", ids)], zstd),
        );
    }
    let prompts: Vec<String> = (0..500)
        .map(|i| format!("Write about tides, part {i}."))
        .collect();
    let texts: Vec<String> = (0..500).map(|i| text("cp", i)).collect();
    let audience: Vec<String> = (0..500).map(|_| "general".to_string()).collect();
    corpus.insert(
        "cosmopedia-v2/train-00000-of-00001.parquet".into(),
        file(
            &[("prompt", prompts), ("text", texts), ("audience", audience)],
            Compression::SNAPPY,
        ),
    );
    corpus.insert("README.md".into(), b"# smollm-corpus\n".to_vec());
    let mut finemath = BTreeMap::new();
    let texts: Vec<String> = (0..400).map(|i| text("fm", i)).collect();
    let urls: Vec<String> = (0..400)
        .map(|i| format!("https://example.org/{i}"))
        .collect();
    finemath.insert(
        "finemath-4plus/train-00000-of-00001.parquet".into(),
        file(&[("url", urls), ("text", texts)], zstd),
    );
    let mut repos = Repos::new();
    repos.insert("datasets/HuggingFaceTB/smollm-corpus".into(), corpus);
    repos.insert("datasets/HuggingFaceTB/finemath".into(), finemath);
    repos
}

#[test]
fn smollm_corpus_streams_from_the_hub_file_by_file_and_frees_each() {
    use doge::data::tokenizer::{train_bpe, TrainOptions};
    use doge::data::{prepare_report, DataSpec, PrepareOptions, SourceSpec};
    let hub = MockHub::start(smollm_repos());
    let dir = tempfile::tempdir().unwrap();
    let tok = train_bpe(
        ["fw1 cp2 fm3 the ocean tide rises when moon pulls water and"].iter(),
        &TrainOptions {
            vocab_size: 600,
            min_frequency: 0,
        },
        &dir.path().join("tok"),
    )
    .unwrap();
    let source = |subset: &str, w: f64| {
        let mut s = SourceSpec::new("HuggingFaceTB/smollm-corpus").weight(w);
        s.subset = Some(subset.into());
        s
    };
    let mut finemath = SourceSpec::new("HuggingFaceTB/finemath").weight(1.0);
    finemath.subset = Some("finemath-4plus".into());
    let mut data = DataSpec::pretrain(
        vec![
            source("fineweb-edu-dedup", 7.0),
            source("cosmopedia-v2", 2.0).field("prompt+text"),
            finemath,
        ],
        64,
    );
    data.test_examples = 20;
    let mut opts = PrepareOptions::new(dir.path().join("data"));
    opts.hub = hub.options(dir.path());
    opts.progress = false;
    opts.delete_raw = true;
    let p = prepare_report(&data, &tok, &opts).unwrap();
    let m = &p.manifest;
    assert_eq!(
        m.sources.iter().map(|s| s.documents).collect::<Vec<_>>(),
        vec![1400, 500, 400]
    );
    assert_eq!(m.sources[0].files, 2);
    for (s, want) in m.sources.iter().zip([0.7, 0.2, 0.1]) {
        assert!(
            (s.share - want).abs() < 0.01,
            "{}: share {}",
            s.name,
            s.share
        );
    }
    // Each file was downloaded once (listed with its hash first), and freed once tokenized: the
    // cache keeps the links, not the bytes.
    let reqs = hub.requests();
    let files = [
        "fineweb-edu-dedup/train-00000-of-00002.parquet",
        "fineweb-edu-dedup/train-00001-of-00002.parquet",
        "cosmopedia-v2/train-00000-of-00001.parquet",
        "finemath-4plus/train-00000-of-00001.parquet",
    ];
    for f in files {
        assert!(
            reqs.iter().any(|r| r.ends_with(f)),
            "{f} not fetched: {reqs:?}"
        );
    }
    assert!(reqs.iter().any(|r| r.contains("blobs=true")), "{reqs:?}");
    let blobs: Vec<PathBuf> = ["smollm-corpus", "finemath"]
        .iter()
        .filter_map(|r| {
            std::fs::read_dir(
                dir.path()
                    .join(format!("hub/datasets--HuggingFaceTB--{r}/blobs")),
            )
            .ok()
        })
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".lock")) // hf-hub's empty lock files
        .collect();
    assert!(blobs.is_empty(), "raw files left: {blobs:?}");

    // Preparing again from a new data cache re-downloads what it needs (the pieces are gone too)
    // and gives the same rows; with the pieces kept, nothing is downloaded at all.
    let before = hub.requests().len();
    let again = prepare_report(&data, &tok, &opts).unwrap();
    assert!(again.reused);
    assert_eq!(
        hub.requests().len() - before,
        3,
        "only the listings: {:?}",
        &hub.requests()[before..]
    );
    std::fs::remove_dir_all(&p.dir).unwrap();
    let before = hub.requests().len();
    let third = prepare_report(&data, &tok, &opts).unwrap();
    assert!(!third.reused);
    assert_eq!(third.manifest.train, m.train);
    let fetched: Vec<String> = hub.requests()[before..]
        .iter()
        .filter(|r| r.contains("/resolve/"))
        .cloned()
        .collect();
    assert!(fetched.is_empty(), "pieces kept, yet fetched: {fetched:?}");
}

#[test]
fn an_interrupted_hub_download_resumes_where_it_stopped() {
    use doge::data::tokenizer::{train_bpe, TrainOptions};
    use doge::data::{prepare_report, DataSpec, PrepareOptions, SourceSpec};
    let repos = smollm_repos();
    let name = "finemath-4plus/train-00000-of-00001.parquet";
    let bytes = repos["datasets/HuggingFaceTB/finemath"][name].clone();
    let hub = MockHub::start(repos);
    let dir = tempfile::tempdir().unwrap();
    // What a killed download leaves: the first half of the blob, under hf-hub's `.part` name.
    let blobs = dir
        .path()
        .join("hub/datasets--HuggingFaceTB--finemath/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let half = bytes.len() / 2;
    std::fs::write(
        blobs.join(format!("{}.part", sha256_hex(&bytes))),
        &bytes[..half],
    )
    .unwrap();
    let tok = train_bpe(
        ["fm1 the ocean tide rises when moon pulls water and"].iter(),
        &TrainOptions {
            vocab_size: 600,
            min_frequency: 0,
        },
        &dir.path().join("tok"),
    )
    .unwrap();
    let mut src = SourceSpec::new("HuggingFaceTB/finemath");
    src.subset = Some("finemath-4plus".into());
    let mut data = DataSpec::pretrain(vec![src], 64);
    data.test_examples = 10;
    let mut opts = PrepareOptions::new(dir.path().join("data"));
    opts.hub = hub.options(dir.path());
    opts.progress = false;
    let p = prepare_report(&data, &tok, &opts).unwrap();
    assert_eq!(p.manifest.sources[0].documents, 400);
    // The rest was asked for from where the part ended, and the blob is whole.
    let ranges = hub.ranges();
    let want = format!("bytes={half}-");
    assert!(
        ranges
            .iter()
            .any(|(t, r)| t.ends_with(name) && r.as_deref().is_some_and(|r| r.starts_with(&want))),
        "{ranges:?}"
    );
    assert_eq!(
        std::fs::read(blobs.join(sha256_hex(&bytes))).unwrap(),
        bytes
    );
}
