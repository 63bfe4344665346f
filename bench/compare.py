#!/usr/bin/env python3
"""doge against PyTorch on one model shape: alternating rounds, median and best, ratio.

  python3 bench/compare.py train --preset doge-20m --batch 4 --seq 256 --steps 5 --rounds 3
  python3 bench/compare.py generate --preset doge-20m --prompt-len 32 --new-tokens 128 --rounds 3

Each round runs `doge bench ... --json` and then bench/torch_bench.py (transformers'
DogeForCausalLM, eager attention, float32, the same preset config, the same thread count) as
separate processes, so each reports its own peak RSS. The PyTorch side needs a Python with torch and
transformers: `--python`, else $DOGE_PYTHON, else bench/.venv (created and filled with
`pip install torch transformers` on first use). Only this script installs anything; the Rust tests
never do. Needs only the standard library itself.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def has_torch(python):
    probe = "import torch, transformers; from transformers import DogeForCausalLM"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def find_python(explicit):
    for candidate in (explicit, os.environ.get("DOGE_PYTHON")):
        if candidate:
            if not has_torch(candidate):
                sys.exit(f"{candidate}: cannot import torch and transformers (DogeForCausalLM); "
                         "install them there or leave --python/$DOGE_PYTHON unset to use bench/.venv")
            return candidate
    env_dir = HERE / ".venv"
    python = str(env_dir / "bin" / "python")
    if not Path(python).exists():
        print(f"creating {env_dir} ...", file=sys.stderr)
        venv.create(env_dir, with_pip=True)
    if not has_torch(python):
        print("installing torch and transformers into bench/.venv ...", file=sys.stderr)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "torch", "transformers"], check=True)
    return python


def find_doge(explicit):
    if explicit:
        return explicit
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "release" / "doge"
    print("building doge (cargo build --release) ...", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return str(binary)


def load_average():
    """The 1-minute load average (other work on the machine skews both sides)."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return float("nan")


def run_json(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["train", "generate"])
    p.add_argument("--preset", default="doge-20m")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round (train)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--runs", type=int, default=3, help="timed generations per round")
    p.add_argument("--doge", help="the doge binary (default: build it with cargo)")
    p.add_argument("--python", help="a Python with torch + transformers (default $DOGE_PYTHON, else bench/.venv)")
    p.add_argument("--extra-env", action="append", default=[], help="KEY=VALUE for the doge runs only")
    a = p.parse_args()

    python = find_python(a.python)
    doge = find_doge(a.doge)
    threads = str(a.threads)
    env = dict(os.environ, RAYON_NUM_THREADS=threads, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    doge_env = dict(env, **dict(kv.split("=", 1) for kv in a.extra_env))

    config = subprocess.run([doge, "bench", "config", "--preset", a.preset],
                            capture_output=True, text=True, check=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(config)
        config_path = f.name

    if a.mode == "train":
        shape = ["--batch", str(a.batch), "--seq", str(a.seq), "--steps", str(a.steps), "--warmup", str(a.warmup)]
        label = f"train {a.preset} batch {a.batch} seq {a.seq}, {a.steps} timed steps/round"
    else:
        shape = ["--prompt-len", str(a.prompt_len), "--new-tokens", str(a.new_tokens),
                 "--runs", str(a.runs), "--warmup", str(min(a.warmup, 1))]
        label = f"generate {a.preset} batch 1 prompt {a.prompt_len} + {a.new_tokens} new tokens, {a.runs} runs/round"
    doge_cmd = [doge, "bench", a.mode, "--preset", a.preset, "--json", *shape]
    torch_cmd = [python, str(HERE / "torch_bench.py"), a.mode, config_path, "--threads", threads, *shape]

    rows = {"doge": [], "pytorch": []}
    loads = []
    for r in range(a.rounds):
        for name, cmd, e in (("doge", doge_cmd, doge_env), ("pytorch", torch_cmd, env)):
            loads.append(load_average())
            res = run_json(cmd, e)
            rows[name].append(res)
            print(f"round {r + 1} {name:8s} {res['tokens_per_s']:9.1f} tokens/s  peak RSS "
                  f"{res['peak_rss_bytes'] / 2**20:7.0f} MiB  (load before: {loads[-1]})", file=sys.stderr)
    os.unlink(config_path)

    def summary(name):
        tps = [x["tokens_per_s"] for x in rows[name]]
        rss = max(x["peak_rss_bytes"] for x in rows[name])
        key = "step_seconds" if a.mode == "train" else "run_seconds"
        times = [t for x in rows[name] for t in x[key]["seconds"]]
        cpu_key = "cpu_seconds_per_step" if a.mode == "train" else "cpu_seconds_per_run"
        cpu = statistics.median(x[cpu_key] for x in rows[name])
        return tps, statistics.median(tps), max(tps), rss, min(times), statistics.median(times), cpu

    d, t = summary("doge"), summary("pytorch")
    unit = "tokens/s" if a.mode == "train" else "new tokens/s"
    what = "step" if a.mode == "train" else "run"
    print(f"\n{label}; {threads} threads; {platform.node()}\n")
    print(f"| side | {unit} per round | median | best | {what} time min / median (s) "
          f"| CPU s per {what} (median) | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for name, s in (("doge", d), ("PyTorch", t)):
        per_round = ", ".join(f"{x:.1f}" for x in s[0])
        print(f"| {name} | {per_round} | {s[1]:.1f} | {s[2]:.1f} | {s[4]:.3f} / {s[5]:.3f} "
              f"| {s[6]:.2f} | {s[3] / 2**20:.0f} |")
    print(f"\n1-minute load average before each run (doge, PyTorch alternating): "
          f"{', '.join(f'{x:.1f}' for x in loads)}")
    print(f"\nratio doge / PyTorch: tokens/s median {d[1] / t[1]:.2f}x, best {d[2] / t[2]:.2f}x; "
          f"CPU time per {what} {t[6] / d[6]:.2f}x less; peak RSS {d[3] / t[3]:.2f}x")


if __name__ == "__main__":
    main()
