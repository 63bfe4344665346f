"""Reference scores for tests/eval_taskfiles.rs, computed by lm-evaluation-harness itself.

Run from the repository root:

    python tests/python/eval_taskfiles_fixture.py [--python PY]

With no torch / transformers / lm_eval importable it creates bench/.venv and installs
`torch transformers lm_eval[hf]==0.4.13` there first (the only thing it installs), then re-runs itself
with that Python.

What it does: lm-eval's own `simple_evaluate` with its transformers backend (`HFLM`, batch size 1,
float32, CPU) runs the task files this repository ships in experiments/tasks/ (sciq, social_iqa,
commonsense_qa, piqa, arc_easy, openbookqa) and the test tasks in
tests/fixtures/eval/taskfiles/extra/ (loglikelihood, loglikelihood_rolling, generate_until), 0-shot,
on the rows in tests/fixtures/eval/taskfiles/rows/ (written in each dataset's hub row format; hub
dataset ids are mapped to those folders by replacing `datasets.load_dataset`, nothing else is
patched). The model is the tiny dense reference model (tests/fixtures/doge-tiny/dense) with
keep_window_size opened to 128 (so no exact tie meets the top-k, as in the other eval fixtures)
and the 256-id tokenizer of tests/fixtures/eval/tokenizer-256. piqa is run a second time with
`add_bos_token=False`.

It writes tests/fixtures/eval/taskfiles/lm_eval_reference.json: per task, lm-eval's metrics and,
per item, the per-request log-likelihoods and greedy flags (`resps`) or the generated text and
filtered answers, exactly as lm-eval logs them.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests/fixtures")
ROWS = os.path.join(FIX, "eval/taskfiles/rows")
OUT = os.path.join(FIX, "eval/taskfiles/lm_eval_reference.json")
LM_EVAL = "lm_eval[hf]==0.4.13"
TASKS = ["sciq", "social_iqa", "commonsense_qa", "piqa", "arc_easy", "openbookqa",
         "fill_word", "passages", "short_answer"]


def ensure_python(args):
    try:
        import lm_eval  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("DOGE_FIXTURE_CHILD"):
        sys.exit("torch, transformers and lm_eval are still not importable")
    python = args.python
    if not python:
        env = os.path.join(ROOT, "bench/.venv")
        python = os.path.join(env, "bin/python")
        if not os.path.exists(python):
            venv.create(env, with_pip=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "torch", "transformers", LM_EVAL],
                       check=True)
    env = dict(os.environ, DOGE_FIXTURE_CHILD="1")
    sys.exit(subprocess.run([python, os.path.abspath(__file__)], env=env, cwd=ROOT).returncode)


def local_rows(path, name):
    """The rows of a hub dataset id from tests/fixtures/eval/taskfiles/rows/<id>[/<name>]/."""
    import datasets
    folder = os.path.join(ROWS, path, name) if name else os.path.join(ROWS, path)
    splits = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".jsonl"):
            with open(os.path.join(folder, f)) as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
            splits[f[: -len(".jsonl")]] = datasets.Dataset.from_list(rows)
    return datasets.DatasetDict(splits)


def main():
    import datasets
    import lm_eval
    import lm_eval.api.task as task_api
    import torch
    import transformers
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    real_load = datasets.load_dataset

    def load_dataset(path=None, name=None, **kwargs):
        if path in ("json", "csv", "parquet", "text"):
            return real_load(path, name, **kwargs)
        return local_rows(path, name)

    task_api.datasets.load_dataset = load_dataset

    torch.set_grad_enabled(False)
    tmp = tempfile.mkdtemp()
    try:
        model_dir = os.path.join(tmp, "model")
        os.makedirs(model_dir)
        with open(os.path.join(FIX, "doge-tiny/dense/config.json")) as f:
            config = json.load(f)
        config["keep_window_size"] = config["max_position_embeddings"]
        with open(os.path.join(model_dir, "config.json"), "w") as f:
            json.dump(config, f)
        shutil.copy(os.path.join(FIX, "doge-tiny/dense/model.safetensors"), model_dir)
        tok_dir = os.path.join(FIX, "eval/tokenizer-256")
        for f in os.listdir(tok_dir):
            shutil.copy(os.path.join(tok_dir, f), model_dir)
        manager = TaskManager(include_path=[os.path.join(ROOT, "experiments/tasks"),
                                            os.path.join(FIX, "eval/taskfiles/extra")])
        out = {
            "generated_by": "tests/python/eval_taskfiles_fixture.py",
            "versions": {"lm_eval": lm_eval.__version__ if hasattr(lm_eval, "__version__") else LM_EVAL,
                         "transformers": transformers.__version__, "torch": torch.__version__,
                         "datasets": datasets.__version__},
            "runs": {},
        }
        for label, add_bos, tasks in [("default", None, TASKS), ("no_bos", False, ["piqa"])]:
            kwargs = dict(pretrained=model_dir, tokenizer=model_dir, batch_size=1, device="cpu",
                          dtype="float32")
            if add_bos is not None:
                kwargs["add_bos_token"] = add_bos
            lm = HFLM(**kwargs)
            res = lm_eval.simple_evaluate(model=lm, tasks=tasks, num_fewshot=0, task_manager=manager,
                                          log_samples=True, bootstrap_iters=0)
            run = {}
            for t in tasks:
                samples = sorted(res["samples"][t], key=lambda s: (s.get("filter") or "", s["doc_id"]))
                run[t] = {
                    "metrics": {k: v for k, v in res["results"][t].items()
                                if isinstance(v, (int, float)) and not k.endswith("_stderr,none")},
                    "items": [
                        {
                            "doc_id": s["doc_id"],
                            "filter": s.get("filter"),
                            "arguments": [list(a) if isinstance(a, (list, tuple)) else a
                                          for a in s["arguments"]] if "arguments" in s else None,
                            "resps": s["resps"],
                            "filtered_resps": s["filtered_resps"],
                            "target": s.get("target"),
                            **{k: s[k] for k in s if k in ("acc", "acc_norm", "acc_mutual_info",
                                                            "exact_match", "perplexity")},
                        }
                        for s in samples
                    ],
                }
            out["runs"][label] = run
        with open(OUT, "w") as f:
            json.dump(out, f, indent=1, default=str)
            f.write("\n")
        print(f"wrote {OUT}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--python", help="a Python with torch, transformers and lm_eval")
    a = p.parse_args()
    ensure_python(a)
    main()
