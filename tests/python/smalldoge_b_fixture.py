"""Make reference fixtures of the SmallDoge remote-code model ("variant B") with small-doge's own code.

What it does
  1. Self-check: loads the shared reference ``smalldoge-b/dense-b`` (made by the same method) into
     small-doge's ``DogeForCausalLM`` (eager attention, float32, CPU) and recomputes every row of its
     score.jsonl (nll and last_logits, within 1e-5); generate.jsonl and train.json are recomputed and
     compared too. Skipped with a notice when that folder is absent (``--self-check-ref``).
  2. Builds two tiny models with small-doge's classes, perturbs every parameter away from its initial
     value (fixed seed) and writes each under ``--out`` as a hub-repo-like folder: config.json
     (``save_pretrained`` of small-doge's DogeConfig, with ``auto_map`` pointing at
     configuration_doge.DogeConfig / modeling_doge.DogeForCausalLM), model.safetensors,
     generation_config.json, and score.jsonl / generate.jsonl / train.json in the format of
     shared/ref (see shared/ref/README.md). small-doge's .py files are NOT copied into --out.
       - moe-b: is_moe, 16 experts (4 keys), top-4, tied embeddings, default RoPE.
       - gqa-b: 4 query heads / 2 kv heads, attention_bias (dt_proj has a bias [4]), untied lm_head,
         max_position_embeddings 16 with rope_scaling {"rope_type": "dynamic", "factor": 4.0}; score
         sequences of 12, 24, 40, 48 tokens and generations of 16 tokens from 12-13-token prompts
         (decoding runs to position 28), so dynamic NTK is active.
     Every sequence is resampled until no near-tie (relative gap < 2e-5) sits between the k-th and
     (k+1)-th visible dynamic-mask bias of any layer, query head, row or decode step (train forwards
     included), no CDMoE routing near-tie (gap < 2e-5 between the top_k-th and next candidate score),
     greedy margins are > 1e-3, greedy output never reaches eos, and (gqa-b) the first greedy output differs
     from the one the same model gives with the NTK update switched off. A model seed whose cases cannot
     be found in ATTEMPTS tries is replaced by the next seed (the seed used is printed).
     Perturbation (fixed seed): A = N(0,1); other 1-D weights (norms, residuals) 1 + 0.1 N; biases
     0.1 N; dt_proj / router_gate weights += 0.3 N and q_proj / k_proj weights += 0.2 N (wider, see
     WIDE / WIDE_QK); every other matrix += 0.02 N.

Pinned small-doge: SmallDoges/small-doge commit 0e305a735708fd277f5a8e9fd36954492aba28f1
(src/small_doge/models/doge/{configuration_doge,modeling_doge}.py), run on transformers 4.56.2,
torch 2.8.0 (CPU).

Patches applied to small-doge's code (monkeypatched here, only for the MoE; dense models unaffected):
  * DogeDecoderLayer.forward: small-doge passes the CDMoE's (states, router_logits) tuple to dropout
    and crashes on is_moe; the patched copy passes the states alone on (identical otherwise).
  * DogeCDMoE.forward: small-doge does ``router_gate(x).view(2, B*L, K)``, which reinterprets the
    [B, L, 2K] logits and mixes tokens (doge-architecture.md section 2.8). The patched copy routes
    each token by its own logits: ``view(B*L, 2, K).transpose(0, 1)``, i.e. the first K logits of a
    token score the first key set and the last K the second. Everything else is small-doge's code
    unchanged (top-K per key set, top-k over the K*K candidate sums, softmax over the selected,
    silu(down_embed . x) * weight summed against up_embed, plus the shared SwiGLU).

Dynamic NTK RoPE is stateful in transformers (dynamic_rope_update grows inv_freq when
max(position_ids)+1 exceeds max_seq_len_cached and keeps it). The rotary state is reset to the
freshly-initialised one before EACH scored sequence, each generation and the training run, so every
reference equals the output of a freshly loaded model. (small-doge's DogeRotaryEmbedding uses
transformers' ROPE_INIT_FUNCTIONS and @dynamic_rope_update. A full forward of L > 16 tokens rotates
every position with the NTK base for seq_len = L; within one generation the state evolves as in
transformers: the prefill (<= 16 tokens) uses the default frequencies, and each decode step at
position p >= 16 recomputes inv_freq for seq_len = p + 1, while cached keys keep the rotation they got.)
Each reference is also cross-checked against a model freshly loaded from the written folder.
Runs on one CPU thread; the output is byte-for-byte reproducible.

Regenerate (from the repository root):
  mkdir -p /tmp/small-doge
  for f in configuration_doge.py modeling_doge.py; do
    git -C /work/.mirror/SmallDoges+small-doge/repo show \
      0e305a735708fd277f5a8e9fd36954492aba28f1:src/small_doge/models/doge/$f > /tmp/small-doge/$f
  done
  /root/pyref456/bin/python tests/python/smalldoge_b_fixture.py \
      --small-doge /tmp/small-doge --out tests/fixtures/smalldoge-b
(/root/pyref456: a venv with torch==2.8.0 transformers==4.56.2 safetensors numpy.)
"""
import argparse
import importlib.util
import json
import math
import os
import random
import shutil
import sys
import types

import torch
import torch.nn.functional as F

PKG = "small_doge_ref"
TIE_REL_GAP = 2e-5
MOE_GAP = 2e-5
MIN_MARGIN = 1e-3
AUTO_MAP = {
    "AutoConfig": "configuration_doge.DogeConfig",
    "AutoModelForCausalLM": "modeling_doge.DogeForCausalLM",
}
TRAIN = {"lr": 0.003, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.01, "grad_clip": 1.0,
         "schedule": "constant"}
LOW_ID = 3  # sequences avoid bos 0 / eos 1 / pad 2
# dt_proj and router_gate get a wider perturbation than the other matrices (0.02): with 0.02 the
# dynamic-mask biases and routing scores are so close together that no 2 x 32 training batch is free of
# near-ties over its six forwards.
WIDE = 0.3
# q_proj / k_proj too (+0.2 N), so attention scores are O(1) and depend on RoPE: with 0.02 the dynamic NTK
# frequencies change the gqa-b logits by only ~3e-3 and greedy decoding not at all.
WIDE_QK = 0.2
ATTEMPTS = {"score": 400, "generate": 400, "train": 200}  # per item, before moving to the next model seed


def load_small_doge(folder):
    """Import configuration_doge.py and modeling_doge.py from `folder` as package PKG."""
    pkg = types.ModuleType(PKG)
    pkg.__path__ = [os.path.abspath(folder)]
    sys.modules[PKG] = pkg
    mods = {}
    for name in ("configuration_doge", "modeling_doge"):
        spec = importlib.util.spec_from_file_location(f"{PKG}.{name}", os.path.join(folder, f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods["configuration_doge"], mods["modeling_doge"]


# ---------------------------------------------------------------------------------------------------
# Recording hooks (attention dynamic bias and MoE routing), and the MoE patches.

class Recorder:
    def __init__(self):
        self.attn = []  # (layer, dt_states [B,H,Lk], causal mask [B,1,L,Lk], keep_window_size)
        self.moe = []  # router logits [2, N, K] (per-token), top_k
        self.on = True

    def clear(self):
        self.attn.clear()
        self.moe.clear()


REC = Recorder()


def install_hooks(M):
    orig = M.DogeAttention.prepare_dynamic_mask

    def prepare_dynamic_mask(self, hidden_states, dt_states, keep_window_size=2048, attention_mask=None):
        if REC.on:
            REC.attn.append((self.layer_idx, dt_states.detach().clone(),
                             None if attention_mask is None else attention_mask.detach().clone(),
                             keep_window_size))
        return orig(self, hidden_states, dt_states, keep_window_size=keep_window_size,
                    attention_mask=attention_mask)

    M.DogeAttention.prepare_dynamic_mask = prepare_dynamic_mask


def patch_moe(M):
    def cdmoe_forward(self, hidden_states, **kwargs):
        bsz, seq_len, _ = hidden_states.shape

        # PATCH: per-token routing (small-doge: .view(2, bsz * seq_len, -1))
        router_logits = self.router_gate(hidden_states).view(bsz * seq_len, 2, -1).transpose(0, 1)
        if REC.on:
            REC.moe.append((router_logits.detach().clone(), self.top_k))

        # from here on small-doge's code unchanged
        (scores_x, scores_y), (indices_x, indices_y) = router_logits.topk(self.num_keys, dim=-1)
        all_scores = scores_x.unsqueeze(-1) + scores_y.unsqueeze(-2)
        all_indices = indices_x.unsqueeze(-1) * self.num_keys + indices_y.unsqueeze(-2)
        all_scores = all_scores.view(*all_scores.shape[:-2], -1)
        all_indices = all_indices.view(*all_indices.shape[:-2], -1)
        scores, position_indices = all_scores.topk(self.top_k, dim=-1)
        indices = all_indices.gather(-1, position_indices)
        routing_weights = F.softmax(scores, dim=-1)
        if self.norm_topk_prob:
            routing_weights /= routing_weights.sum(dim=-1, keepdim=True)

        down_embed = self.down_embed(indices)
        up_embed = self.up_embed(indices)
        experts_weights = torch.matmul(down_embed, hidden_states.view(bsz * seq_len, -1, 1)).view(bsz * seq_len, -1)
        experts_weights = self.act_fn(experts_weights) * routing_weights
        experts_states = torch.matmul(experts_weights.view(bsz * seq_len, 1, -1), up_embed).view(bsz, seq_len, -1)
        hidden_states = self.down_proj(self.act_fn(self.gate_proj(hidden_states)) * self.up_proj(hidden_states))
        hidden_states = hidden_states + experts_states
        return hidden_states, router_logits

    def decoder_forward(self, hidden_states, position_embeddings, attention_mask=None, position_ids=None,
                        past_key_value=None, use_cache=False, cache_position=None, **kwargs):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states, self_attn_weights = self.self_attn(
            hidden_states=hidden_states,
            position_embeddings=position_embeddings,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_value=past_key_value,
            use_cache=use_cache,
            cache_position=cache_position,
            **kwargs,
        )
        hidden_states = F.dropout(hidden_states, p=self.hidden_dropout, training=self.training)
        hidden_states = self.input_residual * residual + hidden_states

        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        if isinstance(hidden_states, tuple):  # PATCH: CDMoE returns (states, router_logits)
            hidden_states = hidden_states[0]
        hidden_states = F.dropout(hidden_states, p=self.hidden_dropout, training=self.training)
        hidden_states = self.post_attention_residual * residual + hidden_states
        return hidden_states

    orig_moe = M.DogeCDMoE.forward
    M.DogeCDMoE.forward = cdmoe_forward
    M.DogeDecoderLayer.forward = decoder_forward
    return orig_moe


def tie_gaps():
    """Smallest relative gap between the k-th and (k+1)-th visible bias over the recorded attention calls
    (rows with more visible keys than the window), and smallest MoE gap (top_k-th vs next candidate)."""
    attn_gap = math.inf
    for _layer, dt, mask, w in REC.attn:
        assert mask is not None, "eager attention must receive a materialised causal mask"
        b_, h_, lk = dt.shape
        vis = mask[:, 0, :, :lk] == 0  # [B, L, Lk]
        for b in range(b_):
            for i in range(vis.shape[1]):
                if int(vis[b, i].sum()) <= w:
                    continue
                vals = dt[b][:, vis[b, i]]  # [H, visible]
                s = vals.sort(dim=-1, descending=True).values
                gap = (s[:, w - 1] - s[:, w]) / s[:, w - 1].abs()
                attn_gap = min(attn_gap, float(gap.min()))
    moe_gap = math.inf
    for logits, k in REC.moe:
        (sx, sy), _ = logits.topk(logits.shape[-1], dim=-1)
        cand = (sx.unsqueeze(-1) + sy.unsqueeze(-2)).flatten(-2)
        s = cand.sort(dim=-1, descending=True).values
        moe_gap = min(moe_gap, float((s[:, k - 1] - s[:, k]).min()))
    return attn_gap, moe_gap


def gaps_ok(attn_gap, moe_gap):
    return attn_gap >= TIE_REL_GAP and moe_gap >= MOE_GAP


# ---------------------------------------------------------------------------------------------------
# Model helpers

def reset_rotary(model):
    """Put the (possibly dynamic-NTK) rotary embedding back in its freshly initialised state."""
    rot = model.model.rotary_emb
    rot.register_buffer("inv_freq", rot.original_inv_freq, persistent=False)
    rot.max_seq_len_cached = rot.original_max_seq_len


def make_model(C, M, cfg_kwargs):
    config = C.DogeConfig(**cfg_kwargs)
    config._attn_implementation = "eager"
    model = M.DogeForCausalLM(config)
    assert model.config._attn_implementation == "eager"
    return model.float()


def load_folder(M, C, folder):
    model = M.DogeForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
    assert model.config._attn_implementation == "eager"
    model.eval()
    return model


def load_state(M, C, folder, with_config_from=None):
    """Self-check loader: config.json -> DogeConfig, model.safetensors -> load_state_dict, tie."""
    from safetensors.torch import load_file

    config = C.DogeConfig.from_pretrained(with_config_from or folder)
    config._attn_implementation = "eager"
    model = M.DogeForCausalLM(config)
    missing, unexpected = model.load_state_dict(load_file(os.path.join(folder, "model.safetensors")), strict=False)
    assert not unexpected, unexpected
    assert missing == (["lm_head.weight"] if config.tie_word_embeddings else []), missing
    model.tie_weights()
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.eval()
    return model


@torch.no_grad()
def perturb(model, seed):
    torch.manual_seed(seed)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    for name, p in model.named_parameters():
        if name.endswith(".A"):
            p.copy_(torch.randn_like(p))
        elif name.endswith(".bias"):
            p.copy_(0.1 * torch.randn_like(p))
        elif p.dim() == 1:
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        elif name.endswith(("dt_proj.weight", "router_gate.weight")):
            p.add_(WIDE * torch.randn_like(p))
        elif name.endswith(("q_proj.weight", "k_proj.weight")):
            p.add_(WIDE_QK * torch.randn_like(p))
        else:
            p.add_(0.02 * torch.randn_like(p))
    for name, p in model.named_parameters():
        same = p == init[name]
        if same.any():  # a draw too small to move the float: move it deterministically
            p[same] = init[name][same] + 0.02
        assert (p != init[name]).all(), f"{name} has entries at their initial value"


@torch.no_grad()
def score(model, ids):
    reset_rotary(model)
    x = torch.tensor([ids])
    out = model(x, labels=x)
    return {"input_ids": ids, "nll": out.loss.item(), "tokens": len(ids) - 1,
            "last_logits": out.logits[0, -1].tolist()}


@torch.no_grad()
def generate(model, ids, max_new_tokens):
    reset_rotary(model)
    x = torch.tensor([ids])
    out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens, do_sample=False,
                         output_logits=True, return_dict_in_generate=True, use_cache=True,
                         bos_token_id=0, eos_token_id=1, pad_token_id=2)
    new = out.sequences[0, len(ids):].tolist()
    margin = math.inf
    for step_logits in out.logits:
        top2 = step_logits[0].topk(2).values
        margin = min(margin, float(top2[0] - top2[1]))
    return {"input_ids": ids, "max_new_tokens": max_new_tokens, "output_ids": new, "min_margin": margin}


def train(model, batch):
    reset_rotary(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN["lr"], betas=tuple(TRAIN["betas"]), eps=TRAIN["eps"],
                            weight_decay=TRAIN["weight_decay"])
    x = torch.tensor(batch)
    losses = []
    for _ in range(6):
        loss = model(x, labels=x).loss
        losses.append(loss.item())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"])
        opt.step()
        opt.zero_grad()
    model.eval()
    return {"input_ids": batch, **TRAIN, "losses": losses}


def maxdiff(a, b):
    return max(abs(x - y) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------------
# Self-check against shared/ref/smalldoge-b/dense-b

def self_check(C, M, ref):
    if not os.path.isfile(os.path.join(ref, "score.jsonl")):
        print(f"NOTICE: self-check skipped: {ref} not found")
        return
    model = load_state(M, C, ref)
    worst_nll = worst_logit = 0.0
    for line in open(os.path.join(ref, "score.jsonl")):
        row = json.loads(line)
        got = score(model, row["input_ids"])
        dn, dl = abs(got["nll"] - row["nll"]), maxdiff(got["last_logits"], row["last_logits"])
        worst_nll, worst_logit = max(worst_nll, dn), max(worst_logit, dl)
        assert dn < 1e-5 and dl < 1e-5, f"self-check failed: len {len(row['input_ids'])}: nll {dn} logit {dl}"
    print(f"self-check score.jsonl OK: max |dnll| {worst_nll:.3g}, max |dlogit| {worst_logit:.3g}")
    for line in open(os.path.join(ref, "generate.jsonl")):
        row = json.loads(line)
        got = generate(model, row["input_ids"], row["max_new_tokens"])
        assert got["output_ids"] == row["output_ids"], (got, row)
        assert abs(got["min_margin"] - row["min_margin"]) < 1e-5, (got, row)
    print("self-check generate.jsonl OK (identical tokens, margins within 1e-5)")
    tref = json.load(open(os.path.join(ref, "train.json")))
    got = train(load_state(M, C, ref), tref["input_ids"])
    d = maxdiff(got["losses"], tref["losses"])
    assert d < 1e-4, (got["losses"], tref["losses"])
    print(f"self-check train.json OK: max |dloss| {d:.3g}")


# ---------------------------------------------------------------------------------------------------
# Building a case

MOE_B = dict(
    vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=1, is_moe=True, num_experts=16, num_experts_per_tok=4, keep_window_size=8,
    tie_word_embeddings=True, bos_token_id=0, eos_token_id=1, pad_token_id=2, max_position_embeddings=128,
    rope_scaling=None, rope_theta=10000.0,
)
GQA_B = dict(
    vocab_size=256, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, attention_bias=True, keep_window_size=8, max_position_embeddings=16,
    rope_scaling={"rope_type": "dynamic", "factor": 4.0}, rope_theta=10000.0, tie_word_embeddings=False,
    bos_token_id=0, eos_token_id=1, pad_token_id=2,
)
CASES = {
    # name: (config, model seed, score lengths, (prompt length, max_new_tokens) per generation)
    "moe-b": (MOE_B, 1, [7, 12, 29, 41], [(10, 12), (10, 12), (7, 12)]),
    # gqa-b prompts are 12-13 tokens with 16 new ones (positions up to 28): with 24 new tokens the
    # greedy output repeats a token so often that an exact tie (same token, same layer-0 bias) nearly
    # always straddles the window boundary.
    "gqa-b": (GQA_B, 2, [12, 24, 40, 48], [(13, 16), (12, 16), (13, 16)]),
}


def pick(rng, n, vocab):
    return rng.sample(range(LOW_ID, vocab), n)


class GiveUp(Exception):
    pass


def build(C, M, name, out_root, stats):
    cfg, first_seed, score_lens, gens = CASES[name]
    folder = os.path.join(out_root, name)
    seed = first_seed
    while True:
        try:
            result = build_seed(C, M, cfg, seed, score_lens, gens, folder)
            break
        except GiveUp as e:
            print(f"{name}: model seed {seed}: {e}; trying seed {seed + 1}", flush=True)
            seed += 1
    score_rows, gen_rows, train_row, st = result
    with open(os.path.join(folder, "score.jsonl"), "w") as f:
        for row in score_rows:
            f.write(json.dumps(row) + "\n")
    with open(os.path.join(folder, "generate.jsonl"), "w") as f:
        for row in gen_rows:
            f.write(json.dumps(row) + "\n")
    with open(os.path.join(folder, "train.json"), "w") as f:
        f.write(json.dumps(train_row))
    st["model_seed"] = seed
    st["files"] = {f: os.path.getsize(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}
    stats[name] = st
    print(f"{name}: {json.dumps(st)}", flush=True)


def build_seed(C, M, cfg, seed, score_lens, gens, folder):
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    model = make_model(C, M, cfg)
    perturb(model, seed)
    model.eval()
    model.config.auto_map = dict(AUTO_MAP)
    model.config.dtype = torch.float32
    model.save_pretrained(folder, safe_serialization=True)
    assert not [f for f in os.listdir(folder) if f.endswith(".py")]
    saved = json.load(open(os.path.join(folder, "config.json")))
    assert saved["auto_map"] == AUTO_MAP, saved
    model = load_state(M, C, folder)  # the model exactly as written
    fresh = lambda: load_folder(M, C, folder)  # noqa: E731

    rng = random.Random(1000 + seed)
    vocab = cfg["vocab_size"]
    st = {"attn_gap": math.inf, "moe_gap": math.inf, "min_margin": math.inf, "resampled": 0}

    def search(kind, attempt):
        """Call attempt() -> (row, extra_ok) with the recorder cleared until the row is tie-free."""
        for _ in range(ATTEMPTS[kind]):
            REC.clear()
            row, extra = attempt()
            ag, mg = tie_gaps()
            if gaps_ok(ag, mg) and extra:
                st["attn_gap"], st["moe_gap"] = min(st["attn_gap"], ag), min(st["moe_gap"], mg)
                return row
            st["resampled"] += 1
        raise GiveUp(f"no tie-free {kind} case in {ATTEMPTS[kind]} attempts")

    # the training batch first: it is the hardest to find (six forwards of 2 x 32 tokens)
    def train_attempt():
        batch = [pick(rng, 32, vocab) for _ in range(2)]
        return train(load_state(M, C, folder), batch), True

    train_row = search("train", train_attempt)
    REC.on = False
    chk = train(fresh(), train_row["input_ids"])
    REC.on = True
    assert maxdiff(chk["losses"], train_row["losses"]) < 1e-6, (chk["losses"], train_row["losses"])

    score_rows = []
    for n in score_lens:
        row = search("score", lambda: (score(model, pick(rng, n, vocab)), True))
        REC.on = False
        chk = score(fresh(), row["input_ids"])
        REC.on = True
        assert abs(chk["nll"] - row["nll"]) < 1e-6 and maxdiff(chk["last_logits"], row["last_logits"]) < 1e-6
        score_rows.append(row)

    rot = model.model.rotary_emb
    dynamic = rot.rope_type == "dynamic"
    gen_rows = []
    for g, (plen, new) in enumerate(gens):
        def gen_attempt():
            row = generate(model, pick(rng, plen, vocab), new)
            ok = len(row["output_ids"]) == new and row["min_margin"] > MIN_MARGIN
            if ok and dynamic and g == 0:  # decoding past max_position_embeddings must depend on the NTK update
                REC.on = False
                rot.rope_type = "default"
                ok = generate(model, row["input_ids"], new)["output_ids"] != row["output_ids"]
                rot.rope_type = "dynamic"
                REC.on = True
            return row, ok

        row = search("generate", gen_attempt)
        REC.on = False
        chk = generate(fresh(), row["input_ids"], new)
        REC.on = True
        assert chk["output_ids"] == row["output_ids"] and abs(chk["min_margin"] - row["min_margin"]) < 1e-6
        st["min_margin"] = min(st["min_margin"], row["min_margin"])
        gen_rows.append(row)
    return score_rows, gen_rows, train_row, st


def check_moe_causal(C, M):
    """Per-token routing is causal: a prefix scores like the same positions of a longer sequence, and the
    patched router equals small-doge's for a single token (B*L = 1)."""
    model = make_model(C, M, MOE_B)
    perturb(model, 123)
    model.eval()
    REC.on = False
    with torch.no_grad():
        x = torch.tensor([random.Random(5).sample(range(LOW_ID, 256), 20)])
        full = model(x).logits
        part = model(x[:, :13]).logits
        assert (full[:, :13] - part).abs().max() < 1e-5
        moe = model.model.layers[0].mlp
        h = torch.randn(1, 1, 32)
        assert torch.equal(moe(h)[0], M.DogeCDMoE._small_doge_forward(moe, h)[0])
    REC.on = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small-doge", required=True, help="folder with small-doge's configuration_doge.py, modeling_doge.py")
    ap.add_argument("--out", required=True)
    ap.add_argument("--self-check-ref", default="/work/shared/ref/smalldoge-b/dense-b")
    args = ap.parse_args()

    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    torch.set_num_threads(1)
    C, M = load_small_doge(args.small_doge)
    install_hooks(M)
    self_check(C, M, args.self_check_ref)
    M.DogeCDMoE._small_doge_forward = patch_moe(M)
    check_moe_causal(C, M)

    os.makedirs(args.out, exist_ok=True)
    stats = {}
    for name in CASES:
        build(C, M, name, args.out, stats)


if __name__ == "__main__":
    main()
