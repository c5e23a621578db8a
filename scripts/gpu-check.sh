#!/usr/bin/env bash
# The GPU check, in two halves (docs/gpu.md):
#
#   scripts/gpu-check.sh --pack <bindir>   on a development machine (Rust, no GPU): builds the
#       release binaries with the GEMM dev corner (feature gemm-dev: forced kernels, bf16 / B^T
#       operands, DINONAT_NO_WGMMA / DINONAT_NO_NMAJOR), copies the stripped `dinonat`, the stripped
#       GPU test binary (`cuda-tests`, kernels/tests/cuda.rs), this script and
#       scripts/gemm_torch.py into <bindir>.
#   <bindir>/gpu-check.sh <logdir>         on the GPU host (driver, NVRTC, PyTorch; no Rust):
#       nvidia-smi, the GPU tests, `dinonat info`, `dinonat bench gemm --device cuda --json`, the same
#       shapes through torch.matmul (cuBLAS), optionally compute-sanitizer on the tests; each step
#       under its own timeout, all within ~4 minutes; full logs in <logdir>; a short table printed
#       LAST (also written to <logdir>/table.md), whatever failed.
set -u
source "$(dirname "$0")/gpu-lib.sh"

if [ "${1:-}" = "--pack" ]; then
    dest=${2:?usage: gpu-check.sh --pack <bindir>}
    root=$(cd "$(dirname "$0")/.." && pwd)
    cd "$root" || exit 1
    cargo build --release -p dinonat --bin dinonat --features gemm-dev || exit 1
    test_bin=$(find_test_bin dinonat-kernels cuda gemm-dev)
    [ -x "$test_bin" ] || { echo "GPU test binary not found"; exit 1; }
    mkdir -p "$dest"
    cp target/release/dinonat "$dest/dinonat"
    cp "$test_bin" "$dest/cuda-tests"
    strip "$dest/dinonat" "$dest/cuda-tests"
    cp scripts/gpu-check.sh scripts/gpu-lib.sh scripts/gemm_torch.py "$dest/"
    ls -la "$dest"
    exit 0
fi

logdir=${1:?usage: gpu-check.sh <logdir>   (or --pack <bindir>)}
mkdir -p "$logdir"
bin=$(cd "$(dirname "$0")" && pwd)
t0=$(date +%s)
deadline=$((t0 + ${GPU_CHECK_BUDGET:-230})) # leave time for the table inside the lease call
steps="$logdir/steps.log"
: >"$steps"

# --- environment: the card, the libraries
{
    date -u
    nvidia-smi
    echo "--- libraries"
    ldconfig -p | grep -E 'libcuda\.|libnvrtc' || true
} >"$logdir/env.log" 2>&1
if ! ldconfig -p | grep -q 'libnvrtc\.so\.13'; then
    nv=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)
    lib=$( (ls -d /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 2>/dev/null
        [ -n "$nv" ] && find "$nv/nvidia" -maxdepth 3 -name 'libnvrtc.so.13' -printf '%h\n' 2>/dev/null) |
        while read -r d; do [ -e "$d/libnvrtc.so.13" ] && echo "$d" && break; done)
    [ -n "$lib" ] && export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >>"$logdir/env.log"
card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n1)

# Smoke test of the Hopper (wgmma) kernels first: a hang (pipeline deadlock) or a failure there
# turns them off (DINONAT_NO_WGMMA) for the later steps, so the rest of the check still runs.
run_step wgmma-smoke 25 "$logdir/smoke.log" "$bin/cuda-tests" --test-threads=1 --nocapture \
    gemm_wgmma_bf16_bt gemm_wgmma_large
smoke=$?
if [ "$smoke" -ne 0 ]; then
    echo "wgmma smoke test failed (rc=$smoke): DINONAT_NO_WGMMA=1 for the remaining steps" | tee -a "$steps"
    export DINONAT_NO_WGMMA=1
fi
# The bf16 kernel reading a row-major B in place (N-major): on failure, gemm_bf16 transposes B
# first (DINONAT_NO_NMAJOR) for the remaining steps.
run_step nmajor 20 "$logdir/nmajor.log" "$bin/cuda-tests" --test-threads=1 --nocapture gemm_wgmma_bf16_n_major
nm=$?
if [ "$nm" -ne 0 ] && [ "$smoke" -eq 0 ]; then
    echo "N-major test failed (rc=$nm): DINONAT_NO_NMAJOR=1 for the remaining steps" | tee -a "$steps"
    export DINONAT_NO_NMAJOR=1
fi
run_step tests 50 "$logdir/tests.log" "$bin/cuda-tests" --test-threads=1 --nocapture
run_step info 15 "$logdir/info.log" "$bin/dinonat" info
run_step bench 60 "$logdir/bench.jsonl" "$bin/dinonat" bench gemm --device cuda --json
run_step torch 40 "$logdir/torch.jsonl" env PYTHONUNBUFFERED=1 python3 "$bin/gemm_torch.py"
if command -v compute-sanitizer >/dev/null; then
    run_step memcheck 30 "$logdir/memcheck.log" compute-sanitizer --tool memcheck --error-exitcode 3 \
        "$bin/cuda-tests" --test-threads=1 gemm_bf16_direct gemm_batched gemm_wgmma_bf16_bt
fi

# --- the table, last
python3 - "$logdir" "$card" "$t0" <<'PY' | tee "$logdir/table.md"
import json, os, re, sys, time
logdir, card, t0 = sys.argv[1], sys.argv[2], int(sys.argv[3])
def lines(name):
    p = os.path.join(logdir, name)
    return open(p, errors="replace").read().splitlines() if os.path.exists(p) else []
def jsonl(name):
    out = []
    for l in lines(name):
        try:
            out.append(json.loads(l))
        except ValueError:
            pass
    return out
print(f"## GPU check: {card or 'no GPU seen'}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t0))}")
print()
for l in lines("steps.log"):
    print(f"- {l}")
res = [l for l in lines("tests.log") if l.startswith("test result")]
skips = [l for l in lines("tests.log") if l.startswith("skipped:")]
if skips:
    print(f"TESTS SKIPPED: {skips[0]}")
print()
print("Tests: " + ("; ".join(res[-1:]) if res else "no result (see tests.log)"))
for l in lines("tests.log"):
    if ("worst rel err" in l or l.startswith(("batched", "bf16 direct", "bf16 bt", "tf32 bt", "bf16 n-major", "wgmma large"))
            or "FAILED" in l or "panicked" in l or l.startswith("skipped")):
        print(f"    {l}")
for name in ("smoke", "nmajor"):
    for l in lines(f"{name}.log"):
        if "FAILED" in l or "panicked" in l or l.startswith(("test result", "bf16 n-major")):
            print(f"    {name}: {l}")
mc = [l for l in lines("memcheck.log") if "ERROR SUMMARY" in l]
if mc:
    print(f"memcheck: {mc[-1].strip()}")
info = [l for l in lines("info.log") if l.startswith(("gpu", "nvrtc", "cuda"))]
for l in info:
    print(f"    {l}")
ours = jsonl("bench.jsonl")
base = {(r["m"], r["k"], r["n"], r["precision"]): r for r in jsonl("torch.jsonl")}
print()
print("| m x k x n | precision | dinonat kernel | dinonat ms | dinonat TFLOP/s | cuBLAS TFLOP/s | % of cuBLAS | % of datasheet | spot-check err |")
print("|---|---|---|---|---|---|---|---|---|")
seen = set()
for o in ours:
    key = (o["m"], o["k"], o["n"], o["precision"])
    seen.add(key)
    b = base.get(key)
    pct = f"{100 * o['tflops'] / b['tflops']:.0f}%" if b and b["tflops"] > 0 else "-"
    print(f"| {key[0]}x{key[1]}x{key[2]} | {key[3]} | {o.get('variant', '-')} | {o['ms']} | {o['tflops']} | "
          f"{b['tflops'] if b else '-'} | {pct} | {o['pct_roofline']}% of {o['roofline_tflops']} | {o['check_rel_err']} |")
for key in sorted(set(base) - seen):
    b = base[key]
    print(f"| {key[0]}x{key[1]}x{key[2]} | {key[3]} | (not run) | - | - | {b['tflops']} | - | - | - |")
if base:
    print(f"\ncuBLAS via torch {next(iter(base.values())).get('torch', '?')}; whole check {int(time.time()) - t0} s")
PY
