//! `DogeForCausalLM` on candle: transformers' native model (spec variant A) and the SmallDoge
//! remote-code layouts (B, C), which differ in three switches the config's [`super::Layout`] carries:
//! q/k norms, how many heads the dynamic bias has, and the top-k keep window (spec 2.9).
//!
//! Every op here is a composed candle op with a backward pass: candle's fused `softmax_last_dim`,
//! `rms_norm` and `rope` have none, so a model built on them would train silently wrong.
//! Struct fields follow the checkpoint's tensor names (`self_attn.q_proj`, `mlp.router_gate`, ...).
//! The KV cache is not part of the model: it is a value passed to `forward`, so one forward serves
//! training (no cache), scoring and generation.
//!
//! On the CPU (f32/f64) the hot paths run as fused kernels with their own backward
//! (`super::ops`: RMSNorm, rotary, the DMA softmax, SwiGLU, lm_head + cross-entropy); the composed
//! ops stay the reference and the path on other devices, and `DOGE_FUSED=0` or
//! [`DogeForCausalLM::with_fused`] selects them everywhere.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, VarBuilder};

use super::autocast::{self, Linear};

use super::config::DogeConfig;
use super::masks::{attention_keep_mask, Documents, KeepMaskInput};
use super::ops::{self, fusable};
use super::routing::route_tokens;

/// PyTorch's masked-fill value for dropped attention logits.
const MASK_VALUE: f64 = f32::MIN as f64;

fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get((out_dim, in_dim), "weight")?;
    let b = if bias {
        Some(vb.get(out_dim, "bias")?)
    } else {
        None
    };
    Ok(Linear::new(w, b))
}

/// `lin(x)`, except that a few rows without gradient (a decode step) on the fused CPU path stream
/// the weight once instead of going through the packing matrix product.
fn project(lin: &Linear, x: &Tensor, fused: bool) -> Result<Tensor> {
    let dims = x.dims();
    let d = *dims.last().unwrap_or(&0);
    let rows = x.elem_count() / d.max(1);
    let w = lin.weight();
    if !(fused && fusable(x) && rows <= 4 && !x.track_op() && !w.track_op()) {
        return lin.forward(x);
    }
    let y = ops::matvec::linear_rows(&x.reshape((rows, d))?, w)?;
    let y = match lin.bias() {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut shape = dims.to_vec();
    *shape.last_mut().expect("a linear input has a last dim") = w.dim(0)?;
    y.reshape(shape)
}

/// y = w * x / sqrt(mean(x²) + eps) over the last dim, composed so it has a gradient.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
    fused: bool,
}

impl RmsNorm {
    pub fn load(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            eps,
            fused: ops::fused_by_default(),
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.fused && fusable(x) {
            return ops::rms_norm::rms_norm(x, &self.weight, self.eps);
        }
        #[cfg(feature = "cuda")]
        if self.fused && crate::cuda::fusable(x) {
            return crate::cuda::ops::rms_norm(x, &self.weight, self.eps);
        }
        let inv_rms = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        x.broadcast_mul(&inv_rms)?.broadcast_mul(&self.weight)
    }
}

/// Softmax over the last dim from composed ops (the max is only a shift, so it is detached).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    let e = shifted.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// log-softmax over the last dim from composed ops.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)
}

/// PyTorch's softplus (β 1, threshold 20) in a form that is finite everywhere, gradient included:
/// relu(x) + log(1 + exp(-|x|)).
fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    x.relu()? + tail
}

/// Rotary tables for a run of positions: cos and sin of shape [L, head_dim] (rotate-half layout).
#[derive(Debug, Clone)]
pub struct Rotary {
    head_dim: usize,
    theta: f64,
    dynamic: Option<(f64, usize)>,
}

impl Rotary {
    pub fn new(cfg: &DogeConfig) -> Self {
        let dynamic = (cfg.rope.rope_type == "dynamic").then(|| {
            let factor = cfg.rope.factor.unwrap_or(1.0);
            let orig = cfg
                .rope
                .original_max_position_embeddings
                .unwrap_or(cfg.max_position_embeddings);
            (factor, orig)
        });
        Self {
            head_dim: cfg.head_dim(),
            theta: cfg.rope.rope_theta,
            dynamic,
        }
    }

    /// The base in force for a forward whose positions end below `seq_len`: dynamic NTK grows it past
    /// the original context (spec 2.2). Cached keys keep the rotation they were made with, as in
    /// transformers.
    fn base(&self, seq_len: usize) -> f32 {
        match self.dynamic {
            Some((factor, orig)) if seq_len > orig => {
                let hd = self.head_dim as f32;
                let (factor, s, orig) = (factor as f32, seq_len as f32, orig as f32);
                self.theta as f32 * ((factor * s / orig) - (factor - 1.0)).powf(hd / (hd - 2.0))
            }
            _ => self.theta as f32,
        }
    }

    /// cos, sin for positions `start .. start + len`, computed in f32 as transformers does.
    pub fn tables(
        &self,
        start: usize,
        len: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.head_dim / 2;
        let base = self.base(start + len);
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / self.head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(len * self.head_dim);
        let mut sin = Vec::with_capacity(len * self.head_dim);
        for t in start..start + len {
            let angles: Vec<f32> = inv_freq.iter().map(|f| t as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        let cos = Tensor::from_vec(cos, (len, self.head_dim), dev)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (len, self.head_dim), dev)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

/// x·cos + rotate_half(x)·sin for x of shape [B, heads, L, hd].
fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor, fused: bool) -> Result<Tensor> {
    if fused && fusable(x) {
        return ops::rotary::rotary(x, cos, sin);
    }
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}

/// Keys (normed and rotated) and raw values of one layer, [B, Hkv, P, hd] each, and the dynamic
/// bias of those keys, [B, bias heads, P] (Hkv heads, or H in the SmallDoge layouts).
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    pub kv: Option<(Tensor, Tensor)>,
    /// A key's bias depends on its own value alone, so a decode step computes only its new keys'
    /// (before, every step re-projected the whole cache: O(P) work per token and layer). Kept only
    /// while the bias comes from the row-exact kernel (see `DogeAttention::dynamic_bias`).
    pub bias: Option<Tensor>,
}

/// The KV cache of a whole model: one entry per layer, filled by `forward`.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![LayerCache::default(); num_layers],
        }
    }

    /// Number of positions already cached (the position of the next token).
    pub fn seq_len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.kv.as_ref())
            .map(|(k, _)| k.dim(2).unwrap_or(0))
            .unwrap_or(0)
    }
}

/// Dynamic Mask Attention (spec 2.4).
#[derive(Debug, Clone)]
pub struct DogeAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    dt_proj: Linear,
    a: Tensor,
    o_proj: Linear,
    /// Absent in the SmallDoge layouts: queries and keys go to RoPE un-normed.
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    num_heads: usize,
    num_kv_heads: usize,
    /// Rows of the dynamic bias: Hkv (shared by a key/value group) or H (one per query head).
    bias_heads: usize,
    head_dim: usize,
    keep_window_size: usize,
    sliding_window: Option<usize>,
    fused: bool,
}

impl DogeAttention {
    pub fn load(cfg: &DogeConfig, vb: VarBuilder) -> Result<Self> {
        let (d, h, kv, hd) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );
        let (bias, nb) = (cfg.attention_bias, cfg.bias_heads());
        let norm = |name: &str| -> Result<Option<RmsNorm>> {
            cfg.layout
                .has_qk_norm()
                .then(|| RmsNorm::load(hd, cfg.rms_norm_eps, vb.pp(name)))
                .transpose()
        };
        Ok(Self {
            q_proj: linear(d, h * hd, bias, vb.pp("q_proj"))?,
            k_proj: linear(d, kv * hd, bias, vb.pp("k_proj"))?,
            v_proj: linear(d, kv * hd, bias, vb.pp("v_proj"))?,
            dt_proj: linear(kv * hd, nb, bias, vb.pp("dt_proj"))?,
            a: vb.get(nb, "A")?,
            o_proj: linear(h * hd, d, bias, vb.pp("o_proj"))?,
            q_norm: norm("q_norm")?,
            k_norm: norm("k_norm")?,
            num_heads: h,
            num_kv_heads: kv,
            bias_heads: nb,
            head_dim: hd,
            // The training-era code kept every causal key (its window only applied with
            // dynamic_mask_ratio > 0, which the config refuses).
            keep_window_size: if cfg.layout.has_keep_window() {
                cfg.keep_window_size
            } else {
                usize::MAX
            },
            sliding_window: cfg.sliding_window,
            fused: ops::fused_by_default(),
        })
    }

    fn set_fused(&mut self, fused: bool) {
        self.fused = fused;
        for norm in [&mut self.q_norm, &mut self.k_norm].into_iter().flatten() {
            norm.fused = fused;
        }
    }

    /// The dynamic bias exp(A * softplus(dt_proj(v))) of keys whose values are `v` [B, Hkv, P, hd]:
    /// [B, bias heads, P]. With a cache (generation), without gradient, on the fused CPU path, each key's
    /// projection is its own fixed-order dot product (`matvec`), so a key's bias is bit-identical
    /// however many keys are projected together and the cache can keep it. Without a cache the
    /// projection is the matrix product training uses, so a no-gradient pass (DPO's reference
    /// log-probs, scoring) gives bit for bit what the training pass gives.
    fn dynamic_bias(&self, v: &Tensor, cached: bool) -> Result<(Tensor, bool)> {
        let (b, kv, p, hd) = v.dims4()?;
        let nb = self.bias_heads;
        let v_rows = v.transpose(1, 2)?.reshape((b, p, kv * hd))?;
        let w = self.dt_proj.weight();
        let row_exact = cached && self.fused && fusable(v) && !v.track_op() && !w.track_op();
        let dt = if row_exact {
            let y = ops::matvec::linear_rows(&v_rows.reshape((b * p, kv * hd))?, w)?;
            let y = match self.dt_proj.bias() {
                Some(bias) => y.broadcast_add(bias)?,
                None => y,
            };
            y.reshape((b, p, nb))?
        } else {
            self.dt_proj.forward(&v_rows)?
        };
        let bias = softplus(&dt)?
            .broadcast_mul(&self.a)?
            .exp()?
            .transpose(1, 2)?
            .contiguous()?;
        Ok((bias, row_exact))
    }

    /// The bias of all `Lk` keys, where `v` holds all their values and the last `l` are new: from
    /// the cache's biases plus the new keys' when the cache has them, else from every value.
    fn cached_bias(
        &self,
        v: &Tensor,
        l: usize,
        cache: Option<&mut Option<Tensor>>,
    ) -> Result<Tensor> {
        let lk = v.dim(2)?;
        let Some(slot) = cache else {
            return Ok(self.dynamic_bias(v, false)?.0);
        };
        let (bias, row_exact) = match slot.take() {
            Some(old) if old.dim(2)? + l == lk => {
                let (new, row_exact) = self.dynamic_bias(&v.narrow(2, lk - l, l)?, true)?;
                (Tensor::cat(&[&old, &new], 2)?.contiguous()?, row_exact)
            }
            _ => self.dynamic_bias(v, true)?,
        };
        if row_exact {
            *slot = Some(bias.clone());
        }
        Ok(bias)
    }

    /// x: [B, L, d], the normed hidden states of positions `past .. past + L`; with `documents`
    /// (packed rows, no cache) each query attends only inside its own document.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        cache: Option<&mut LayerCache>,
        documents: Option<&Documents>,
    ) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let (h, kv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let groups = h / kv;

        let heads = |t: Tensor, n: usize| t.reshape((b, l, n, hd));
        let normed = |t: Tensor, norm: &Option<RmsNorm>| match norm {
            Some(norm) => norm.forward(&t),
            None => Ok(t),
        };
        let q = normed(
            heads(project(&self.q_proj, x, self.fused)?, h)?,
            &self.q_norm,
        )?
        .transpose(1, 2)?
        .contiguous()?;
        let k = normed(
            heads(project(&self.k_proj, x, self.fused)?, kv)?,
            &self.k_norm,
        )?
        .transpose(1, 2)?
        .contiguous()?;
        let v = heads(project(&self.v_proj, x, self.fused)?, kv)?
            .transpose(1, 2)?
            .contiguous()?;
        let q = apply_rotary(&q, &rope.0, &rope.1, self.fused)?;
        let k = apply_rotary(&k, &rope.0, &rope.1, self.fused)?;

        let decoding = cache.is_some();
        let mut cache_bias = None;
        let (k, v, past) = match cache {
            None => (k, v, 0),
            Some(c) => {
                cache_bias = Some(&mut c.bias);
                let (k, v, past) = match c.kv.take() {
                    None => (k, v, 0),
                    Some((pk, pv)) => {
                        let past = pk.dim(2)?;
                        (
                            Tensor::cat(&[&pk, &k], 2)?.contiguous()?,
                            Tensor::cat(&[&pv, &v], 2)?.contiguous()?,
                            past,
                        )
                    }
                };
                c.kv = Some((k.clone(), v.clone()));
                (k, v, past)
            }
        };
        let lk = past + l;
        let bias = self.cached_bias(&v, l, cache_bias)?; // [B, nb, Lk]
                                                         // Query heads per bias row: the whole key/value group (transformers) or one (SmallDoge).
        let (nb, per_bias) = (self.bias_heads, h / self.bias_heads);

        // Which keys each query row keeps: causal (and sliding window), then the top keep_window_size
        // biases when the row sees more keys than that.
        let keep = attention_keep_mask(&KeepMaskInput {
            bias: &bias,
            query_len: l,
            past,
            keep_window_size: self.keep_window_size,
            sliding_window: self.sliding_window,
            documents,
        })?; // u8 [B or 1, nb or 1, L, Lk]
        let scaling = (hd as f64).powf(-0.5);
        if self.fused && fusable(&q) {
            // Generation steps only: an uncached pass keeps the training path's numbers (see
            // `dynamic_bias`).
            let tracking = [&q, &k, &v, &bias].iter().any(|t| t.track_op());
            if decoding
                && !tracking
                && groups * l <= ops::decode::MAX_ROWS
                && autocast::matmul_dtype().is_none()
            {
                let q = q.reshape((b, kv, groups * l, hd))?;
                let out = ops::decode::attend(&q, &k, &v, &bias, &keep, scaling)?
                    .reshape((b, h, l, hd))?
                    .transpose(1, 2)?
                    .reshape((b, l, h * hd))?;
                return project(&self.o_proj, &out, self.fused);
            }
            // [B, Hkv, G·L, Lk] scores are [B, nb, (H/nb)·L, Lk] rows of the same memory.
            let scores = autocast::matmul(&q.reshape((b, kv, groups * l, hd))?, &k.t()?)?
                .reshape((b, nb, per_bias * l, lk))?;
            let probs = ops::attention::masked_softmax(&scores, &bias, &keep, scaling)?
                .reshape((b, kv, groups * l, lk))?;
            let out = autocast::matmul(&probs, &v)?
                .reshape((b, h, l, hd))?
                .transpose(1, 2)?
                .reshape((b, l, h * hd))?;
            return project(&self.o_proj, &out, self.fused);
        }
        let shape = (b, nb, l, lk);
        let keep = keep.broadcast_as(shape)?;
        let min = Tensor::new(MASK_VALUE, x.device())?
            .to_dtype(x.dtype())?
            .broadcast_as(shape)?;
        let mask = keep.where_cond(&bias.unsqueeze(2)?.broadcast_as(shape)?, &min)?;

        // On CUDA (float32 attention): the flash-style kernels, which never materialise the
        // [L, Lk] scores. Scoring and generation always; training only with
        // DOGE_CUDA_ATTENTION=fused until a GPU run shows it beats cuBLAS's (bf16) products.
        #[cfg(feature = "cuda")]
        if self.fused && crate::cuda::fusable(&q) {
            // The kernels index the mask by key/value head; a bias per query head needs the keys
            // and values repeated to one head each (a differentiable broadcast).
            let (k, v) = if nb == kv {
                (k.clone(), v.clone())
            } else {
                (repeat_kv(&k, groups)?, repeat_kv(&v, groups)?)
            };
            let (k, v) = (&k, &v);
            let tracking = [&q, k, v, &mask].iter().any(|t| t.track_op());
            let out = if !tracking && autocast::matmul_dtype().is_none() {
                Some(crate::cuda::ops::dma_attention_forward(
                    &q, k, v, &mask, scaling,
                )?)
            } else if tracking && crate::cuda::fused_attention_training() {
                Some(crate::cuda::ops::dma_attention(&q, k, v, &mask, scaling)?)
            } else {
                None
            };
            if let Some(out) = out {
                let out = out.transpose(1, 2)?.reshape((b, l, h * hd))?;
                return project(&self.o_proj, &out, self.fused);
            }
        }

        // Query head h reads kv head h / groups: fold the groups into the row axis instead of
        // repeating keys and values.
        let q = q.reshape((b, kv, groups * l, hd))?;
        let scores =
            (autocast::matmul(&q, &k.t()?)? * scaling)?.reshape((b, nb, per_bias, l, lk))?;
        let scores = scores.broadcast_add(&mask.unsqueeze(2)?)?;
        let probs = softmax_last_dim(&scores)?.reshape((b, kv, groups * l, lk))?;
        let out = autocast::matmul(&probs, &v)?
            .reshape((b, h, l, hd))?
            .transpose(1, 2)?
            .reshape((b, l, h * hd))?;
        project(&self.o_proj, &out, self.fused)
    }
}

/// Keys or values [B, Hkv, Lk, hd] repeated to [B, Hkv·groups, Lk, hd], query head h reading
/// kv head h / groups (transformers' `repeat_kv`).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn repeat_kv(t: &Tensor, groups: usize) -> Result<Tensor> {
    let (b, kv, lk, hd) = t.dims4()?;
    t.unsqueeze(2)?
        .broadcast_as((b, kv, groups, lk, hd))?
        .reshape((b, kv * groups, lk, hd))
}

/// SwiGLU: down(silu(gate(x)) * up(x)).
#[derive(Debug, Clone)]
pub struct DogeMlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    fused: bool,
}

impl DogeMlp {
    pub fn load(cfg: &DogeConfig, vb: VarBuilder) -> Result<Self> {
        let (d, ff, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Self {
            gate_proj: linear(d, ff, bias, vb.pp("gate_proj"))?,
            up_proj: linear(d, ff, bias, vb.pp("up_proj"))?,
            down_proj: linear(ff, d, bias, vb.pp("down_proj"))?,
            fused: ops::fused_by_default(),
        })
    }
}

impl Module for DogeMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (gate, up) = (
            project(&self.gate_proj, x, self.fused)?,
            project(&self.up_proj, x, self.fused)?,
        );
        let gated = if self.fused && fusable(&gate) {
            ops::swiglu::swiglu(&gate, &up)?
        } else {
            (gate.silu()? * up)?
        };
        project(&self.down_proj, &gated, self.fused)
    }
}

/// CDMoE (spec 2.8): the shared SwiGLU plus product-key routed rank-1 experts. Each token is routed
/// by its own router logits (first K for the first key set, last K for the second); transformers'
/// DogeCDMoE instead views the [B, L, 2K] logits as [2, B*L, K], mixing tokens and batch rows.
#[derive(Debug, Clone)]
pub struct DogeCdMoe {
    shared: DogeMlp,
    router_gate: Linear,
    down_embed: Embedding,
    up_embed: Embedding,
    num_keys: usize,
    top_k: usize,
    norm_topk_prob: bool,
}

impl DogeCdMoe {
    pub fn load(cfg: &DogeConfig, vb: VarBuilder) -> Result<Self> {
        let (d, e, k) = (cfg.hidden_size, cfg.num_experts, cfg.num_router_keys());
        Ok(Self {
            shared: DogeMlp::load(cfg, vb.clone())?,
            router_gate: linear(d, 2 * k, false, vb.pp("router_gate"))?,
            down_embed: Embedding::new(vb.pp("down_embed").get((e, d), "weight")?, d),
            up_embed: Embedding::new(vb.pp("up_embed").get((e, d), "weight")?, d),
            num_keys: k,
            top_k: cfg.num_experts_per_tok,
            norm_topk_prob: cfg.norm_topk_prob,
        })
    }
}

impl Module for DogeCdMoe {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let n = b * l;
        let flat = x.reshape((n, d))?;
        let logits = self.router_gate.forward(&flat)?; // [N, 2K]
        let route = route_tokens(&logits, self.num_keys, self.top_k)?;
        let k = self.top_k;
        // Scores of the chosen experts, gathered from the logits so the router gets a gradient.
        let scores =
            (logits.gather(&route.first_key, 1)? + logits.gather(&route.second_key, 1)?)?;
        let mut weights = softmax_last_dim(&scores)?; // [N, k]
        if self.norm_topk_prob {
            weights = weights.broadcast_div(&weights.sum_keepdim(1)?)?;
        }
        let down = self
            .down_embed
            .embeddings()
            .index_select(&route.experts, 0)?
            .reshape((n, k, d))?;
        let up = self
            .up_embed
            .embeddings()
            .index_select(&route.experts, 0)?
            .reshape((n, k, d))?;
        let act = down.matmul(&flat.unsqueeze(2)?)?.squeeze(2)?.silu()?; // [N, k]
        let coef = (act * weights)?.unsqueeze(1)?; // [N, 1, k]
        let routed = coef.matmul(&up)?.squeeze(1)?; // [N, d]
        self.shared.forward(x)? + routed.reshape((b, l, d))?
    }
}

#[derive(Debug, Clone)]
pub enum Feedforward {
    Dense(DogeMlp),
    Moe(DogeCdMoe),
}

impl Feedforward {
    fn set_fused(&mut self, fused: bool) {
        match self {
            Feedforward::Dense(m) => m.fused = fused,
            Feedforward::Moe(m) => m.shared.fused = fused,
        }
    }
}

impl Module for Feedforward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Feedforward::Dense(m) => m.forward(x),
            Feedforward::Moe(m) => m.forward(x),
        }
    }
}

/// h' = r1 * h + attn(norm(h)); h'' = r2 * h' + mlp(norm(h')) (spec 2.6).
#[derive(Debug, Clone)]
pub struct DogeDecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: DogeAttention,
    input_residual: Tensor,
    post_attention_layernorm: RmsNorm,
    mlp: Feedforward,
    post_attention_residual: Tensor,
    fused: bool,
}

impl DogeDecoderLayer {
    pub fn load(cfg: &DogeConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let mlp = if cfg.is_moe {
            Feedforward::Moe(DogeCdMoe::load(cfg, vb.pp("mlp"))?)
        } else {
            Feedforward::Dense(DogeMlp::load(cfg, vb.pp("mlp"))?)
        };
        Ok(Self {
            input_layernorm: RmsNorm::load(d, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            self_attn: DogeAttention::load(cfg, vb.pp("self_attn"))?,
            input_residual: vb.get(d, "input_residual")?,
            post_attention_layernorm: RmsNorm::load(
                d,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp,
            post_attention_residual: vb.get(d, "post_attention_residual")?,
            fused: ops::fused_by_default(),
        })
    }

    fn set_fused(&mut self, fused: bool) {
        self.fused = fused;
        self.input_layernorm.fused = fused;
        self.post_attention_layernorm.fused = fused;
        self.self_attn.set_fused(fused);
        self.mlp.set_fused(fused);
    }

    pub fn forward(
        &self,
        h: &Tensor,
        rope: &(Tensor, Tensor),
        cache: Option<&mut LayerCache>,
        documents: Option<&Documents>,
    ) -> Result<Tensor> {
        let attn =
            self.self_attn
                .forward(&self.input_layernorm.forward(h)?, rope, cache, documents)?;
        let h = self.residual(h, &self.input_residual, &attn)?;
        let mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?;
        self.residual(&h, &self.post_attention_residual, &mlp)
    }

    /// h·r + x, r scaling each row.
    fn residual(&self, h: &Tensor, r: &Tensor, x: &Tensor) -> Result<Tensor> {
        if self.fused && fusable(h) {
            return ops::residual::scaled_residual(h, r, x);
        }
        h.broadcast_mul(r)? + x
    }
}

/// The full causal LM: embeddings, decoder layers, final norm, (tied) lm_head.
#[derive(Debug, Clone)]
pub struct DogeForCausalLM {
    embed_tokens: Embedding,
    layers: Vec<DogeDecoderLayer>,
    norm: RmsNorm,
    lm_head: Tensor,
    rotary: Rotary,
    config: DogeConfig,
    fused: bool,
}

impl DogeForCausalLM {
    /// Builds the model from tensors named as in the checkpoint (`model.layers.0.self_attn.A`, ...).
    pub fn load(cfg: &DogeConfig, vb: VarBuilder) -> Result<Self> {
        let (v, d) = (cfg.vocab_size, cfg.hidden_size);
        let m = vb.pp("model");
        let embed = m.pp("embed_tokens").get((v, d), "weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            vb.pp("lm_head").get((v, d), "weight")?
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DogeDecoderLayer::load(cfg, m.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens: Embedding::new(embed, d),
            layers,
            norm: RmsNorm::load(d, cfg.rms_norm_eps, m.pp("norm"))?,
            lm_head,
            rotary: Rotary::new(cfg),
            config: cfg.clone(),
            fused: ops::fused_by_default(),
        })
    }

    pub fn config(&self) -> &DogeConfig {
        &self.config
    }

    /// With dynamic-NTK RoPE, the original context: a forward longer than it rotates with a base
    /// that depends on that forward's length, so a padded batch would score a row differently
    /// from the row alone. Scorers forward such rows alone.
    pub fn batch_independent_len(&self) -> Option<usize> {
        self.rotary.dynamic.map(|(_, orig)| orig)
    }

    /// The same model computing with the fused CPU kernels (`true`, the default unless
    /// `DOGE_FUSED=0`) or with composed candle ops only (`false`).
    pub fn with_fused(mut self, fused: bool) -> Self {
        self.norm.fused = fused;
        self.fused = fused;
        for layer in &mut self.layers {
            layer.set_fused(fused);
        }
        self
    }

    pub fn fused(&self) -> bool {
        self.fused
    }

    pub fn dtype(&self) -> DType {
        self.lm_head.dtype()
    }

    pub fn device(&self) -> &Device {
        self.lm_head.device()
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// Final-normed hidden states [B, L, d] for `input_ids` [B, L] (u32), continuing `cache` when given.
    pub fn hidden_states(&self, input_ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.hidden_states_in(input_ids, cache, None)
    }

    /// [`Self::hidden_states`], each query attending only inside its document when `documents`
    /// is given.
    fn hidden_states_in(
        &self,
        input_ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        documents: Option<&Documents>,
    ) -> Result<Tensor> {
        let (_, l) = input_ids.dims2()?;
        let past = cache.as_ref().map(|c| c.seq_len()).unwrap_or(0);
        let rope = self.rotary.tables(past, l, self.dtype(), self.device())?;
        let mut h = self.embed_tokens.forward(input_ids)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            h = layer.forward(&h, &rope, layer_cache, documents)?;
        }
        self.norm.forward(&h)
    }

    /// Logits [..., V] from hidden states [..., d] (any leading dims: [B, L, d], or the [N, d]
    /// rows a scorer picked).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let dims = hidden.dims();
        let d = *dims.last().unwrap_or(&0);
        let rows = hidden.elem_count() / d.max(1);
        // A few positions without gradient (generation): one streaming pass over the lm_head.
        if self.fused
            && fusable(hidden)
            && rows <= 4
            && !hidden.track_op()
            && !self.lm_head.track_op()
        {
            let mut shape = dims.to_vec();
            *shape.last_mut().expect("hidden states have a last dim") = self.lm_head.dim(0)?;
            let flat = hidden.reshape((rows, d))?;
            return ops::matvec::linear_rows(&flat, &self.lm_head)?.reshape(shape);
        }
        autocast::matmul(hidden, &self.lm_head.t()?)
    }

    /// Logits [B, L, V] for every position.
    pub fn forward(&self, input_ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.logits(&self.hidden_states(input_ids, cache)?)
    }

    /// Mean next-token cross-entropy of `input_ids` [B, L] against `labels` [B, L] (i64, -100
    /// ignored, unshifted), as [`causal_lm_loss`] of [`Self::forward`], without materialising the
    /// logits when the fused kernels are on.
    pub fn loss(&self, input_ids: &Tensor, labels: &Tensor) -> Result<Tensor> {
        self.loss_in(input_ids, labels, None)
    }

    /// [`Self::loss`] over rows that pack several documents: with `documents`, attention stays
    /// inside each document, so every document's loss is what it would be alone in a row.
    pub fn loss_in(
        &self,
        input_ids: &Tensor,
        labels: &Tensor,
        documents: Option<&Documents>,
    ) -> Result<Tensor> {
        let hidden = self.hidden_states_in(input_ids, None, documents)?;
        #[cfg(feature = "cuda")]
        if self.fused && crate::cuda::fusable(&hidden) {
            return crate::cuda::ops::causal_lm_loss(&self.logits(&hidden)?, labels, IGNORE_INDEX);
        }
        if !(self.fused && fusable(&hidden)) {
            return causal_lm_loss(&self.logits(&hidden)?, labels);
        }
        let (b, l, d) = hidden.dims3()?;
        if l < 2 {
            candle_core::bail!("the loss needs at least two positions, found {l}");
        }
        let hidden = hidden.narrow(1, 0, l - 1)?.reshape((b * (l - 1), d))?;
        let targets = labels.narrow(1, 1, l - 1)?.reshape(b * (l - 1))?;
        ops::cross_entropy::linear_cross_entropy(&hidden, &self.lm_head, &targets)
    }

    /// Logits [B, V] of the last position only (what generation needs; saves the lm_head on the rest).
    pub fn forward_last(&self, input_ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let hidden = self.hidden_states(input_ids, cache)?;
        let l = hidden.dim(1)?;
        self.logits(&hidden.narrow(1, l - 1, 1)?)?.squeeze(1)
    }
}

/// Label value that carries no loss.
pub const IGNORE_INDEX: i64 = -100;

/// Mean next-token cross-entropy: position t predicts label t+1; labels equal to -100 are skipped.
/// `labels` is [B, L] i64, unshifted (as transformers' `ForCausalLMLoss`).
pub fn causal_lm_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, l, v) = logits.dims3()?;
    if l < 2 {
        candle_core::bail!("the loss needs at least two positions, found {l}");
    }
    let logits = logits.narrow(1, 0, l - 1)?.reshape((b * (l - 1), v))?;
    let targets = labels.narrow(1, 1, l - 1)?.reshape(b * (l - 1))?;
    let valid = targets.ge(0i64)?;
    let safe_targets = valid
        .where_cond(&targets, &targets.zeros_like()?)?
        .to_dtype(DType::U32)?;
    let logp = log_softmax_last_dim(&logits)?
        .gather(&safe_targets.unsqueeze(1)?, 1)?
        .squeeze(1)?;
    let valid_f = valid.to_dtype(logp.dtype())?;
    let count = valid_f.sum_all()?;
    (logp * valid_f)?.sum_all()?.neg()?.broadcast_div(&count)
}
