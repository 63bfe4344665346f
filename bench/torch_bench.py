"""The PyTorch side of bench/compare.py: transformers' DogeForCausalLM (eager attention, float32)
timed on the same shapes as `doge bench`, printing one JSON object in `doge bench --json`'s schema.

  torch_bench.py train CONFIG_JSON --batch B --seq L --steps N --warmup W --threads T
  torch_bench.py generate CONFIG_JSON --prompt-len P --new-tokens N --runs R --warmup W --threads T

Run by compare.py with a Python that has torch and transformers; never by the Rust tests.
"""
import argparse
import json
import resource
import statistics
import time

import torch
from transformers import DogeConfig, DogeForCausalLM


def model_from(config_path, seed):
    with open(config_path) as f:
        cfg = DogeConfig(**json.load(f))
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    return DogeForCausalLM(cfg).float(), cfg


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def bench_train(a):
    model, cfg = model_from(a.config, a.seed)
    model.train()
    # The same recipe as doge's bench (spec 7.1 values; they do not change the cost of a step).
    opt = torch.optim.AdamW(model.parameters(), lr=8e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)
    g = torch.Generator().manual_seed(a.seed + 1)
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=g)

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    loss = float("nan")
    for _ in range(a.warmup):
        loss = step()
    seconds = []
    cpu0 = cpu_seconds()
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        seconds.append(time.perf_counter() - t0)
    cpu = (cpu_seconds() - cpu0) / a.steps
    tokens = a.batch * a.seq
    return {
        "tokens_per_step": tokens,
        "step_seconds": {"seconds": seconds},
        "tokens_per_s": tokens / statistics.median(seconds),
        "peak_rss_bytes": peak_rss_bytes(),
        "final_loss": loss,
        "cpu_seconds_per_step": cpu,
    }


def bench_generate(a):
    model, cfg = model_from(a.config, a.seed)
    model.eval()
    g = torch.Generator().manual_seed(a.seed + 1)
    prompt = torch.randint(0, cfg.vocab_size, (1, a.prompt_len), generator=g)

    def run():
        with torch.no_grad():
            out = model.generate(
                prompt,
                max_new_tokens=a.new_tokens,
                min_new_tokens=a.new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=cfg.pad_token_id,
            )
        assert out.shape[1] == a.prompt_len + a.new_tokens

    for _ in range(a.warmup):
        run()
    seconds = []
    cpu0 = cpu_seconds()
    for _ in range(a.runs):
        t0 = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - t0)
    cpu = (cpu_seconds() - cpu0) / a.runs
    return {
        "new_tokens": a.new_tokens,
        "run_seconds": {"seconds": seconds},
        "tokens_per_s": a.new_tokens / statistics.median(seconds),
        "peak_rss_bytes": peak_rss_bytes(),
        "cpu_seconds_per_run": cpu,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["train", "generate"])
    p.add_argument("config")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    result = bench_train(a) if a.mode == "train" else bench_generate(a)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
