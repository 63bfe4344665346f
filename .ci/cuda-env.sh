#!/usr/bin/env bash
# Source this file to build `--features cuda` on a machine without a GPU or a CUDA install:
#
#     source .ci/cuda-env.sh && cargo build --release --features cuda
#
# What it sets up, and why:
# - nvcc, the CUDA headers and NVRTC come from NVIDIA's PyPI wheels (pinned to CUDA 13.0, so the PTX
#   that candle's kernels are compiled to loads on any CUDA 13 driver), in a venv under
#   $DOGE_CUDA_VENV (default ~/.cache/doge/cuda13). Only the first call downloads (about 150 MB).
# - candle links cudarc with `dynamic-linking`, so the binary needs libcuda, libcublas, libcublasLt,
#   libcurand and libnccl (doge/dist/nccl.rs) at link time. Those come with the NVIDIA driver and
#   PyTorch on a GPU machine, not here, so we link against *stubs*: shared objects with the real
#   sonames that define every symbol cudarc declares and return an error code. At run time the loader picks the real libraries
#   (libcuda.so.1 from the driver; the rest from PyTorch's nvidia-* wheels, see bench/gpu-check.sh).
#   The stubs are never on LD_LIBRARY_PATH of a real run; only `doge cuda kernels` (NVRTC, which
#   is real) loads them, to compile doge's kernels in CI.
# - cudarc 0.19 knows CUDA versions up to 13.4, so the version is given explicitly.
#
# Run directly (`bash .ci/cuda-env.sh`) it only sets up and prints the CUDA root.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # Sourced: do the set-up in a strict child shell, then export into the caller.
    __doge_nv="$(bash "${BASH_SOURCE[0]}")" || return 1
    export CUDA_ROOT="$__doge_nv"
    export PATH="$__doge_nv/bin:$PATH"
    export CUDARC_CUDA_VERSION=13000
    # H100 and H200 are sm_90; candle compiles its kernels for this capability.
    export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
    # For `doge cuda kernels` without a GPU: LD_LIBRARY_PATH="$DOGE_CUDA_STUB_PATH" doge cuda kernels
    export DOGE_CUDA_STUB_PATH="$__doge_nv/lib/stubs-run:$__doge_nv/lib"
    unset __doge_nv
    return 0
fi
set -euo pipefail

DOGE_CUDA_VENV="${DOGE_CUDA_VENV:-$HOME/.cache/doge/cuda13}"
PY="${PYTHON:-python3}"
# Every piece pinned, nvvm included (nvcc's compiler back end): an unpinned nvvm resolves to the
# newest, whose PTX version 13.0's ptxas rejects ("Unsupported .version 9.5").
WHEELS=("nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-cuda-runtime==13.0.96"
    "nvidia-cuda-cccl==13.0.85" "nvidia-cuda-nvrtc==13.0.88" "nvidia-nvvm==13.0.88")
# The marker names the pins, so changing them reinstalls.
STAMP="$DOGE_CUDA_VENV/.ok-$(echo "${WHEELS[*]}" | cksum | cut -d' ' -f1)"
if [ ! -e "$STAMP" ]; then
    # A venv when the Python has one; else pip's --target (some Pythons ship without venv).
    if "$PY" -m venv "$DOGE_CUDA_VENV" >&2 2>/dev/null && [ -x "$DOGE_CUDA_VENV/bin/pip" ]; then
        "$DOGE_CUDA_VENV/bin/pip" install --quiet --disable-pip-version-check "${WHEELS[@]}" >&2
    else
        "$PY" -m pip install --quiet --disable-pip-version-check --target "$DOGE_CUDA_VENV/site" \
            "${WHEELS[@]}" >&2
    fi
    touch "$STAMP"
fi
NVCC="$(find "$DOGE_CUDA_VENV" -path '*/nvidia/cu13/bin/nvcc' | head -1)"
if [ -z "$NVCC" ]; then
    echo "cuda-env: nvcc not found under $DOGE_CUDA_VENV; delete it and retry" >&2
    exit 1
fi
NV="$(dirname "$(dirname "$NVCC")")"

# Unversioned names for the linker, next to the real NVRTC.
ln -sf libnvrtc.so.13 "$NV/lib/libnvrtc.so"
ln -sf libcudart.so.13 "$NV/lib/libcudart.so"

# Link stubs, generated from the symbol lists of the cudarc sources cargo fetched.
CUDARC_SRC="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | sort | tail -1 || true)"
if [ -z "$CUDARC_SRC" ]; then
    cargo fetch --quiet >&2
    CUDARC_SRC="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | sort | tail -1)"
fi
STUBS="$NV/lib/stubs"
mkdir -p "$STUBS"
make_stub() { # make_stub <sys module> <symbol prefix> <file name> <soname>
    local src="$CUDARC_SRC/src/$1/sys/mod.rs" c="$STUBS/$3.c"
    [ -e "$STUBS/$3" ] && [ "$STUBS/$3" -nt "$src" ] && return 0
    grep -o "fn $2[A-Za-z0-9_]*" "$src" | sed 's/^fn //' | sort -u |
        sed 's/.*/int &(void) { return 999; }/' >"$c"
    cc -shared -fPIC -Wl,-soname,"$4" -o "$STUBS/$3" "$c"
}
make_stub driver cu libcuda.so libcuda.so.1
make_stub cublas cublas libcublas.so libcublas.so.13
make_stub cublaslt cublasLt libcublasLt.so libcublasLt.so.13
make_stub curand curand libcurand.so libcurand.so.10
make_stub nccl nccl libnccl.so libnccl.so.2
# Run-time names of the stubs, only for `doge cuda kernels` (NVRTC) on a machine without a GPU:
# LD_LIBRARY_PATH="$NV/lib/stubs-run:$NV/lib" doge cuda kernels
mkdir -p "$NV/lib/stubs-run"
for pair in libcuda.so:libcuda.so.1 libcublas.so:libcublas.so.13 libcublasLt.so:libcublasLt.so.13 \
    libcurand.so:libcurand.so.10 libnccl.so:libnccl.so.2; do
    ln -sf "../stubs/${pair%%:*}" "$NV/lib/stubs-run/${pair##*:}"
done

echo "$NV"
