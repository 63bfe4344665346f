//! Properties of the model that need no external reference: cached decoding equals re-scoring,
//! batching changes no score, every parameter trains, and analytic gradients equal finite
//! differences (closed form: the derivative's definition).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use doge::checkpoint::Checkpoint;
use doge::generate::{argmax, generate, GenerationSettings};
use doge::model::params::{param_specs, Kind};
use doge::model::{causal_lm_loss, DogeConfig, DogeForCausalLM, Layout};
use doge::score::score_sequences;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// transformers' native layout (A) and small-doge's remote-code layout (B), dense and MoE, and B
/// with grouped kv heads (H 4, Hkv 2) where the bias differs within a group.
const CASES: [&str; 5] = [
    "doge-tiny/dense",
    "doge-tiny/moe",
    "smalldoge-b/dense-b",
    "smalldoge-b/moe-b",
    "smalldoge-b/gqa-b",
];

/// A fixture's model; with `static_rope`, dynamic-NTK RoPE is switched off: it re-rotates only new
/// keys past the original context, as transformers does, so there a cache is not a re-forward.
fn model_of(name: &str, static_rope: bool) -> DogeForCausalLM {
    let mut ckpt = Checkpoint::load(&fixture(name), DType::F32, &Device::Cpu).unwrap();
    if static_rope {
        ckpt.config.rope.rope_type = "default".into();
    }
    ckpt.model().unwrap()
}

fn last_logits(model: &DogeForCausalLM, ids: &[u32]) -> Vec<f32> {
    let t = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward_last(&t, None)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Greedy decoding with the cache picks, at every step, the argmax of an uncached forward over the
/// whole prefix, and the logits agree.
fn cached_equals_uncached(model: &DogeForCausalLM, prompt: &[u32], steps: usize) {
    let settings = GenerationSettings {
        max_new_tokens: steps,
        ..Default::default()
    };
    let mut cached_logits = Vec::new();
    let mut cache = model.new_cache();
    let mut input = Tensor::new(prompt, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    for _ in 0..steps {
        let l = model
            .forward_last(&input, Some(&mut cache))
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let next = argmax(&l);
        cached_logits.push(l);
        input = Tensor::new(&[next], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
    }
    let generated = generate(model, prompt, &settings, |_| Ok(())).unwrap();
    assert_eq!(generated.len(), steps);
    let window = model.config().keep_window_size;
    assert!(
        prompt.len() + steps > 2 * window,
        "the test must run past the keep window"
    );
    let mut seq = prompt.to_vec();
    for (i, &tok) in generated.iter().enumerate() {
        let full = last_logits(model, &seq);
        assert_eq!(argmax(&full), tok, "step {i}: uncached argmax differs");
        let diff = full
            .iter()
            .zip(&cached_logits[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff < 1e-4,
            "step {i}: cached and uncached logits differ by {diff}"
        );
        seq.push(tok);
    }
}

#[test]
fn cached_generation_equals_rescoring_past_the_keep_window() {
    for name in CASES {
        let model = model_of(name, true);
        assert!(5 + 24 > model.config().keep_window_size);
        cached_equals_uncached(&model, &[5, 77, 190, 33, 12], 24);
    }
}

/// With A = 0 every dynamic bias is exactly 1, so every key ties: only the tie rule (keep the most
/// recent keys) decides the window, and it must decide it the same way cached and uncached.
#[test]
fn cached_generation_equals_rescoring_when_all_biases_tie() {
    for layout in [Layout::Transformers, Layout::SmallDoge] {
        let cfg = DogeConfig {
            vocab_size: 64,
            hidden_size: 32,
            intermediate_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            keep_window_size: 4,
            max_position_embeddings: 64,
            tie_word_embeddings: true,
            layout,
            ..DogeConfig::default()
        };
        let model = Checkpoint::init(&cfg, 11, DType::F32, &Device::Cpu)
            .unwrap()
            .model()
            .unwrap();
        cached_equals_uncached(&model, &[3, 9, 27], 14);
    }
}

#[test]
fn batch_size_changes_no_score() {
    for name in CASES {
        let model = model_of(name, false);
        let seqs: Vec<Vec<u32>> = vec![
            (0..23).map(|i| (i * 7 + 3) % 256).collect(),
            vec![4, 8],
            (0..11).map(|i| (i * 13 + 5) % 256).collect(),
            (0..17).map(|i| (i * 31 + 1) % 256).collect(),
        ];
        let one = score_sequences(&model, &seqs, 1).unwrap();
        let all = score_sequences(&model, &seqs, 4).unwrap();
        for (a, b) in one.iter().zip(&all) {
            assert_eq!(a.token_logprobs.len(), b.token_logprobs.len());
            for (x, y) in a.token_logprobs.iter().zip(&b.token_logprobs) {
                assert!((x - y).abs() < 1e-5, "{name}: {x} vs {y}");
            }
        }
    }
}

/// A fixture in float64 with every tensor a `Var`.
fn f64_vars(name: &str) -> (DogeConfig, BTreeMap<String, Var>) {
    let ckpt = Checkpoint::load(&fixture(name), DType::F64, &Device::Cpu).unwrap();
    let vars = ckpt
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), Var::from_tensor(t).unwrap()))
        .collect();
    (ckpt.config, vars)
}

fn loss_of(cfg: &DogeConfig, tensors: BTreeMap<String, Tensor>, batch: &Tensor) -> Tensor {
    let model = Checkpoint {
        config: cfg.clone(),
        tensors,
        remote_code: Default::default(),
    }
    .model()
    .unwrap();
    let logits = model.forward(batch, None).unwrap();
    causal_lm_loss(&logits, &batch.to_dtype(DType::I64).unwrap()).unwrap()
}

fn training_batch() -> Tensor {
    // Two rows longer than the keep window (8), so the top-k path is in the graph.
    let rows: Vec<u32> = (0..2 * 14).map(|i| (i * 37 + 11) % 256).collect();
    Tensor::from_vec(rows, (2, 14), &Device::Cpu).unwrap()
}

#[test]
fn every_parameter_gets_a_finite_nonzero_gradient() {
    for name in CASES {
        let (cfg, vars) = f64_vars(name);
        let tensors = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let loss = loss_of(&cfg, tensors, &training_batch());
        let grads = loss.backward().unwrap();
        assert_eq!(vars.len(), param_specs(&cfg).len());
        for (k, v) in &vars {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient for {k}"));
            let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            assert!(
                g.iter().all(|x| x.is_finite()),
                "{name}: non-finite gradient in {k}"
            );
            assert!(g.iter().any(|x| *x != 0.0), "{name}: zero gradient for {k}");
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let names = [
        "model.layers.0.self_attn.A",
        "model.layers.1.self_attn.dt_proj.weight",
        "model.layers.0.self_attn.q_norm.weight",
        "model.layers.1.self_attn.k_norm.weight",
        "model.layers.0.mlp.router_gate.weight",
        "model.layers.1.mlp.down_embed.weight",
        "model.layers.0.mlp.up_embed.weight",
        "model.layers.0.input_residual",
        "model.layers.1.post_attention_residual",
        "model.layers.1.self_attn.q_proj.weight",
        "model.embed_tokens.weight",
        "model.norm.weight",
    ];
    check_finite_differences("doge-tiny/moe", &names);
}

/// The SmallDoge layout's own parameters: `A` [H] and `dt_proj` [H, Hkv·hd] (+ bias [H]), one bias
/// row per query head, with two query heads per kv head.
#[test]
fn smalldoge_gradients_match_finite_differences() {
    let names = [
        "model.layers.0.self_attn.A",
        "model.layers.1.self_attn.A",
        "model.layers.0.self_attn.dt_proj.weight",
        "model.layers.1.self_attn.dt_proj.bias",
        "model.layers.0.self_attn.v_proj.weight",
        "model.layers.1.self_attn.k_proj.weight",
        "model.layers.0.input_residual",
        "lm_head.weight",
    ];
    check_finite_differences("smalldoge-b/gqa-b", &names);
}

fn check_finite_differences(fixture_name: &str, names: &[&str]) {
    let (cfg, vars) = f64_vars(fixture_name);
    let batch = training_batch();
    let base: BTreeMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let grads = loss_of(&cfg, base.clone(), &batch).backward().unwrap();
    let kinds: Vec<Kind> = param_specs(&cfg)
        .iter()
        .filter(|s| names.contains(&s.name.as_str()))
        .map(|s| s.kind)
        .collect();
    assert_eq!(
        kinds.len(),
        names.len(),
        "{fixture_name}: a name is not a parameter"
    );
    let wanted: &[Kind] = if cfg.is_moe {
        &[
            Kind::DynamicA,
            Kind::Linear,
            Kind::Norm,
            Kind::ExpertEmbedding,
            Kind::Residual,
            Kind::Embedding,
        ]
    } else {
        &[Kind::DynamicA, Kind::Linear, Kind::Bias, Kind::Residual]
    };
    for kind in wanted {
        assert!(
            kinds.contains(kind),
            "no parameter of kind {kind:?} checked"
        );
    }
    let eps = 1e-5;
    for &name in names {
        let t = &base[name];
        let g = grads
            .get(vars[name].as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        // The elements with the largest gradients, so the check is not of numerical noise.
        let mut order: Vec<usize> = (0..g.len()).collect();
        order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        for &i in order.iter().take(3) {
            let values = t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let at = |delta: f64| {
                let mut v = values.clone();
                v[i] += delta;
                let mut m = base.clone();
                m.insert(
                    name.to_string(),
                    Tensor::from_vec(v, t.shape(), &Device::Cpu).unwrap(),
                );
                loss_of(&cfg, m, &batch).to_scalar::<f64>().unwrap()
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            let rel = (fd - g[i]).abs() / fd.abs().max(g[i].abs()).max(1e-12);
            assert!(
                rel < 1e-2,
                "{fixture_name} {name}[{i}]: analytic {} vs finite difference {fd} (rel {rel})",
                g[i]
            );
        }
    }
}
