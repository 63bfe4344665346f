#!/usr/bin/env python3
"""How fast `doge ui` shows its first page on a large registry.

    python3 bench/ui_first_page.py            # 1,000 runs, 200,000 metric rows
    python3 bench/ui_first_page.py --runs 12 --serve   # a small demo registry, left serving

Seeds a throwaway SQLite registry (the schema comes from doge itself: `doge registry stress`
creates the file; rows of runs of a sweep are then added with Python's sqlite3: pretrain ->
sft -> dpo lineages, configs that vary lr / seed / width, evals with stderr, one run still
training), starts `doge ui --port 0`, then times with curl the page, its script and stylesheet,
the first /api/runs page and the curves the page loads first, and with headless Chromium (a
fresh browser per load, in real time) the whole first render: `data-first-render-ms`, which
app.js writes once the table and the first curves are drawn. Needs a release build
(`cargo build --release`); Chromium is optional.
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOGE = os.path.join(ROOT, "target", "release", "doge")
TASKS = [("hellaswag", "acc_norm"), ("arc_easy", "acc"), ("piqa", "acc"), ("winogrande", "acc")]


def seed(path, runs, rows_per_run, live_run=True):
    subprocess.run([DOGE, "registry", "stress", "--run", "bench-schema", "--rows", "2",
                    "--registry", path], check=True, capture_output=True)
    db = sqlite3.connect(path)
    for table in ("metrics", "evals", "tags", "artifacts", "claims", "runs"):
        db.execute(f"DELETE FROM {table}")
    db.execute("INSERT OR IGNORE INTO experiments (name, path, created_at) VALUES (?, ?, ?)",
               ("smalldoge-sweep", "experiments/sweep.kdl", time.time()))
    rng = random.Random(7)
    now = time.time()
    t0 = now - runs * 60.0
    # 4 metrics per logged step (loss, lr, tokens_per_s, grad_norm) plus an eval every 6 steps.
    steps = max(1, round(rows_per_run / (4 + 1 / 6)))
    metric_rows = 0
    stages = ["pretrain", "sft", "dpo"]
    parent = None
    for i in range(runs):
        stage = stages[i % 3]
        group = i // 3
        lr = [1e-3, 3e-3, 6e-3, 1e-2][group % 4]
        width = [256, 384, 512][(group // 4) % 3]
        seedv = 1000 + group
        rid = f"sweep-{group:04d}-{stage}"
        parent = None if stage == "pretrain" else f"sweep-{group:04d}-{stages[i % 3 - 1]}"
        is_live = live_run and i == runs - 1
        status = "running" if is_live else ("failed" if group % 17 == 5 and stage == "pretrain" else "done")
        total = steps * 10 * (2 if is_live else 1)  # the live run is halfway
        config = {
            "seed": seedv,
            "model": {"preset": "doge-20m", "hidden-size": width, "layers": 4 + (group % 2) * 2,
                      "heads": 4, "layout": "doge"},
            "data": {"name": "fineweb-edu-sample", "seq-len": 512},
            "stage": [
                {"kind": "pretrain", "lr": lr, "steps": total, "batch-size": 32, "warmup": 100},
                {"kind": "sft", "name": "chat", "lr": lr / 10, "steps": total // 2},
                {"kind": "dpo", "beta": 0.1, "lr": lr / 30},
            ],
        }
        created = t0 + i * 60.0
        hb = now if is_live else created + 55
        db.execute(
            """INSERT INTO runs (id, experiment, sweep, parent_id, stage, status, config_json,
               config_hash, created_at, started_at, ended_at, heartbeat_at, git_commit, git_dirty,
               version, host, device, message, total_steps, archived)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)""",
            (rid, "smalldoge-sweep", "lr-width", parent, stage, status, json.dumps(config),
             f"sweep-{group:04d}", created, created + 1, None if is_live else created + 55, hb,
             "3f9c2a1d8e7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a", 0, "0.1.0", "gpu-node-3",
             "cuda:0 (NVIDIA H200)", "loss became NaN at step 4210" if status == "failed" else None,
             total))
        base = 2.4 + 2e-3 / lr * 0.08 - width / 2000 + {"pretrain": 1.6, "sft": 0.4, "dpo": 0.2}[stage]
        rows = []
        for k in range(1, steps + 1):
            step = k * 10
            frac = k / steps
            loss = base + 2.5 * math.exp(-5 * frac) + rng.gauss(0, 0.03)
            lr_now = lr * min(1.0, step / 100) * (0.5 * (1 + math.cos(math.pi * frac)))
            rows += [(rid, step, "loss", loss, hb), (rid, step, "lr", lr_now, hb),
                     (rid, step, "tokens_per_s", 41000 + rng.gauss(0, 900) - width * 20, hb),
                     (rid, step, "grad_norm", 0.4 + 1.5 * math.exp(-4 * frac) + abs(rng.gauss(0, 0.05)), hb)]
            if k % 6 == 0:
                rows.append((rid, step, "eval_loss", loss + 0.08 + rng.gauss(0, 0.01), hb))
        db.executemany("INSERT INTO metrics (run_id, step, name, value, time) VALUES (?,?,?,?,?)", rows)
        metric_rows += len(rows)
        if status == "done":
            for task, metric in TASKS:
                v = 0.25 + 0.35 * rng.random() + (0.05 if stage != "pretrain" else 0)
                db.execute("""INSERT INTO evals (run_id, checkpoint, task, metric, value, stderr, n,
                              fewshot, created_at) VALUES (?,?,?,?,?,?,?,?,?)""",
                           (rid, f"runs/{rid}/final", task, metric, v,
                            math.sqrt(v * (1 - v) / 1000), 1000, 0, created + 56))
        if group % 5 == 0 and stage == "pretrain":
            db.execute("INSERT INTO tags (run_id, tag) VALUES (?, 'baseline')", (rid,))
    db.commit()
    db.close()
    return metric_rows


def start_ui(path):
    p = subprocess.Popen([DOGE, "ui", "--port", "0", "--registry", path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r"http://\S+/", line)
    if not m:
        p.kill()
        sys.exit(f"doge ui printed no URL: {line!r} {p.stderr.read()}")
    return p, m.group(0)


def curl(url):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_download}", url],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), float(out[1]) * 1e3, int(out[2])


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def first_render(browser, url):
    """Loads the page in a fresh headless Chromium driven over --remote-debugging-pipe (real
    time: `--virtual-time-budget` would stop the page's clock while requests are in flight) and
    returns the page's own `data-first-render-ms`, the wall time from navigating to seeing it,
    and how many table rows and curves were drawn."""
    r3, w3 = os.pipe()
    r4, w4 = os.pipe()
    profile = tempfile.mkdtemp(prefix="doge-ui-chromium-")

    def fds():
        os.dup2(r3, 3)
        os.dup2(w4, 4)

    p = subprocess.Popen([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                          f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
                         pass_fds=(3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(r3)
    os.close(w4)
    out, inp = os.fdopen(w3, "wb", buffering=0), os.fdopen(r4, "rb", buffering=0)
    state = {"buf": b"", "n": 0}

    def call(method, session=None, **params):
        state["n"] += 1
        msg = {"id": state["n"], "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        out.write(json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in state["buf"]:
                state["buf"] += inp.read(65536)
            raw, state["buf"] = state["buf"].split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == state["n"]:
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply.get("result", {})

    try:
        page = [t for t in call("Target.getTargets")["targetInfos"] if t["type"] == "page"][0]
        sid = call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        t = time.time()
        call("Page.navigate", sid, url=url)
        probe = ("[document.documentElement.dataset.firstRenderMs || null, "
                 "document.querySelectorAll('#runs-table tbody tr').length, "
                 "document.querySelectorAll('path.line').length]")
        while time.time() - t < 30:
            # Right after navigating, the old document may answer (or none): no value yet.
            v = call("Runtime.evaluate", sid, expression=probe, returnByValue=True).get("result", {}).get("value")
            if v and v[0]:
                return float(v[0]), (time.time() - t) * 1e3, v[1], v[2]
            time.sleep(0.005)
        raise RuntimeError("the page never marked its first render")
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=200_000, help="metric rows in all")
    ap.add_argument("--registry", help="keep the registry here instead of a temporary folder")
    ap.add_argument("--serve", action="store_true", help="seed, start doge ui, print the URL and wait")
    ap.add_argument("--repeat", type=int, default=5, help="timings per endpoint (the median is shown)")
    args = ap.parse_args()
    if not os.path.exists(DOGE):
        sys.exit("build first: cargo build --release")
    tmp = tempfile.mkdtemp(prefix="doge-ui-bench-")
    path = args.registry or os.path.join(tmp, "doge.sqlite")
    if os.path.exists(path):
        os.remove(path)
    t = time.time()
    n = seed(path, args.runs, args.rows // args.runs)
    print(f"seeded {args.runs} runs, {n} metric rows in {time.time() - t:.1f} s ({path})")
    ui, url = start_ui(path)
    try:
        if args.serve:
            print(f"serving {url} (Ctrl-C stops)")
            ui.wait()
            return
        first = json.loads(subprocess.run(["curl", "-s", f"{url}api/runs?limit=50"], capture_output=True,
                                          text=True, check=True).stdout)
        ids = ",".join(r["id"] for r in first["runs"][:5])
        live = [r for r in first["runs"] if r["status"] == "running"][:1]
        targets = [("GET /", url), ("GET /app.js", url + "app.js"), ("GET /style.css", url + "style.css"),
                   ("GET /api/runs?limit=50 (first page)", url + "api/runs?sort=-created&limit=50&offset=0"),
                   ("GET /api/runs?where=... (filtered)",
                    url + "api/runs?limit=50&where=" + urllib.parse.quote("stage.pretrain.lr < 6e-3 and status = done")),
                   ("GET /api/runs?offset=950 (last page)", url + "api/runs?limit=50&offset=950"),
                   ("GET /api/metrics (5 runs, all curves)", url + "api/metrics?ids=" + ids)]
        if live:
            r = live[0]
            after = ",".join(f"{r['id']}:{k}:{v[0]}" for k, v in r["metrics"].items())
            targets.append(("GET /api/metrics?after=... (one poll)", url + "api/metrics?ids=" + r["id"] + "&after=" + after))
        targets.append(("GET /api/compare (5 runs)", url + "api/compare?ids=" + ids))
        print(f"\n{'endpoint':44} {'status':>6} {'median ms':>10} {'max ms':>8} {'bytes':>9}")
        for label, u in targets:
            times = []
            for _ in range(args.repeat):
                code, ms, size = curl(u)
                times.append(ms)
            times.sort()
            print(f"{label:44} {code:>6} {times[len(times) // 2]:>10.1f} {times[-1]:>8.1f} {size:>9}")
        browser = chromium()
        if not browser:
            print("\nno Chromium found: the full-page timing is skipped (apt-get install chromium)")
            return
        print()
        for attempt in range(3):
            ms, wall, rows, paths = first_render(browser, url)
            print(f"chromium load {attempt + 1} (fresh browser): table + first curves drawn {ms:.0f} ms after "
                  f"navigation start ({rows} table rows, {paths} curves); navigate -> drawn seen {wall:.0f} ms")
    finally:
        ui.kill()
        ui.wait()
        if not args.registry:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
