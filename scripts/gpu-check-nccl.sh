#!/usr/bin/env bash
# The NCCL GPU check, in two halves (docs/distributed.md, "GPUs: NCCL"):
#
#   scripts/gpu-check-nccl.sh --pack <bindir>   here (Rust, no GPU): builds with the train crate's
#       feature `nccl` (no MPI: the checks run one rank) and copies into <bindir> the stripped test
#       binary of train/tests/nccl.rs (`nccl-tests`), the bandwidth benchmark bench/benches/nccl.rs
#       (`nccl-bench`), this script and gpu-lib.sh. DINONAT_REQUIRE_GPU=1 (gpu-lib.sh): a skip fails.
#   <bindir>/gpu-check-nccl.sh <logdir>         on the GPU host (driver, NVRTC, libnccl; no Rust):
#       finds libnccl (the system's or the pip wheel nvidia-nccl-cu13's libnccl.so.2, linked as
#       libnccl.so for cudarc), then a world of one rank: the all-reduce of a nat_mini-sized buffer
#       gives back its input (sum and mean), broadcast, the trainer's gradient averaging through
#       NCCL; then the all-reduce bandwidth beside a device copy. Each step under its own timeout,
#       all within GPU_CHECK_BUDGET s (default 75); without libnccl a skip line, not a hang. Logs in
#       <logdir>; a table printed LAST (also <logdir>/table.md).
set -u
source "$(dirname "$0")/gpu-lib.sh"

if [ "${1:-}" = "--pack" ]; then
    dest=${2:?usage: gpu-check-nccl.sh --pack <bindir>}
    root=$(cd "$(dirname "$0")/.." && pwd)
    cd "$root" || exit 1
    tests=$(find_test_bin dinonat-train nccl nccl)
    bench=$(find_test_bin dinonat-bench nccl nccl bench)
    for b in "$tests" "$bench"; do
        [ -x "$b" ] || { echo "NCCL binaries not found ($tests, $bench)"; exit 1; }
    done
    mkdir -p "$dest"
    cp "$tests" "$dest/nccl-tests"
    cp "$bench" "$dest/nccl-bench"
    strip "$dest/nccl-tests" "$dest/nccl-bench"
    cp scripts/gpu-check-nccl.sh scripts/gpu-lib.sh "$dest/"
    ls -la "$dest"
    exit 0
fi

logdir=${1:?usage: gpu-check-nccl.sh <logdir>   (or --pack <bindir>)}
mkdir -p "$logdir"
logdir=$(cd "$logdir" && pwd)
bin=$(cd "$(dirname "$0")" && pwd)
t0=$(date +%s)
deadline=$((t0 + ${GPU_CHECK_BUDGET:-75}))
steps="$logdir/steps.log"
: >"$steps"
card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n1)

# one machine, one rank: NCCL's bootstrap needs only the loopback interface
export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-lo} NCCL_DEBUG=${NCCL_DEBUG:-WARN}
use_nvrtc13
{
    date -u
    nvidia-smi
    ldconfig -p | grep -E 'libcuda\.|libnvrtc|libnccl' || true
} >"$logdir/env.log" 2>&1
# not in $(...): use_nccl exports LD_LIBRARY_PATH for the steps below
if use_nccl "$logdir/nccl-lib" >"$logdir/nccl-lib.txt"; then
    echo "libnccl: $(cat "$logdir/nccl-lib.txt")" | tee -a "$logdir/env.log"
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >>"$logdir/env.log"
    run_step nccl-tests 45 "$logdir/nccl-tests.log" "$bin/nccl-tests" --test-threads=1 --nocapture
    run_step nccl-bench 30 "$logdir/nccl-bench.jsonl" "$bin/nccl-bench"
else
    echo "nccl: skipped (no libnccl on this host: neither ldconfig nor the pip wheel nvidia-nccl-cu13 has libnccl.so.2)" |
        tee -a "$steps"
fi

{
    echo "## gpu-check-nccl: ${card:-no GPU found} ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "| step | result |"
    echo "| --- | --- |"
    sed -E 's/^([^:]+): (.*)$/| \1 | \2 |/' "$steps"
    grep -E '^(test result|nccl [0-9]|all-reduce )|FAILED|panicked|skipped' "$logdir/nccl-tests.log" 2>/dev/null |
        head -n 12 | sed 's/^/| nccl-tests | /; s/$/ |/'
    grep -E '^skipped|nccl bench' "$logdir/nccl-bench.jsonl" 2>/dev/null | sed 's/^/| nccl-bench | /; s/$/ |/'
    echo
    echo "| gradients of | MB | ranks | in place ms | in place GB/s | out of place ms | out of place GB/s (algbw) | busbw GB/s | device copy GB/s (control) |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    python3 - "$logdir/nccl-bench.jsonl" <<'PY'
import json, sys
try:
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
except OSError:
    rows = []
for r in rows:
    print(f"| {r['gradients_of']} | {r['bytes'] / 1e6:.0f} | {r['ranks']} | {r['in_place_ms']:.4f} | "
          f"{r['in_place_algbw_gbs']:.0f} | {r['out_of_place_ms']:.4f} | {r['out_of_place_algbw_gbs']:.0f} | "
          f"{r['out_of_place_busbw_gbs']:.0f} | {r['device_copy_gbs']:.0f} |")
if rows:
    print(f"\nNCCL {rows[0]['nccl']} on {rows[0]['gpu']}. One rank: NCCL moves nothing between GPUs (in place it "
          "has nothing to do, out of place it copies), so these are its call cost and the copy bandwidth, "
          "not a link's; busbw is 0 at one rank.")
PY
    echo
    echo "whole check $(($(date +%s) - t0)) s"
} >"$logdir/table.md"
cat "$logdir/table.md"
