"""HellaSwag scoring speed: doge (one full sequence per choice, and the shared-context path) and
lm-evaluation-harness itself, side by side in one run, on the same model, items and threads.

    python3 bench/eval_speed.py [--items 200] [--shots 0] [--threads 2] [--batch-size 16] [--rounds 2]

The model is Doge-20M's shape (`doge bench config --preset doge-20m`: vocabulary 32,768, hidden
256, 8 layers) with random weights from transformers' `DogeForCausalLM` (seed 0), saved once as a
checkpoint both tools load, with the Doge tokenizer; the items are the first N of the official
HellaSwag validation split (../shared/data/eval/hellaswag/validation.jsonl), `--shots` examples
(drawn from the same rows; each tool draws its own, so prompts differ but not their lengths' law).
doge runs its
built-in `hellaswag` (lm-eval's prompt and preprocessing); lm-eval 0.4.13 runs its own
`hellaswag` task through its transformers backend (`HFLM`, float32, CPU, the same batch size),
with `datasets.load_dataset` pointed at the same rows; its task index is built before timing. Threads: RAYON_NUM_THREADS for doge,
`torch.set_num_threads` for lm-eval. Reported: items/s (task time, model loading excluded) and
acc / acc_norm of each, which must agree.

Needs a Python with torch, transformers and lm_eval[hf]: --python, else bench/.venv (filled on
first use, as bench/compare.py does). doge is target/release/doge (built if missing).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import venv

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
HELLASWAG = os.path.join(SHARED, "data/eval/hellaswag/validation.jsonl")
TOKENIZER = os.path.join(SHARED, "data/tokenizer/doge")

LM_EVAL_CHILD = r'''
import json, sys, time
import datasets, torch
import lm_eval, lm_eval.api.task as task_api
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
model, rows, items, threads, batch, shots = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(threads)
with open(rows) as f:
    data = [json.loads(l) for l in f if l.strip()][:items]
def load_dataset(path=None, name=None, **kw):
    rows = datasets.Dataset.from_list(data)
    return datasets.DatasetDict({"train": rows, "validation": rows})
task_api.datasets.load_dataset = load_dataset
lm = HFLM(pretrained=model, batch_size=batch, device="cpu", dtype="float32")
# Indexing lm-eval's ~14,000 task files takes ~20 s; it is start-up, not scoring, so it is done
# before the clock starts (as doge's model loading is not timed either).
manager = TaskManager()
start = time.perf_counter()
res = lm_eval.simple_evaluate(model=lm, tasks=["hellaswag"], num_fewshot=shots, bootstrap_iters=0,
                              task_manager=manager)
seconds = time.perf_counter() - start
r = res["results"]["hellaswag"]
print(json.dumps({"seconds": seconds, "acc": r["acc,none"], "acc_norm": r["acc_norm,none"]}))
'''

MAKE_MODEL = r'''
import json, sys, torch
from transformers import DogeConfig, DogeForCausalLM
cfg = DogeConfig(**json.loads(sys.argv[1]))
torch.manual_seed(0)
DogeForCausalLM(cfg).float().save_pretrained(sys.argv[2])
'''


def python_with_lm_eval(explicit):
    probe = "import torch, transformers, lm_eval; from lm_eval.models.huggingface import HFLM"
    if explicit:
        return explicit
    env = os.path.join(HERE, ".venv")
    py = os.path.join(env, "bin", "python")
    if not os.path.exists(py):
        venv.create(env, with_pip=True)
    if subprocess.run([py, "-c", probe], capture_output=True).returncode != 0:
        print("installing torch, transformers and lm_eval[hf] into bench/.venv ...", file=sys.stderr)
        subprocess.run([py, "-m", "pip", "install", "--quiet", "torch", "transformers",
                        "lm_eval[hf]==0.4.13"], check=True)
    return py


def doge_binary():
    path = os.path.join(ROOT, "target/release/doge")
    if not os.path.exists(path):
        subprocess.run(["cargo", "build", "--release", "--bin", "doge"], cwd=ROOT, check=True)
    return path


def run_doge(doge, model, data_dir, a, shared):
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads),
               DOGE_EVAL_SHARED_CONTEXT="1" if shared else "0")
    out = subprocess.run([doge, "eval", "--model", model, "--tasks", f"hellaswag:{a.shots}", "--limit", str(a.items),
                          "--batch-size", str(a.batch_size), "--data-dir", data_dir, "--no-registry",
                          "--quiet"], env=env, capture_output=True, text=True, check=True)
    m = re.search(r"hellaswag: (\d+) items in ([0-9.]+) s", out.stderr)
    scores = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0] == "hellaswag" and parts[1] in ("acc", "acc_norm"):
            scores[parts[1]] = float(parts[2])
    return {"seconds": float(m.group(2)), **scores}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--shots", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--python", help="a Python with torch, transformers and lm_eval[hf]")
    a = p.parse_args()
    if not os.path.exists(HELLASWAG):
        sys.exit(f"{HELLASWAG}: the HellaSwag validation split is not here")
    py = python_with_lm_eval(a.python)
    doge = doge_binary()
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model")
        config = subprocess.run([doge, "bench", "config", "--preset", "doge-20m"], capture_output=True,
                                text=True, check=True).stdout
        subprocess.run([py, "-c", MAKE_MODEL, config, model], check=True)
        for f in os.listdir(TOKENIZER):
            with open(os.path.join(TOKENIZER, f), "rb") as src, open(os.path.join(model, f), "wb") as dst:
                dst.write(src.read())
        data_dir = os.path.join(tmp, "data")
        os.makedirs(os.path.join(data_dir, "hellaswag"))
        with open(HELLASWAG) as f, open(os.path.join(data_dir, "hellaswag/validation.jsonl"), "w") as g:
            for i, line in enumerate(f):
                if i >= a.items:
                    break
                g.write(line)
        runs = {"doge, one sequence per choice": [], "doge (default: shared contexts of 128+ tokens)": [],
                "lm-eval 0.4.13 (HFLM)": []}
        for _ in range(a.rounds):
            runs["doge, one sequence per choice"].append(run_doge(doge, model, data_dir, a, False))
            runs["doge (default: shared contexts of 128+ tokens)"].append(run_doge(doge, model, data_dir, a, True))
            out = subprocess.run([py, "-c", LM_EVAL_CHILD, model, HELLASWAG, str(a.items), str(a.threads),
                                  str(a.batch_size), str(a.shots)], capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"lm-eval failed:\n{out.stderr[-3000:]}")
            runs["lm-eval 0.4.13 (HFLM)"].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rate = {k: a.items / statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    base = rate["lm-eval 0.4.13 (HFLM)"]
    print(f"HellaSwag validation, first {a.items} items, {a.shots}-shot, Doge-20M shape (random weights), "
          f"{a.threads} threads, batch {a.batch_size}, median of {a.rounds} rounds")
    print("| scorer | items/s | vs lm-eval | acc | acc_norm |  (acc agree only at 0-shot: other examples)")
    print("|---|---|---|---|---|")
    for k, v in runs.items():
        print(f"| {k} | {rate[k]:.1f} | {rate[k] / base:.2f}x | {v[0].get('acc', float('nan')):.4f} | "
              f"{v[0].get('acc_norm', float('nan')):.4f} |")
    print("rounds (s): " + "; ".join(f"{k}: " + " / ".join(f"{r['seconds']:.1f}" for r in v)
                                      for k, v in runs.items()))


if __name__ == "__main__":
    main()
