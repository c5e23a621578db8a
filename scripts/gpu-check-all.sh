#!/usr/bin/env bash
# The whole GPU check in one lease (docs/gpu.md): the engine-op parity check, the GEMM check and the
# attention check, one after the other, each under its own time budget, their tables printed last.
#
#   scripts/gpu-check-all.sh --pack <bindir>   here (Rust, no GPU): packs the three checks into <bindir>/{ops,gemm,attn}
#   <bindir>/gpu-check-all.sh <logdir>         on the GPU host: runs them; logs under <logdir>/{ops,gemm,attn}
set -u
here=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" = "--pack" ]; then
    dest=${2:?usage: gpu-check-all.sh --pack <bindir>}
    mkdir -p "$dest"
    bash "$here/gpu-check-ops.sh" --pack "$dest/ops" || exit 1
    bash "$here/gpu-check.sh" --pack "$dest/gemm" || exit 1
    bash "$here/gpu-check-attention.sh" --pack "$dest/attn" || exit 1
    cp "$here/gpu-check-all.sh" "$dest/"
    du -sh "$dest"
    exit 0
fi

logdir=${1:?usage: gpu-check-all.sh <logdir>   (or --pack <bindir>)}
mkdir -p "$logdir"
GPU_CHECK_BUDGET=${OPS_BUDGET_S:-45} bash "$here/ops/gpu-check-ops.sh" "$logdir/ops" >"$logdir/ops.out" 2>&1
GPU_CHECK_BUDGET=${GEMM_BUDGET_S:-60} bash "$here/gemm/gpu-check.sh" "$logdir/gemm" >"$logdir/gemm.out" 2>&1
BUDGET_S=${ATTN_BUDGET_S:-110} bash "$here/attn/gpu-check-attention.sh" "$logdir/attn" >"$logdir/attn.out" 2>&1
for part in ops gemm attn; do
    echo
    echo "===== $part (last lines of its output; full logs in $logdir/$part)"
    tail -n 40 "$logdir/$part.out"
done
