#!/usr/bin/env python3
"""Data-parallel scaling on one machine (issue 17): the same global batch trained by
2 ranks x 1 thread (mpirun), 1 rank x 2 threads and 1 rank x 1 thread, for doge and, in the same
run, for PyTorch (transformers' DogeForCausalLM; DistributedDataParallel over gloo for 2 ranks).

  python3 bench/dist_scaling.py                       # Doge-20M shape, vocab 4096, seq 256, global batch 8
  python3 bench/dist_scaling.py --preset doge-tiny --steps 20 --no-torch

doge's side is `doge exp run` of a pretrain experiment on the bundled Austen corpus (one file per
configuration, in a temporary directory); its rate is the median of the registry's `tokens_per_s`
(the global rate, logged by rank 0 every step) past the warm-up steps. PyTorch's side is
bench/torch_ddp.py on random ids of the same shape with the model config doge's run saved, timed
the same way. Configurations alternate per round, so drift in a shared VM hits all alike.

Needs an MPI build of doge (`cargo build --release --features mpi`, default binary
target/mpi/release/doge, built here when missing) and mpirun; the PyTorch side needs a Python with
torch and transformers (`--python`, else $DOGE_PYTHON, else bench/.venv as bench/compare.py makes it).
"""
import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from compare import find_python  # noqa: E402  (same venv rules as the single-process bench)

# (label, ranks, threads per rank)
CONFIGS = [("2 ranks x 1 thread", 2, 1), ("1 rank x 2 threads", 1, 2), ("1 rank x 1 thread", 1, 1)]


def mpi_env():
    env = dict(os.environ)
    if os.geteuid() == 0:  # Open MPI refuses root unless told twice
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    return env


def find_doge(explicit):
    if explicit:
        return explicit
    target = ROOT / "target" / "mpi"
    print("building doge with MPI (cargo build --release --features mpi) ...", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--features", "mpi", "--bin", "doge"],
                   cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": str(target)})
    return str(target / "release" / "doge")


def experiment(a, batch):
    return f"""
name "scaling"
seed 7
device "cpu"
registry "./registry"
model "{a.preset}" vocab={a.vocab}
tokenizer "train"
data {{
    source "{ROOT / 'experiments' / 'corpus'}"
    seq-len {a.seq}
    test-examples 8
}}
stage "pretrain" {{
    lr 3e-3
    batch-size {batch}
    max-steps {a.steps}
    grad-clip 1.0
    log-every 1
    eval-every 0
    save-every 0
    keep-last 0
}}
"""


def run_doge(a, doge, ranks, threads, round_):
    """One `doge exp run`; returns (median global tokens/s past warm-up, the saved config.json)."""
    work = Path(tempfile.mkdtemp(prefix=f"doge-scaling-{ranks}x{threads}-{round_}-", dir=a.workdir))
    (work / "exp.kdl").write_text(experiment(a, a.global_batch // ranks))
    cmd = [doge, "exp", "run", "exp.kdl", "--quiet"]
    env = mpi_env()
    env["RAYON_NUM_THREADS"] = str(threads)
    # One prepared corpus and tokenizer for every run (the first run makes them).
    env["DOGE_DATA_DIR"] = str(Path(a.workdir) / "data")
    if ranks > 1:
        # One core per rank, as mpirun binds by default for 2 ranks; -x passes the thread count.
        cmd = ["mpirun", "-n", str(ranks), "--bind-to", "core", "-x", "RAYON_NUM_THREADS"] + cmd
    else:
        cmd = ["taskset", "-c", ",".join(str(c) for c in range(threads))] + cmd
    out = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {work}:\n{out.stdout}\n{out.stderr}")
    db = sqlite3.connect(work / "registry" / "doge.sqlite")
    (run_id, world, global_batch), = db.execute("SELECT id, world_size, global_batch FROM runs")
    assert (world or 1) == ranks and global_batch == a.global_batch, (world, global_batch)
    rates = [v for (s, v) in db.execute(
        "SELECT step, value FROM metrics WHERE run_id = ? AND name = 'tokens_per_s' ORDER BY step", (run_id,))
        if s > a.warmup]
    (final,), = db.execute("SELECT path FROM artifacts WHERE run_id = ? AND kind = 'final'", (run_id,))
    return statistics.median(rates), Path(final) / "config.json"


def run_torch(a, python, config, ranks, threads):
    script = str(HERE / "torch_ddp.py")
    args = ["--config", str(config), "--batch", str(a.global_batch // ranks), "--seq", str(a.seq),
            "--steps", str(a.steps), "--warmup", str(a.warmup), "--threads", str(threads)]
    if ranks > 1:
        cmd = [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), script] + args
    else:
        cmd = ["taskset", "-c", ",".join(str(c) for c in range(threads)), python, script] + args
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)["tokens_per_s"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="doge-20m")
    p.add_argument("--vocab", type=int, default=4096, help="the bundled corpus's tokenizer size")
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--global-batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2, help="steps left out of the rate")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--doge", help="an MPI build of doge (default: build target/mpi/release/doge)")
    p.add_argument("--python", help="a Python with torch + transformers")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--workdir", help="where the runs go (default: a new temporary directory)")
    a = p.parse_args()
    a.workdir = a.workdir or tempfile.mkdtemp(prefix="doge-scaling-")
    os.makedirs(a.workdir, exist_ok=True)
    doge = str(Path(find_doge(a.doge)).resolve())
    python = None if a.no_torch else find_python(a.python)
    results = {label: {"doge": [], "torch": []} for label, _, _ in CONFIGS}
    for r in range(a.rounds):
        for label, ranks, threads in CONFIGS:
            tps, config = run_doge(a, doge, ranks, threads, r)
            results[label]["doge"].append(tps)
            line = f"round {r + 1} {label}: doge {tps:,.0f} tokens/s"
            if python:
                t = run_torch(a, python, config, ranks, threads)
                results[label]["torch"].append(t)
                line += f", PyTorch {t:,.0f} tokens/s"
            print(line, file=sys.stderr, flush=True)

    print(f"\n{a.preset} vocab {a.vocab}, seq {a.seq}, global batch {a.global_batch}, {a.steps} steps "
          f"(first {a.warmup} left out), {a.rounds} rounds, median of rounds; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores\n")
    base = {k: statistics.median(results["1 rank x 1 thread"][k]) for k in ("doge", "torch") if results["1 rank x 1 thread"][k]}
    head = "| configuration | doge tokens/s | vs 1x1 |" + (" PyTorch tokens/s | vs 1x1 | doge / PyTorch |" if python else "")
    print(head)
    print("|---|---|---|" + ("---|---|---|" if python else ""))
    for label, _, _ in CONFIGS:
        d = statistics.median(results[label]["doge"])
        row = f"| {label} | {d:,.0f} | {d / base['doge']:.2f}x |"
        if python:
            t = statistics.median(results[label]["torch"])
            row += f" {t:,.0f} | {t / base['torch']:.2f}x | {d / t:.2f}x |"
        print(row)
    print("\nall rounds:", json.dumps(results))


if __name__ == "__main__":
    main()
