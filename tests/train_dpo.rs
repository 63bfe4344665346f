//! DPO: the sigmoid loss and its statistics against values computed by hand from known
//! log-probabilities (closed form), its gradient, log 2 at step 0 when the policy is the
//! reference, the reference cache, and rewards/accuracy rising on the training pairs.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor, Var};
use doge::checkpoint::Checkpoint;
use doge::data::DpoRow;
use doge::train::dpo::{self, dpo_loss, fit, MemoryPairs, PreferencePairs};
use doge::train::optimizer::AdamWConfig;
use doge::train::pretrain::{StageObserver, StageSettings};
use doge::train::schedule::Schedule;

fn t(v: &[f32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

/// -log σ(z), written out.
fn neg_log_sigmoid(z: f64) -> f64 {
    (1.0 + (-z).exp()).ln()
}

#[test]
fn the_loss_matches_the_closed_form() {
    // Pair 1: the policy gained 1 nat on the chosen answer and lost 1 on the rejected one;
    // pair 2: the opposite. beta 0.1 -> z = +0.2 and -0.2.
    let (pc, pr) = (t(&[-10.0, -5.0]), t(&[-12.0, -3.0]));
    let (rc, rr) = (t(&[-11.0, -4.0]), t(&[-11.0, -4.0]));
    let (loss, s) = dpo_loss(&pc, &pr, &rc, &rr, 0.1).unwrap();
    let want = (neg_log_sigmoid(0.2) + neg_log_sigmoid(-0.2)) / 2.0;
    let got = loss.to_scalar::<f32>().unwrap() as f64;
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    assert!((s.loss - want).abs() < 1e-6);
    // rewards: chosen 0.1 and -0.1, rejected -0.1 and 0.1.
    assert!(s.chosen.abs() < 1e-6 && s.rejected.abs() < 1e-6, "{s:?}");
    assert_eq!(s.accuracy, 0.5);
    assert!(s.margin.abs() < 1e-6);

    let (_, s) = dpo_loss(&t(&[-10.0]), &t(&[-12.0]), &t(&[-11.0]), &t(&[-11.0]), 0.5).unwrap();
    assert!((s.loss - neg_log_sigmoid(1.0)).abs() < 1e-6, "{s:?}");
    assert!((s.chosen - 0.5).abs() < 1e-6 && (s.rejected + 0.5).abs() < 1e-6);
    assert_eq!(s.accuracy, 1.0);
    assert!((s.margin - 1.0).abs() < 1e-6);

    // Far from 0 the loss stays finite: softplus(-z) -> 0 for large z, -> -z for very negative z.
    let (_, s) = dpo_loss(
        &t(&[0.0, -1000.0]),
        &t(&[-1000.0, 0.0]),
        &t(&[0.0, 0.0]),
        &t(&[0.0, 0.0]),
        1.0,
    )
    .unwrap();
    assert!((s.loss - 500.0).abs() < 1e-3, "{s:?}");
}

#[test]
fn the_gradient_matches_the_closed_form() {
    // d/dπ_c of mean_i -log σ(z_i) = -β σ(-z_i) / n, and the opposite for π_r.
    let beta = 0.1;
    let pc = Var::new(&[-10.0f32, -5.0], &Device::Cpu).unwrap();
    let pr = Var::new(&[-12.0f32, -3.0], &Device::Cpu).unwrap();
    let (rc, rr) = (t(&[-11.0, -4.0]), t(&[-11.0, -4.0]));
    let (loss, _) = dpo_loss(pc.as_tensor(), pr.as_tensor(), &rc, &rr, beta).unwrap();
    let grads = loss.backward().unwrap();
    let gc = grads.get(pc.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let gr = grads.get(pr.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    for (i, z) in [0.2f64, -0.2].into_iter().enumerate() {
        let want = -beta * sigmoid(-z) / 2.0;
        assert!((gc[i] as f64 - want).abs() < 1e-6, "{gc:?}");
        assert!((gr[i] as f64 + want).abs() < 1e-6, "{gr:?}");
    }
}

#[test]
fn long_prompts_and_answers_are_cut_to_the_limit() {
    let p: Vec<u32> = (0..10).collect();
    let a: Vec<u32> = (100..110).collect();
    // The prompt keeps its last max_len / 2 tokens, the answer its first ones.
    let s = fit(&p, &a, 8);
    assert_eq!(s.ids, vec![6, 7, 8, 9, 100, 101, 102, 103]);
    assert_eq!(s.prompt_len, 4);
    let s = fit(&[1, 2], &[3, 4, 5], 8);
    assert_eq!((s.ids, s.prompt_len), (vec![1, 2, 3, 4, 5], 2));
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/doge-tiny/dense")
}

/// Pairs over the fixture's 256-token vocabulary: the chosen answer repeats the prompt's first
/// token, the rejected one is a different fixed pattern.
fn pairs(n: usize, offset: u32) -> Vec<DpoRow> {
    (0..n as u32)
        .map(|k| {
            let a = 10 + (k * 7 + offset) % 200;
            DpoRow {
                prompt: vec![0, a, a + 1, a + 2],
                chosen: vec![a, a, a, 1],
                rejected: vec![250, 240 - k % 7, 230, 1],
            }
        })
        .collect()
}

struct Recorder(Vec<(u64, String, f64)>);

impl Recorder {
    fn series(&self, name: &str) -> Vec<f64> {
        self.0
            .iter()
            .filter(|(_, k, _)| k == name)
            .map(|(_, _, v)| *v)
            .collect()
    }
}

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

fn settings(total_steps: u64, lr: f64) -> StageSettings {
    StageSettings {
        adamw: AdamWConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        },
        schedule: Schedule::Cosine {
            warmup_steps: 0,
            min_lr_rate: 0.1,
        },
        total_steps,
        batch_size: 4,
        grad_accum: 2,
        grad_clip: Some(1.0),
        log_every: 1,
        eval_every: 0,
        save_every: 0,
        keep_last: 1,
        max_bad_steps: 3,
        decay_all: false,
        config_hash: "dpo-test".into(),
    }
}

#[test]
fn step_zero_is_log_2_and_accuracy_rises_on_the_training_pairs() {
    let data = MemoryPairs {
        train: pairs(16, 0),
        test: pairs(4, 3),
    };
    let start = Checkpoint::load(&fixture(), DType::F32, &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder(Vec::new());
    let stop = AtomicBool::new(false);
    dpo::train(
        start,
        &data,
        0.1,
        64,
        &settings(16, 1e-2),
        dir.path(),
        &mut rec,
        &stop,
    )
    .unwrap();
    let loss = rec.series("loss");
    let acc = rec.series("rewards/accuracy");
    let margin = rec.series("rewards/margin");
    assert_eq!(loss.len(), 16);
    // Step 0: the policy is the reference, so every reward is 0 and the loss is -log σ(0).
    assert!(
        (loss[0] - std::f64::consts::LN_2).abs() < 1e-6,
        "{}",
        loss[0]
    );
    assert!(rec.series("rewards/chosen")[0].abs() < 1e-6);
    assert!(rec.series("rewards/rejected")[0].abs() < 1e-6);
    assert!(margin[0].abs() < 1e-6);
    assert_eq!(
        acc[0], 0.0,
        "ties are not counted as correct (TRL: chosen > rejected)"
    );
    // Training separates the pairs.
    let tail = |v: &[f64]| v[12..].iter().sum::<f64>() / 4.0;
    assert!(tail(&acc) > 0.5, "rewards/accuracy {acc:?}");
    assert!(
        tail(&margin) > 0.0 && tail(&loss) < loss[0],
        "{margin:?} {loss:?}"
    );
    // At the end, over every training pair.
    let train_acc = rec.series("train_rewards/accuracy");
    assert_eq!(train_acc.len(), 1);
    assert!(train_acc[0] > 0.5, "{train_acc:?}");
    assert!(rec.series("train_rewards/margin")[0] > 0.0);
    // Held-out pairs were evaluated at the end.
    assert_eq!(rec.series("eval_rewards/accuracy").len(), 1);
    assert!(rec.series("eval_loss")[0].is_finite());
}

#[test]
fn reference_log_probs_are_cached_by_data_and_weights() {
    let data = MemoryPairs {
        train: pairs(3, 0),
        test: vec![],
    };
    let dir = tempfile::tempdir().unwrap();
    let start = Checkpoint::load(&fixture(), DType::F32, &Device::Cpu).unwrap();
    let (first, path) = dpo::reference_logps(&start, &data, 64, 2, dir.path()).unwrap();
    assert!(path.exists());
    // Independently: log p(chosen) of pair 0 from the scorer, summed over the answer tokens.
    let model = start.model().unwrap();
    let p = &data.train[0];
    let seq: Vec<u32> = p.prompt.iter().chain(&p.chosen).copied().collect();
    let score = &doge::score::score_sequences(&model, &[seq], 1).unwrap()[0];
    let want: f32 = score.token_logprobs[p.prompt.len() - 1..].iter().sum();
    assert!(
        (first.train[0][0] - want).abs() < 1e-4,
        "{} vs {want}",
        first.train[0][0]
    );

    // A second call reads the file: make the cached value recognisable and read it back.
    let mut edited = first.clone();
    edited.train[0][0] = 123.0;
    std::fs::write(&path, serde_json::to_string(&edited).unwrap()).unwrap();
    let (again, path2) = dpo::reference_logps(&start, &data, 64, 2, dir.path()).unwrap();
    assert_eq!((again.train[0][0], &path2), (123.0, &path));

    // Other weights or other data: another key, computed afresh.
    let mut other = start.clone();
    let name = other.tensors.keys().next().unwrap().clone();
    let bumped = (other.tensors[&name].clone() + 0.01).unwrap();
    other.tensors.insert(name, bumped);
    let (_, path3) = dpo::reference_logps(&other, &data, 64, 2, dir.path()).unwrap();
    assert_ne!(path3, path);
    let more = MemoryPairs {
        train: pairs(4, 0),
        test: vec![],
    };
    assert_ne!(more.fingerprint(), data.fingerprint());
    let (r, path4) = dpo::reference_logps(&start, &more, 64, 2, dir.path()).unwrap();
    assert_ne!(path4, path);
    assert_eq!(r.train.len(), 4);
    assert!((r.train[0][0] - want).abs() < 1e-4);
}

#[test]
fn dpo_metric_names_can_be_filtered_on() {
    use doge::registry::filter::{parse, Expr, Op, Value};
    assert_eq!(
        parse("metric.rewards/accuracy > 0.5").unwrap(),
        Expr::Cmp("metric.rewards/accuracy".into(), Op::Gt, Value::Num(0.5))
    );
}
