#!/usr/bin/env bash
# GPU check of DINO training on the device (docs/training.md, "On a GPU"), in two halves:
#
#   scripts/gpu-check-train.sh --pack <bindir>   here (Rust, no GPU): builds the release `dinonat` and
#       copies it, stripped, with this script and gpu-lib.sh into <bindir>.
#   <bindir>/gpu-check-train.sh <logdir>         on the GPU host (driver + NVRTC, no Rust):
#       1. `bench train-step --device cuda` of nat_mini at 224 px, 2 x 224 + 10 x 96 crops, batch 64,
#          in f32 and in bf16 (img/s and the time split per phase);
#       2. 100 steps of `dinonat train --device cuda --precision bf16` on the built-in set at 224 px with
#          the same crops (img/s per step, the peak device memory). That a GPU checkpoint resumes on the
#          CPU and the other way round is train/tests/cuda_train.rs, in gpu-check-ops.sh.
#   Each step under its own timeout within GPU_CHECK_BUDGET s (default 120); logs in <logdir>; a table
#   printed LAST (also <logdir>/table.md), whatever failed.
set -u
source "$(dirname "$0")/gpu-lib.sh"

if [ "${1:-}" = "--pack" ]; then
    dest=${2:?usage: gpu-check-train.sh --pack <bindir>}
    root=$(cd "$(dirname "$0")/.." && pwd)
    cd "$root" || exit 1
    cargo build --release -q --bin dinonat || exit 1
    mkdir -p "$dest"
    cp target/release/dinonat "$dest/dinonat"
    strip "$dest/dinonat"
    cp scripts/gpu-check-train.sh scripts/gpu-lib.sh "$dest/"
    ls -la "$dest"
    exit 0
fi

logdir=${1:?usage: gpu-check-train.sh <logdir>   (or --pack <bindir>)}
mkdir -p "$logdir"
logdir=$(cd "$logdir" && pwd)
bin=$(cd "$(dirname "$0")" && pwd)
t0=$(date +%s)
deadline=$((t0 + ${GPU_CHECK_BUDGET:-120}))
steps="$logdir/steps.log"
: >"$steps"
card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n1)
use_nvrtc13
export DINONAT_REQUIRE_GPU=1

mini="--arch nat_mini --global-size 224 --local-size 96 --local-crops 10 --batch-size 64"
for p in f32 bf16; do
    run_step "bench-train-step-$p" 40 "$logdir/bench-train-step-$p.json" \
        "$bin/dinonat" bench train-step --device cuda --precision "$p" $mini --warmup 2 --steps 10 --json
done
run_step train-100 70 "$logdir/train-100.log" \
    "$bin/dinonat" train --device cuda --precision bf16 $mini --procedural-size 224 --steps 100 \
    --checkpoint-every 50 --no-eval --json --out "$logdir/run"

{
    echo "## gpu-check-train: ${card:-no GPU found} ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "| step | result |"
    echo "| --- | --- |"
    sed -E 's/^([^:]+): (.*)$/| \1 | \2 |/' "$steps"
    for p in f32 bf16; do
        f="$logdir/bench-train-step-$p.json"
        [ -s "$f" ] && echo "| bench train-step $p | $(grep -o '"img_per_s":[0-9.]*' "$f" | head -n1) |"
    done
    grep -E 'img/s|peak device memory' "$logdir/train-100.log" 2>/dev/null | tail -n 3 | sed 's/^/| train-100 | /; s/$/ |/'
} | tee "$logdir/table.md"
