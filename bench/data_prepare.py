#!/usr/bin/env python3
"""Data preparation at scale: `doge data prepare` beside the seed's Python pipeline.

    python3 bench/data_prepare.py [--sizes 100MB,1GB] [--memory 256MiB] [--threads 2]
                                  [--python 100MB] [--tokenizer DIR] [--work DIR]
                                  [--also-memory 64MiB] [--kill 1GB] [--json FILE]

1. Generates JSONL corpora of the given sizes ({"text": ...} rows of 2-12 paragraphs drawn with a
   fixed seed from the bundled corpus experiments/corpus/, in files of 100 MB), once, under --work.
2. Runs `target/release/doge data prepare` on each (seq-len 2048, the Doge tokenizer, 1,000 test
   documents, --memory), from a fresh cache, and reads its peak RSS from the kernel (wait4).
   Also with 1 thread on the smallest size, for the scaling with cores.
3. Runs the seed's way on the sizes named by --python: `datasets.load_dataset("json")`, `.map` with
   the fast tokenizer (batched, num_proc = threads) appending EOS, TRL's "wrapped" packing to
   2049 tokens (the same pyarrow flatten-and-cut that `trl.pack_dataset` does, written out here to
   spare installing torch), a 1,000-row test split, `.shuffle(seed=233)` and `save_to_disk`. Its
   venv (datasets, tokenizers) is made on first use under ~/.cache/doge/data-bench-venv.

4. `--also-memory M`: the smallest size again with `--memory M` (the shards' sha256 must match).
   `--kill SIZE`: starts a preparation of SIZE, kill -9s it once half its pieces are tokenized,
   reruns it, and reports the pieces reused and the shards' sha256 (to compare with the
   uninterrupted run of that size).

Prints one table (seconds, MB/s, tokens/s, peak RSS) and the ratios; `--json FILE` saves it.
Needs `cargo build --release` first and the Doge tokenizer (default ../shared/data/tokenizer/doge).
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOGE = ROOT / "target" / "release" / "doge"
VENV = Path.home() / ".cache" / "doge" / "data-bench-venv"
FILE_BYTES = 100_000_000


def parse_size(s):
    s = s.strip().upper()
    for unit, mult in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * mult)
    return int(s)


def paragraphs():
    out = []
    for f in sorted((ROOT / "experiments" / "corpus").rglob("*.txt")):
        block = []
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                block.append(line.strip())
            elif block:
                out.append(" ".join(block))
                block = []
        if block:
            out.append(" ".join(block))
    return [p for p in out if len(p) > 40]


def make_corpus(work, size):
    """JSONL files of ~100 MB holding `size` bytes in all; reused when present."""
    d = work / f"corpus-{size // 10**6}MB"
    done = d / ".done"
    if done.exists():
        return d
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    paras = paragraphs()
    rng = random.Random(233)
    written, k = 0, 0
    while written < size:
        target = min(FILE_BYTES, size - written)
        n = 0
        with open(d / f"part-{k:04d}.jsonl", "w", encoding="utf-8") as f:
            while n < target:
                doc = "\n\n".join(rng.choice(paras) for _ in range(rng.randint(2, 12)))
                line = json.dumps({"text": doc, "id": f"{k}-{n}"}) + "\n"
                f.write(line)
                n += len(line.encode("utf-8"))
        written += n
        k += 1
    done.write_text("ok")
    return d


def run_measured(cmd, env=None):
    """Runs cmd, returns (seconds, peak RSS bytes of the process tree's largest member)."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    secs = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}")
    return secs, ru.ru_maxrss * 1024


def write_experiment(work, corpus, tokenizer, tag):
    exp = work / f"exp-{tag}.kdl"
    exp.write_text(
        f"""name "data-bench"
model "doge-20m"
tokenizer "{tokenizer}"
data {{
    source "{corpus}"
    seq-len 2048
    test-examples 1000
    shuffle-seed 233
}}
stage "pretrain" {{
    lr 1e-3
    max-steps 1
}}
"""
    )
    return exp


def doge_run(work, corpus, tokenizer, memory, threads, tag):
    exp = write_experiment(work, corpus, tokenizer, tag)
    cache = work / f"cache-{tag}"
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [str(DOGE), "data", "prepare", str(exp), "--cache", str(cache), "--quiet",
           "--memory", memory, "--threads", str(threads)]
    secs, rss = run_measured(cmd)
    manifests = list(cache.glob("*/manifest.json"))
    m = json.loads(manifests[0].read_text())
    tokens = m["train"]["tokens"] + m["train"]["dropped_tokens"] + m["test"]["tokens"] + m["test"]["dropped_tokens"]
    digest = subprocess.run(
        f"cd {manifests[0].parent} && sha256sum train-*.tokens test-*.tokens | sha256sum",
        shell=True, capture_output=True, text=True).stdout.split()[0]
    shutil.rmtree(cache, ignore_errors=True)
    return {"tool": "doge", "threads": threads, "seconds": secs, "peak_rss": rss,
            "tokens": tokens, "rows": m["train"]["rows"], "shards_sha256": digest}


def kill_resume(work, corpus, tokenizer, memory, threads, fraction=0.5):
    """Starts a preparation, kill -9s it once `fraction` of the input is tokenized, reruns it."""
    exp = write_experiment(work, corpus, tokenizer, "kill")
    cache = work / "cache-kill"
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [str(DOGE), "data", "prepare", str(exp), "--cache", str(cache), "--quiet",
           "--memory", memory, "--threads", str(threads)]
    total = sum(f.stat().st_size for f in corpus.glob("*.jsonl"))
    expected = sum(-(-f.stat().st_size // (32 << 20)) for f in corpus.glob("*.jsonl"))
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    while True:
        done = [f for f in cache.glob("pieces/*/[0-9]*.json")]
        if len(done) >= fraction * expected:
            break
        if p.poll() is not None:
            sys.exit("finished before the kill")
        time.sleep(0.2)
    p.kill()
    p.wait()
    killed_after = time.monotonic() - start
    complete = list(cache.glob("*/manifest.json"))
    secs, rss = run_measured(cmd)
    m = json.loads(list(cache.glob("*/manifest.json"))[0].read_text())
    digest = subprocess.run(
        f"cd {list(cache.glob('*/manifest.json'))[0].parent} && sha256sum train-*.tokens test-*.tokens | sha256sum",
        shell=True, capture_output=True, text=True).stdout.split()[0]
    shutil.rmtree(cache, ignore_errors=True)
    return {"killed_after_s": killed_after, "pieces_done_at_kill": len(done),
            "complete_dirs_after_kill": len(complete), "rerun_seconds": secs, "rerun_peak_rss": rss,
            "pieces": m["stats"]["pieces"], "pieces_reused": m["stats"]["pieces_reused"],
            "input_bytes": total, "shards_sha256": digest}


def ensure_venv():
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "datasets==5.2.0", "tokenizers==0.23.3", "pyarrow==26.0.1"], check=True)
    return py


def python_run(work, corpus, tokenizer, threads):
    py = ensure_venv()
    out = work / "py-out"
    shutil.rmtree(out, ignore_errors=True)
    cache = work / "py-cache"
    shutil.rmtree(cache, ignore_errors=True)
    script = work / "seed_pipeline.py"
    script.write_text(SEED_PIPELINE)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    secs, rss = run_measured([str(py), str(script), str(corpus), str(tokenizer), str(threads),
                              str(cache), str(out)], env=env)
    stats = json.loads((out / "stats.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return {"tool": "python datasets", "threads": threads, "seconds": secs, "peak_rss": rss,
            "tokens": stats["tokens"], "rows": stats["rows"]}


# The seed's pipeline (small-doge processor/pt_datasets_process.py at HEAD): tokenize with the fast
# tokenizer, append EOS, TRL pack_dataset(strategy="wrapped"), shuffle with the seed, save.
SEED_PIPELINE = r'''
import glob, json, sys
import pyarrow as pa
import pyarrow.compute as pc
from datasets import load_dataset, disable_progress_bars
from tokenizers import Tokenizer

corpus, tok_dir, threads, cache, out = sys.argv[1:6]
threads = int(threads)
disable_progress_bars()
tok = Tokenizer.from_file(tok_dir + "/tokenizer.json")
EOS = 1
ROW = 2049

def tokenize(batch):
    enc = tok.encode_batch(batch["text"], add_special_tokens=True)
    ids = []
    for e in enc:
        x = e.ids
        if not x or x[-1] != EOS:
            x = x + [EOS]
        ids.append(x)
    return {"input_ids": ids}

def pack_wrapped(table):
    # trl.data_utils._pack_wrapped: flatten the list column and cut it into rows of ROW.
    col = table.column("input_ids").combine_chunks()
    flat = col.values
    n = len(flat) // ROW * ROW
    offsets = pa.array(range(0, n + 1, ROW), type=pa.int32())
    return pa.table({"input_ids": pa.ListArray.from_arrays(offsets, flat.slice(0, n))})

def main():
    files = sorted(glob.glob(corpus + "/*.jsonl"))
    ds = load_dataset("json", data_files=files, split="train", cache_dir=cache)
    ds = ds.map(tokenize, batched=True, num_proc=threads, remove_columns=ds.column_names)
    tokens = sum(pc.sum(pc.list_value_length(b.column("input_ids"))).as_py()
                 for b in ds.with_format("arrow").iter(batch_size=10000))
    split = ds.train_test_split(test_size=1000, seed=233)
    train = split["train"].with_format("arrow").map(pack_wrapped, batched=True, batch_size=1000, num_proc=threads)
    train = train.shuffle(seed=233)
    train.save_to_disk(out + "/train", num_proc=threads)
    split["test"].with_format("arrow").map(pack_wrapped, batched=True, batch_size=1000).save_to_disk(out + "/test")
    json.dump({"tokens": tokens, "rows": len(train)}, open(out + "/stats.json", "w"))


if __name__ == "__main__":  # datasets starts worker processes by spawning
    main()
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100MB,1GB")
    ap.add_argument("--python", default="100MB", help="sizes to run the Python pipeline on ('' for none)")
    ap.add_argument("--memory", default="256MiB")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tokenizer", default=str(ROOT.parent / "shared" / "data" / "tokenizer" / "doge"))
    ap.add_argument("--work", default="/tmp/doge-data-bench")
    ap.add_argument("--json")
    ap.add_argument("--kill", help="also kill -9 a preparation of this size half way and rerun it")
    ap.add_argument("--also-memory", help="also prepare the smallest size with this --memory (same shards?)")
    a = ap.parse_args()
    if not DOGE.exists():
        sys.exit(f"{DOGE} is missing: run `cargo build --release` first")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [parse_size(s) for s in a.sizes.split(",") if s]
    py_sizes = {parse_size(s) for s in a.python.split(",") if s}
    rows = []
    for size in sizes:
        corpus = make_corpus(work, size)
        mb = sum(f.stat().st_size for f in corpus.glob("*.jsonl")) / 1e6
        runs = [doge_run(work, corpus, a.tokenizer, a.memory, a.threads, f"{size}")]
        if a.also_memory and size == min(sizes):
            r = doge_run(work, corpus, a.tokenizer, a.also_memory, a.threads, f"{size}-mem")
            r["memory"] = a.also_memory
            runs.append(r)
        if size == min(sizes) and a.threads > 1:
            runs.append(doge_run(work, corpus, a.tokenizer, a.memory, 1, f"{size}-1t"))
        if size in py_sizes:
            runs.append(python_run(work, corpus, a.tokenizer, a.threads))
            if a.threads > 1 and size == min(sizes):
                runs.append(python_run(work, corpus, a.tokenizer, 1))
        for r in runs:
            r["corpus_mb"] = mb
            r["mb_per_s"] = mb / r["seconds"]
            r["tokens_per_s"] = r["tokens"] / r["seconds"]
            rows.append(r)
            print(f"{mb:8.0f} MB  {r['tool']:<16} {r['threads']} thr  {r['seconds']:7.1f} s  "
                  f"{r['mb_per_s']:6.2f} MB/s  {r['tokens_per_s'] / 1e6:6.3f} M tok/s  "
                  f"peak RSS {r['peak_rss'] / 2**20:7.1f} MiB  {r.get('shards_sha256', '')[:16]}",
                  flush=True)
    for size in sizes:
        mb = size / 1e6
        d = [r for r in rows if r["tool"] == "doge" and abs(r["corpus_mb"] - mb) / mb < 0.05]
        p = [r for r in rows if r["tool"] != "doge" and abs(r["corpus_mb"] - mb) / mb < 0.05]
        for dr in d:
            for pr in p:
                if pr["threads"] == dr["threads"]:
                    print(f"{mb:.0f} MB, {dr['threads']} threads: doge {pr['seconds'] / dr['seconds']:.2f}x faster, "
                          f"{pr['peak_rss'] / dr['peak_rss']:.2f}x less memory")
    if a.kill:
        size = parse_size(a.kill)
        k = kill_resume(work, make_corpus(work, size), a.tokenizer, a.memory, a.threads)
        same = [r for r in rows if r.get("shards_sha256") == k["shards_sha256"]]
        print(f"kill -9 after {k['killed_after_s']:.1f} s with {k['pieces_done_at_kill']} pieces done "
              f"({k['complete_dirs_after_kill']} complete dirs); rerun {k['rerun_seconds']:.1f} s reused "
              f"{k['pieces_reused']} of {k['pieces']} pieces; shards {k['shards_sha256'][:16]} "
              f"{'= the uninterrupted run' if same else '(no uninterrupted run of this size to compare)'}")
        rows.append({"tool": "doge kill/resume", **k})
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
