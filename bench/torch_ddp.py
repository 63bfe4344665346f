"""The PyTorch side of bench/dist_scaling.py: transformers' DogeForCausalLM (eager attention,
float32) trained on random ids, one process or several under `torch.distributed.run` with
DistributedDataParallel over gloo (PyTorch's CPU backend). Prints one JSON line:
{"tokens_per_s": global tokens per second, median over the steps past the warm-up}.

  torch_ddp.py --config CONFIG_JSON --batch B --seq L --steps N --warmup W --threads T
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist
from transformers import DogeConfig, DogeForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--batch", type=int, required=True, help="rows per rank")
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo")
        # One core per rank, as doge's ranks are bound by mpirun.
        os.sched_setaffinity(0, {rank % os.cpu_count()})
    with open(a.config) as f:
        cfg = DogeConfig(**json.load(f))
    cfg._attn_implementation = "eager"
    torch.manual_seed(7)
    model = DogeForCausalLM(cfg).float().train()
    params = list(model.parameters())
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(params, lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)
    g = torch.Generator().manual_seed(8 + rank)
    rates = []
    for step in range(1, a.steps + 1):
        ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=g)
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        if world > 1:
            dist.barrier()
        dt = time.perf_counter() - t0
        if step > a.warmup:
            rates.append(a.batch * a.seq * world / dt)
    if rank == 0:
        print(json.dumps({"tokens_per_s": statistics.median(rates)}), flush=True)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
