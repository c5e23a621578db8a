#!/usr/bin/env bash
# The whole GPU check in one lease (docs/gpu.md): the engine-op parity check, the GEMM check and the
# attention check, then `--device cuda` against `--device cpu` of the CLI commands (tests/cli_device.rs),
# then the NCCL check (docs/distributed.md), then DINO training on the GPU (gpu-check-train.sh), one
# after the other, each under its own time budget, their tables printed last; the logs also in one
# tarball, <logdir>.tar.gz.
#
#   scripts/gpu-check-all.sh --pack <bindir>   here (Rust, no GPU): packs the checks into <bindir>/{ops,gemm,attn,cli,nccl,train}
#   <bindir>/gpu-check-all.sh <logdir>         on the GPU host: runs them; logs under <logdir>/{ops,gemm,attn,cli,nccl,train}
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/gpu-lib.sh"

if [ "${1:-}" = "--pack" ]; then
    dest=${2:?usage: gpu-check-all.sh --pack <bindir>}
    mkdir -p "$dest"
    bash "$here/gpu-check-ops.sh" --pack "$dest/ops" || exit 1
    bash "$here/gpu-check.sh" --pack "$dest/gemm" || exit 1
    bash "$here/gpu-check-attention.sh" --pack "$dest/attn" || exit 1
    bash "$here/gpu-check-nccl.sh" --pack "$dest/nccl" || exit 1
    bash "$here/gpu-check-train.sh" --pack "$dest/train" || exit 1
    (
        cd "$here/.." || exit 1
        cargo build --release -q --bin dinonat || exit 1
        t=$(find_test_bin dinonat cli_device)
        [ -x "$t" ] || { echo "cli_device test binary not found"; exit 1; }
        mkdir -p "$dest/cli"
        cp "$t" "$dest/cli/cli-device-tests"
        cp target/release/dinonat "$dest/cli/dinonat"
        strip "$dest/cli/cli-device-tests" "$dest/cli/dinonat"
    ) || exit 1
    cp "$here/gpu-check-all.sh" "$here/gpu-lib.sh" "$dest/"
    du -sh "$dest"
    exit 0
fi

logdir=${1:?usage: gpu-check-all.sh <logdir>   (or --pack <bindir>)}
mkdir -p "$logdir"
GPU_CHECK_BUDGET=${OPS_BUDGET_S:-240} bash "$here/ops/gpu-check-ops.sh" "$logdir/ops" >"$logdir/ops.out" 2>&1
GPU_CHECK_BUDGET=${GEMM_BUDGET_S:-60} bash "$here/gemm/gpu-check.sh" "$logdir/gemm" >"$logdir/gemm.out" 2>&1
BUDGET_S=${ATTN_BUDGET_S:-110} bash "$here/attn/gpu-check-attention.sh" "$logdir/attn" >"$logdir/attn.out" 2>&1
mkdir -p "$logdir/cli"
use_nvrtc13 # NVRTC 13 for the CLI's kernels
DINONAT_BIN="$here/cli/dinonat" timeout -k 5 "${CLI_BUDGET_S:-90}" "$here/cli/cli-device-tests" --test-threads=1 --nocapture \
    >"$logdir/cli/cli-device-tests.log" 2>&1
echo "cli-device-tests: rc=$?" >"$logdir/cli.out"
grep -E "device cuda|skipped|test result|panicked" "$logdir/cli/cli-device-tests.log" >>"$logdir/cli.out"
GPU_CHECK_BUDGET=${NCCL_BUDGET_S:-75} bash "$here/nccl/gpu-check-nccl.sh" "$logdir/nccl" >"$logdir/nccl.out" 2>&1
GPU_CHECK_BUDGET=${TRAIN_BUDGET_S:-120} bash "$here/train/gpu-check-train.sh" "$logdir/train" >"$logdir/train.out" 2>&1
tar -czf "$logdir.tar.gz" -C "$(dirname "$logdir")" "$(basename "$logdir")" 2>/dev/null
for part in ops gemm attn cli nccl train; do
    echo
    echo "===== $part (last lines of its output; full logs in $logdir/$part)"
    tail -n 40 "$logdir/$part.out"
done
