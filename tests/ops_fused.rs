//! Every fused CPU kernel (doge/model/ops) against its composed candle reference: forward values
//! and gradients of every differentiable input agree to 1e-5 (relative to the largest magnitude) in
//! f32 and to 1e-10 in f64. Then the whole model: loss and every parameter gradient with the fused
//! kernels equal the composed model's on the doge-tiny fixtures (dense and MoE, keep window active).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use doge::checkpoint::Checkpoint;
use doge::model::ops::{
    adamw, attention, cross_entropy, decode, matvec, residual, rms_norm, rotary, swiglu,
};
use doge::train::optimizer::{grad_norm, AdamW, AdamWConfig};
use rand::{Rng, SeedableRng};

fn random(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn tolerance(dtype: DType) -> f64 {
    if dtype == DType::F64 {
        1e-10
    } else {
        1e-5
    }
}

/// max |a - b| <= tol * max(1, max |b|).
fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let (a, b) = (values(a), values(b));
    let scale = b.iter().fold(1f64, |m, x| m.max(x.abs()));
    let err = a
        .iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= tol * scale,
        "{what}: max error {err:e} exceeds {tol:e} x {scale}"
    );
}

/// Runs `f` on fresh Vars made from `inputs`, reduces its output against fixed random weights (so
/// every output element carries a different upstream gradient) and returns output and gradients.
fn output_and_grads(inputs: &[Tensor], f: &dyn Fn(&[Tensor]) -> Tensor) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&ts);
    let weights = random(out.dims(), 99, out.dtype());
    let reduced = (&out * &weights).unwrap().sum_all().unwrap();
    let store = reduced.backward().unwrap();
    let grads = ts
        .iter()
        .map(|t| store.get(t).expect("every input gets a gradient").clone())
        .collect();
    (out, grads)
}

fn check(
    name: &str,
    inputs: &[Tensor],
    fused: &dyn Fn(&[Tensor]) -> Tensor,
    reference: &dyn Fn(&[Tensor]) -> Tensor,
) {
    let tol = tolerance(inputs[0].dtype());
    let (fo, fg) = output_and_grads(inputs, fused);
    let (ro, rg) = output_and_grads(inputs, reference);
    assert_close(&format!("{name} forward"), &fo, &ro, tol);
    for (i, (f, r)) in fg.iter().zip(&rg).enumerate() {
        assert_close(&format!("{name} gradient of input {i}"), f, r, tol);
    }
}

const DTYPES: [DType; 2] = [DType::F32, DType::F64];

#[test]
fn rms_norm_matches_composed() {
    for dt in DTYPES {
        // Enough rows that the kernel splits them across threads.
        let x = random(&[4, 300, 64], 1, dt);
        let w = random(&[64], 2, dt);
        check(
            "rms_norm",
            &[x, w],
            &|t| rms_norm::rms_norm(&t[0], &t[1], 1e-6).unwrap(),
            &|t| rms_norm::reference(&t[0], &t[1], 1e-6).unwrap(),
        );
    }
}

#[test]
fn rotary_matches_composed() {
    for dt in DTYPES {
        // Tables need not repeat their halves for the kernel to be right.
        let cos = random(&[7, 8], 3, dt);
        let sin = random(&[7, 8], 4, dt);
        let x = random(&[2, 3, 7, 8], 5, dt);
        check(
            "rotary",
            &[x],
            &|t| rotary::rotary(&t[0], &cos, &sin).unwrap(),
            &|t| rotary::reference(&t[0], &cos, &sin).unwrap(),
        );
    }
}

#[test]
fn swiglu_matches_composed() {
    for dt in DTYPES {
        let a = random(&[3, 200, 70], 6, dt);
        let b = random(&[3, 200, 70], 7, dt);
        check(
            "swiglu",
            &[a, b],
            &|t| swiglu::swiglu(&t[0], &t[1]).unwrap(),
            &|t| swiglu::reference(&t[0], &t[1]).unwrap(),
        );
    }
}

#[test]
fn scaled_residual_matches_composed() {
    for dt in DTYPES {
        let h = random(&[3, 300, 48], 14, dt);
        let r = random(&[48], 15, dt);
        let x = random(&[3, 300, 48], 16, dt);
        check(
            "scaled residual",
            &[h, r, x],
            &|t| residual::scaled_residual(&t[0], &t[1], &t[2]).unwrap(),
            &|t| residual::reference(&t[0], &t[1], &t[2]).unwrap(),
        );
    }
}

#[test]
fn few_row_logits_match_composed() {
    for dt in DTYPES {
        // A vocabulary that is not a multiple of the task size or the vector width.
        for rows in [1, 3] {
            let h = random(&[rows, 40], 17, dt);
            let w = random(&[1500, 40], 18, dt);
            let fused = matvec::linear_rows(&h, &w).unwrap();
            assert_close(
                "few-row logits",
                &fused,
                &matvec::reference(&h, &w).unwrap(),
                tolerance(dt),
            );
        }
    }
}

/// Causal keep mask for `l` queries after `past` cached keys, and a per-(batch, head) random one.
fn keep_masks(b: usize, kv: usize, l: usize, past: usize) -> [Tensor; 2] {
    let lk = past + l;
    let causal: Vec<u8> = (0..l)
        .flat_map(|i| (0..lk).map(move |j| u8::from(j <= past + i)))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let random: Vec<u8> = (0..b * kv * l)
        .flat_map(|r| {
            let i = r % l;
            let mut row: Vec<u8> = (0..lk)
                .map(|j| u8::from(j <= past + i && rng.random_bool(0.6)))
                .collect();
            row[past + i] = 1; // every query keeps at least itself
            row
        })
        .collect();
    [
        Tensor::from_vec(causal, (1, 1, l, lk), &Device::Cpu).unwrap(),
        Tensor::from_vec(random, (b, kv, l, lk), &Device::Cpu).unwrap(),
    ]
}

#[test]
fn dma_softmax_matches_composed() {
    let (b, kv, groups, l, past) = (2, 2, 3, 5, 4);
    let lk = past + l;
    for dt in DTYPES {
        for keep in keep_masks(b, kv, l, past) {
            let scores = random(&[b, kv, groups * l, lk], 9, dt);
            let bias = random(&[b, kv, lk], 10, dt);
            check(
                "dma softmax",
                &[scores, bias],
                &|t| attention::masked_softmax(&t[0], &t[1], &keep, 0.125).unwrap(),
                &|t| attention::reference(&t[0], &t[1], &keep, 0.125).unwrap(),
            );
        }
    }
}

/// The no-gradient attention of a few query rows (generation steps) against the composed masked
/// softmax and matrix products: one decode row after 37 cached keys (head dims not a multiple of
/// the vector width), and a few rows with per-(batch, head) random keep masks; each with a bias
/// shared by a kv group (transformers) and one bias per query head (SmallDoge).
#[test]
fn few_row_attention_matches_composed() {
    for dt in DTYPES {
        for (b, kv, groups, l, past, hd) in [(1, 1, 2, 1, 37, 20), (2, 2, 3, 2, 6, 16)] {
            let lk = past + l;
            for (bias_heads, keep) in [kv, kv * groups]
                .into_iter()
                .flat_map(|nb| keep_masks(b, nb, l, past).map(|m| (nb, m)))
            {
                let q = random(&[b, kv, groups * l, hd], 21, dt);
                let k = random(&[b, kv, lk, hd], 22, dt);
                let v = random(&[b, kv, lk, hd], 23, dt);
                let bias = random(&[b, bias_heads, lk], 24, dt);
                let scale = (hd as f64).powf(-0.5);
                assert_close(
                    "few-row attention",
                    &decode::attend(&q, &k, &v, &bias, &keep, scale).unwrap(),
                    &decode::reference(&q, &k, &v, &bias, &keep, scale).unwrap(),
                    tolerance(dt),
                );
            }
        }
    }
}

#[test]
fn linear_cross_entropy_matches_composed() {
    for dt in DTYPES {
        let hidden = random(&[37, 16], 11, dt);
        let weight = random(&[300, 16], 12, dt);
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let targets: Vec<i64> = (0..37)
            .map(|i| {
                if i % 5 == 0 {
                    cross_entropy::IGNORE
                } else {
                    rng.random_range(0..300)
                }
            })
            .collect();
        let targets = Tensor::new(targets, &Device::Cpu).unwrap();
        // The loss is a scalar: scaling it checks that the backward applies the upstream gradient.
        // Blocks of 8 rows split the 37 into five, the last partial (the default is one block).
        for block_rows in [None, Some(8)] {
            check(
                &format!("linear cross-entropy, blocks of {block_rows:?} rows"),
                &[hidden.clone(), weight.clone()],
                &|t| {
                    let loss = cross_entropy::blocked_linear_cross_entropy(
                        &t[0], &t[1], &targets, block_rows,
                    );
                    (loss.unwrap() * 3.0).unwrap()
                },
                &|t| (cross_entropy::reference(&t[0], &t[1], &targets).unwrap() * 3.0).unwrap(),
            );
        }
        // Without tracked inputs no gradient is computed, and the loss is the same.
        let plain = cross_entropy::linear_cross_entropy(&hidden, &weight, &targets).unwrap();
        let reference = cross_entropy::reference(&hidden, &weight, &targets).unwrap();
        assert_close("untracked loss", &plain, &reference, tolerance(dt));
    }
}

#[test]
fn adamw_update_matches_composed() {
    let config = AdamWConfig {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    for dt in DTYPES {
        let make = |fused: bool| {
            let params = (0..3)
                .map(|i| {
                    let t = random(&[40_000 + i], 20 + i as u64, dt);
                    (format!("p{i}"), Var::from_tensor(&t).unwrap(), i != 1)
                })
                .collect();
            let mut opt = AdamW::new(config, params).unwrap();
            opt.fused = fused;
            opt
        };
        let (mut fused, mut composed) = (make(true), make(false));
        for step in 0..3u64 {
            let grads: Vec<Option<Tensor>> = (0..3)
                .map(|i| Some(random(&[40_000 + i], 100 + step * 3 + i as u64, dt)))
                .collect();
            fused.step(&grads, 1e-2, 0.5).unwrap();
            composed.step(&grads, 1e-2, 0.5).unwrap();
        }
        for (f, c) in fused.params.iter().zip(&composed.params) {
            let tol = tolerance(dt);
            assert_close(&f.name, f.var.as_tensor(), c.var.as_tensor(), tol);
            assert_close("exp_avg", &f.exp_avg, &c.exp_avg, tol);
            assert_close("exp_avg_sq", &f.exp_avg_sq, &c.exp_avg_sq, tol);
        }
        // The global norm without squared copies equals the composed one.
        let grads: Vec<Option<Tensor>> = vec![Some(random(&[50_000], 7, dt)), None];
        let direct = adamw::sum_of_squares(grads[0].as_ref().unwrap())
            .unwrap()
            .sqrt();
        let composed = grad_norm(&grads).unwrap();
        assert!((direct - composed).abs() <= 1e-6 * composed);
    }
}

/// Loss and every parameter's gradient of a fixture model, through `DogeForCausalLM::loss`.
fn loss_and_grads(dir: &str, dtype: DType, fused: bool) -> (Tensor, BTreeMap<String, Tensor>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let ckpt = Checkpoint::load(&path, dtype, &Device::Cpu).unwrap();
    let vars: BTreeMap<String, Var> = ckpt
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), Var::from_tensor(t).unwrap()))
        .collect();
    let model = Checkpoint {
        config: ckpt.config.clone(),
        tensors: vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect(),
        remote_code: Default::default(),
    }
    .model()
    .unwrap()
    .with_fused(fused);
    // Rows longer than the fixtures' keep window, so the top-k mask is in the graph; some ignored
    // labels.
    let v = ckpt.config.vocab_size as u32;
    let ids: Vec<u32> = (0..2 * 24).map(|i| (i * 37 + 11) % v).collect();
    let labels: Vec<i64> = ids
        .iter()
        .enumerate()
        .map(|(i, &t)| if i % 7 == 3 { -100 } else { t as i64 })
        .collect();
    let ids = Tensor::from_vec(ids, (2, 24), &Device::Cpu).unwrap();
    let labels = Tensor::from_vec(labels, (2, 24), &Device::Cpu).unwrap();
    let loss = model.loss(&ids, &labels).unwrap();
    let store = loss.backward().unwrap();
    let grads = vars
        .iter()
        .map(|(k, v)| (k.clone(), store.get(v.as_tensor()).unwrap().clone()))
        .collect();
    (loss, grads)
}

#[test]
fn fused_model_matches_composed_model() {
    for dir in [
        "doge-tiny/dense",
        "doge-tiny/moe",
        "smalldoge-b/moe-b",
        "smalldoge-b/gqa-b",
    ] {
        for dt in DTYPES {
            let (fl, fg) = loss_and_grads(dir, dt, true);
            let (cl, cg) = loss_and_grads(dir, dt, false);
            let tol = tolerance(dt);
            assert_close(&format!("{dir} loss"), &fl, &cl, tol);
            for (name, g) in &fg {
                assert_close(&format!("{dir} {dt:?} d{name}"), g, &cg[name], tol);
            }
        }
    }
}
