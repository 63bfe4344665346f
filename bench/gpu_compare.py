"""Comparisons for bench/gpu-check.sh (standard library only: the GPU machine has no network).

    python3 bench/gpu_compare.py scores OUT   # CUDA vs CPU vs transformers scores, greedy tokens
    python3 bench/gpu_compare.py curves OUT   # Doge-tiny loss curves: CUDA f32/bf16 vs CPU f32

Exits 1 when a comparison is outside its tolerance; prints every figure either way.
"""

import json
import sqlite3
import sys
from pathlib import Path

FIXTURES = Path("tests/fixtures/doge-tiny")
# The bound for CUDA vs CPU float32 scores, and the reference's bound vs transformers.
SCORE_TOLERANCE = 1e-3
# Loss curves: float32 CUDA vs CPU differ only by summation order, which training amplifies
# slowly; bf16 matmuls carry 8 mantissa bits, so their curve may drift by a few percent.
CURVE_TOLERANCE = {"f32": 0.01, "bf16": 0.05}


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def scores(out):
    ok = True
    for model in ("dense", "moe"):
        ref = read_jsonl(FIXTURES / model / "score.jsonl")
        cpu = read_jsonl(out / f"score-{model}-cpu.jsonl")
        cuda = read_jsonl(out / f"score-{model}-cuda.jsonl")
        d_cpu = max(abs(a["nll"] - b["nll"]) for a, b in zip(cuda, cpu))
        d_ref = max(abs(a["nll"] - b["nll"]) for a, b in zip(cuda, ref))
        print(f"{model}: max |nll cuda - cpu| = {d_cpu:.2e}, max |nll cuda - transformers| = {d_ref:.2e}")
        ok &= d_cpu < SCORE_TOLERANCE and d_ref < SCORE_TOLERANCE and len(cuda) == len(ref)
        gen_ref = read_jsonl(FIXTURES / model / "generate.jsonl")
        gen = read_jsonl(out / f"generate-{model}-cuda.jsonl")
        same = sum(
            a["output_ids"][: len(b["output_ids"])] == b["output_ids"] for a, b in zip(gen, gen_ref)
        )
        print(f"{model}: greedy generations equal to transformers': {same}/{len(gen_ref)}")
        ok &= same == len(gen_ref)
    return ok


def curve(db):
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT step, name, value FROM metrics WHERE name IN ('loss', 'eval_loss') ORDER BY step"
    ).fetchall()
    out = {}
    for step, name, value in rows:
        out[(name, step)] = value
    return out


def curves(out):
    base = curve(out / "registry-train-tiny-cpu-f32" / "doge.sqlite")
    ok = True
    for precision in ("f32", "bf16"):
        other = curve(out / f"registry-train-tiny-cuda-{precision}" / "doge.sqlite")
        common = sorted(k for k in base if k in other)
        if not common:
            print(f"cuda {precision}: no common metrics")
            ok = False
            continue
        worst = max(abs(other[k] - base[k]) / abs(base[k]) for k in common)
        last = max(k[1] for k in common if k[0] == "eval_loss")
        print(
            f"cuda {precision} vs cpu f32: {len(common)} points, max relative difference "
            f"{worst:.2e} (tolerance {CURVE_TOLERANCE[precision]}); eval loss at step {last}: "
            f"cpu {base[('eval_loss', last)]:.4f}, cuda {other[('eval_loss', last)]:.4f}"
        )
        ok &= worst < CURVE_TOLERANCE[precision]
    return ok


def nccl(out):
    """Two steps with the gradients through NCCL (world 1, DOGE_DIST_NCCL=1) against the same
    two steps without: the all-reduce of one rank is the identity, so the losses must agree to
    the run-to-run noise of the GPU (1e-5 relative)."""
    plain = curve(out / "registry-nccl-plain" / "doge.sqlite")
    through = curve(out / "registry-nccl-on" / "doge.sqlite")
    common = sorted(k for k in plain if k in through and k[0] == "loss")
    if len(common) < 2:
        print(f"nccl: {len(common)} common loss points, expected 2")
        return False
    worst = max(abs(through[k] - plain[k]) / abs(plain[k]) for k in common)
    print(f"nccl vs plain, {len(common)} steps: losses {[plain[k] for k in common]} vs "
          f"{[through[k] for k in common]}, max relative difference {worst:.2e} (tolerance 1e-5)")
    return worst <= 1e-5


if __name__ == "__main__":
    what, out = sys.argv[1], Path(sys.argv[2])
    sys.exit(0 if {"scores": scores, "curves": curves, "nccl": nccl}[what](out) else 1)
