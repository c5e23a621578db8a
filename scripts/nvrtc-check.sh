#!/usr/bin/env bash
# CI step (CPU-only machine with the Rust toolchain and python3/pip): compile every CUDA C source
# (kernels/cuda/*.cu) with NVRTC 13.0 for sm_80 and sm_90, failing on any compile error.
# NVRTC comes from the nvidia-cuda-nvrtc wheel, pinned to the GPU hosts' CUDA 13.0 (a newer NVRTC
# may emit a PTX ISA the 580 driver rejects). If the nvcc wheel (ptxas) installs too, print each
# kernel's registers and spills for sm_90. Skips with a message only if the NVRTC wheel cannot be
# installed (no network).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=target/nvrtc-wheel
lib=$cache/nvidia/cu13/lib
if [ ! -e "$lib/libnvrtc.so.13" ]; then
    if ! python3 -m pip install --quiet --disable-pip-version-check --target "$cache" nvidia-cuda-nvrtc==13.0.88; then
        echo "nvrtc-check: SKIPPED: could not install nvidia-cuda-nvrtc==13.0.88 (no network or no pip)"
        exit 0
    fi
fi
[ -e "$lib/libnvrtc.so.13" ] || { echo "nvrtc-check: libnvrtc.so.13 not found under $lib"; exit 1; }
export LD_LIBRARY_PATH="$root/$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

ptx_dir=target/ptx
mkdir -p "$ptx_dir"
rm -f "$ptx_dir"/*.ptx
DINONAT_REQUIRE_NVRTC=1 DINONAT_PTX_DIR="$root/$ptx_dir" \
    cargo test -p dinonat-kernels --release --test cuda_ops -- nvrtc launches_match_the_ptx_entries --nocapture
# (The tensor-core NA's module is one of them; kernels/tests/cuda_na_mma.rs checks it again, on its
# own, where a GPU host runs it.)

# Optional: registers and spills per kernel from ptxas (sm_90).
nvcc_cache=target/nvcc-wheel
ptxas=$nvcc_cache/nvidia/cu13/bin/ptxas
if [ ! -x "$ptxas" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --target "$nvcc_cache" nvidia-cuda-nvcc==13.0.88 ||
        echo "nvrtc-check: ptxas not available (nvidia-cuda-nvcc wheel did not install); skipping the register report"
fi
if [ -x "$ptxas" ]; then
    echo "--- ptxas -arch=sm_90 / sm_90a (registers, spills)"
    for f in "$ptx_dir"/*.sm_90.ptx "$ptx_dir"/*.sm_90a.ptx; do
        [ -e "$f" ] || continue
        arch=${f%.ptx}
        arch=${arch##*.}
        "$ptxas" -arch="$arch" -v "$f" -o /dev/null 2>&1 |
            awk '/Compiling entry/ {gsub(/\x27/, "", $7); name=$7} /spill/ {spill=$0} /Used/ {print "  " name ": " $5 " registers," spill}'
    done
fi
echo "nvrtc-check: OK"
