#!/usr/bin/env bash
# One-shot GPU verification for a machine lent for about ten minutes (no Rust toolchain, no
# network; CUDA 13 driver, PyTorch and its NVIDIA libraries installed). Build the binary here first:
#
#     bench/build-gpu-binary.sh          # writes dist/doge-cuda.gz (stripped, gzipped: < 64 MiB)
#
# then, on the GPU machine, from the repository root:
#
#     bench/gpu-check.sh OUT_DIR
#
# It writes to OUT_DIR: environment (nvidia-smi, ldd), the kernel self-test, CUDA-vs-CPU-vs-
# transformers scores of the reference models, greedy generations, Doge-tiny loss curves (CPU f32,
# CUDA f32, CUDA bf16), a Doge-60M training benchmark (tokens/s, MFU, memory), a generation
# benchmark, and summary.md with every figure. Each part has its own time limit and a failing part
# does not stop the others; the exit status is the number of failed parts.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bench/gpu-check.sh OUT_DIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)" # absolute: experiment paths are relative to the experiment file
FAILED=0
SUMMARY="$OUT/summary.md"
: >"$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
part() { # part NAME SECONDS COMMAND...: runs one part, logs it, counts a failure
    local name="$1" limit="$2"
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    note "- $name: exit $rc in $((SECONDS - t0)) s"
    [ $rc -eq 0 ] || FAILED=$((FAILED + 1))
    return $rc
}

# --- The binary and the CUDA libraries it links (cuBLAS, cuRAND, NVRTC, NCCL from PyTorch's wheels).
DOGE="${DOGE_BIN:-dist/doge}"
if [ ! -x "$DOGE" ] && [ -e dist/doge-cuda.gz ]; then
    gunzip -c dist/doge-cuda.gz >dist/doge && chmod +x dist/doge
fi
PY="${PYTHON:-python3}"
LIBS="$("$PY" - <<'EOF' 2>/dev/null
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
dirs = set()
for r in roots:
    for pattern in ("nvidia/*/lib", "nvidia/cu13/lib", "torch/lib"):
        for d in glob.glob(os.path.join(r, pattern)):
            dirs.add(d)
print(":".join(sorted(dirs)))
EOF
)"
export LD_LIBRARY_PATH="${LIBS}${LIBS:+:}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
note "# doge GPU check, $(date -u +%FT%TZ)"
note ""
{
    nvidia-smi
    echo
    ldd "$DOGE"
    echo
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
} >"$OUT/environment.txt" 2>&1
note "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null)"
if ldd "$DOGE" | grep -q "not found"; then
    note "missing libraries: $(ldd "$DOGE" | grep 'not found' | tr -s ' \n' ' ')"
fi
note ""
note "## Parts"

# --- 1. Every fused kernel against the composed candle ops (forward and gradient).
part selftest 120 "$DOGE" cuda selftest --device cuda:0

# --- 1b. NCCL (issue 17) at world 1: the all-reduce against its closed form on the GPU, then two
# Doge-tiny steps with the gradients through NCCL (DOGE_DIST_NCCL=1) against the same two without.
part nccl-check 60 "$DOGE" dist check --device cuda:0
for mode in plain on; do
    part "train-nccl-$mode" 120 env DOGE_DIST_NCCL="$([ $mode = on ] && echo 1 || echo 0)" \
        "$DOGE" exp run experiments/doge-tiny.kdl --device cuda:0 --quiet \
        --set "stage.pretrain.max-steps=2" --set "stage.pretrain.log-every=1" \
        --set "stage.pretrain.eval-every=0" --set "registry=$OUT/registry-nccl-$mode"
done
part compare-nccl 30 "$PY" bench/gpu_compare.py nccl "$OUT"

# --- 2. Reference models: CUDA f32 scores and greedy tokens vs CPU and vs transformers.
for m in dense moe; do
    fx=tests/fixtures/doge-tiny/$m
    part "score-$m-cpu" 60 "$DOGE" score --model $fx --input $fx/score.jsonl --device cpu \
        --output "$OUT/score-$m-cpu.jsonl"
    part "score-$m-cuda" 60 "$DOGE" score --model $fx --input $fx/score.jsonl --device cuda:0 \
        --output "$OUT/score-$m-cuda.jsonl"
    part "generate-$m-cuda" 60 "$DOGE" generate --model $fx --input $fx/generate.jsonl --greedy \
        --max-new-tokens "$("$PY" -c "import json;print(max(json.loads(l)['max_new_tokens'] for l in open('$fx/generate.jsonl')))")" \
        --device cuda:0 --output "$OUT/generate-$m-cuda.jsonl"
done
part compare-scores 30 "$PY" bench/gpu_compare.py scores "$OUT"

# --- 3. Doge-tiny training: loss curves on CPU f32, CUDA f32 and CUDA bf16 (120 steps each).
STEPS=120
for cfg in "cpu f32" "cuda:0 f32" "cuda:0 bf16"; do
    set -- $cfg
    tag="train-tiny-${1%%:*}-$2"
    part "$tag" 240 "$DOGE" exp run experiments/doge-tiny.kdl --device "$1" --quiet \
        --set "precision=$2" --set "stage.pretrain.max-steps=$STEPS" \
        --set "stage.pretrain.eval-every=20" --set "stage.pretrain.log-every=10" \
        --set "registry=$OUT/registry-$tag"
done
part compare-curves 30 "$PY" bench/gpu_compare.py curves "$OUT"

# --- 4. Doge-60M pretraining throughput in bf16 (the issue's target: 40% MFU, ~750K tokens/s).
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$OUT/memory-60m.csv" &
SAMPLER=$!
part bench-train-60m 180 "$DOGE" bench train --preset doge-60m --device cuda:0 --precision bf16 \
    --batch 16 --seq 2048 --steps 20 --warmup 3 --json
kill $SAMPLER 2>/dev/null
note "- Doge-60M peak GPU memory (nvidia-smi): $(sort -n "$OUT/memory-60m.csv" | tail -1) MiB"
# The same with the fused attention kernels in training too (forward + backward), to choose the
# default (doge/model/doge.rs).
part bench-train-60m-fused-attention 180 env DOGE_CUDA_ATTENTION=fused "$DOGE" bench train \
    --preset doge-60m --device cuda:0 --precision bf16 --batch 16 --seq 2048 --steps 20 --warmup 3 --json
part bench-train-60m-f32 120 "$DOGE" bench train --preset doge-60m --device cuda:0 \
    --batch 8 --seq 2048 --steps 10 --warmup 2 --json

# --- 5. Generation with the KV cache, batch 1.
part bench-generate-60m 90 "$DOGE" bench generate --preset doge-60m --device cuda:0 \
    --prompt-len 32 --new-tokens 128 --json

note ""
note "## Figures"
for f in "$OUT"/bench-*.log "$OUT"/compare-*.log "$OUT"/selftest.log; do
    [ -e "$f" ] || continue
    note ""
    note "### $(basename "$f" .log)"
    note '```'
    tail -25 "$f" | tee -a "$SUMMARY" >/dev/null
    note '```'
done
note ""
note "failed parts: $FAILED"
exit "$FAILED"
