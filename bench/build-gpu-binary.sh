#!/usr/bin/env bash
# Builds the x86-64 CUDA binary for bench/gpu-check.sh on a machine without a GPU and packs it
# small enough to carry (the device tool carries at most 64 MiB): stripped and gzipped, about 20 MB.
#     bench/build-gpu-binary.sh    ->  dist/doge-cuda.gz
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/cuda-env.sh
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}" cargo build --release --features cuda --bin doge
mkdir -p dist
strip -o dist/doge "${CARGO_TARGET_DIR:-target/cuda}/release/doge"
gzip -9 -c dist/doge >dist/doge-cuda.gz
rm dist/doge
ls -l dist/doge-cuda.gz
