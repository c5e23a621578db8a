#!/usr/bin/env bash
# The attention GPU check, in two halves (docs/gpu-attention.md):
#
#   scripts/gpu-check-attention.sh --pack <bindir>   on a development machine (Rust, no GPU):
#       builds the release binaries and copies into <bindir>: the stripped `dinonat`, the stripped
#       test binary of kernels/tests/cuda_attention.rs (`cuda-attention-tests`), this script, the
#       PyTorch baseline ../shared/bench-ref/attention_gpu_torch.py restricted to the target
#       shapes (56x56 and 112x112; the 224 line removed) and the NATTEN wheel.
#   <bindir>/gpu-check-attention.sh <logdir>         on the GPU host (driver, NVRTC, PyTorch; no
#       Rust): the parity and determinism tests, `dinonat bench attention --device cuda --json` on
#       the target shapes (batch 8, heads 4, 56x56 and 112x112, head dim 32, kernel 7, rpb on, f32
#       and bf16, fwd and fwd+bwd), the same shapes through PyTorch (SDPA, gather NA, NATTEN Flex);
#       each step under its own timeout, all within ~3 minutes; logs in <logdir>; a table printed
#       LAST (also <logdir>/table.md), whatever failed.
set -u
source "$(dirname "$0")/gpu-lib.sh"

if [ "${1:-}" = "--pack" ]; then
    dest=${2:?usage: gpu-check-attention.sh --pack <bindir>}
    root=$(cd "$(dirname "$0")/.." && pwd)
    cd "$root" || exit 1
    cargo build --release || exit 1
    test_bin=$(find_test_bin dinonat-kernels cuda_attention)
    [ -x "$test_bin" ] || { echo "GPU test binary not found"; exit 1; }
    mkdir -p "$dest"
    cp target/release/dinonat "$dest/dinonat"
    cp "$test_bin" "$dest/cuda-attention-tests"
    strip "$dest/dinonat" "$dest/cuda-attention-tests"
    cp scripts/gpu-check-attention.sh scripts/gpu-lib.sh "$dest/"
    ref=${BENCH_REF:-../shared/bench-ref}
    sed 's/, (8, 4, 112, 32, 7), (2, 4, 224, 32, 7)\]/, (8, 4, 112, 32, 7)]/' \
        "$ref/attention_gpu_torch.py" >"$dest/attention_gpu_torch.py"
    cp "$ref"/wheels/natten-*.whl "$dest/" 2>/dev/null || echo "NATTEN wheel not found under $ref/wheels"
    ls -la "$dest"
    exit 0
fi

logdir=${1:?usage: gpu-check-attention.sh <logdir>   (or --pack <bindir>)}
mkdir -p "$logdir"
bin=$(cd "$(dirname "$0")" && pwd)
t0=$(date +%s)
deadline=$((t0 + ${BUDGET_S:-165}))
steps="$logdir/steps.log"
: >"$steps"

{
    date -u
    nvidia-smi
    ldconfig -p | grep -E 'libcuda\.|libnvrtc' || true
} >"$logdir/env.log" 2>&1
use_nvrtc13
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >>"$logdir/env.log"
card=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n1)

shape=(--batch 8 --heads 4 --dim 32 --sizes 56,112 --kernels 7 --dilation 1 --rpb true --pass both --flop-budget 100000 --json)
run_step tests 70 "$logdir/tests.log" "$bin/cuda-attention-tests" --test-threads=1 --nocapture
run_step bench-f32 25 "$logdir/bench-f32.jsonl" "$bin/dinonat" bench attention --device cuda "${shape[@]}" --dtype f32
run_step bench-bf16 25 "$logdir/bench-bf16.jsonl" "$bin/dinonat" bench attention --device cuda "${shape[@]}" --dtype bf16
site=/tmp/natten-site
if ls "$bin"/natten-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-deps --no-index --target "$site" "$bin"/natten-*.whl >"$logdir/pip.log" 2>&1 || echo "pip install of NATTEN failed" >>"$logdir/pip.log"
fi
run_step torch 60 "$logdir/torch.log" env PYTHONUNBUFFERED=1 PYTHONPATH="$site" python3 "$bin/attention_gpu_torch.py"

# --- the table, last
python3 - "$logdir" "$card" "$t0" <<'PY' | tee "$logdir/table.md"
import json, os, re, sys, time
logdir, card, t0 = sys.argv[1], sys.argv[2], int(sys.argv[3])
def lines(name):
    p = os.path.join(logdir, name)
    return open(p, errors="replace").read().splitlines() if os.path.exists(p) else []
print(f"## Attention GPU check: {card or 'no GPU seen'}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t0))}")
print()
for l in lines("steps.log"):
    print(f"- {l}")
res = [l for l in lines("tests.log") if l.startswith("test result")]
print("\nTests: " + ("; ".join(res[-1:]) if res else "no result (see tests.log)"))
for l in lines("tests.log"):
    if l.startswith(("na f32", "na bf16", "attention f32", "attention bf16", "skipped")) or "FAILED" in l or "panicked" in l:
        if "seed" not in l:
            print(f"    {l}")
ours = {}
for f in ("bench-f32.jsonl", "bench-bf16.jsonl"):
    for l in lines(f):
        try:
            r = json.loads(l)
        except ValueError:
            continue
        ours[(r["op"], r["dtype"], r["size"], r["pass"])] = r
for f in ("bench-f32.jsonl", "bench-bf16.jsonl"):
    for l in lines(f):
        if l.strip() and not l.startswith("{"):
            print(f"    {f}: {l}")
base = {}
torch_ver = [l for l in lines("torch.log") if " torch " in l and ":" not in l]
for l in lines("torch.log"):
    m = re.match(r"(\S+)\s+B(\d+) h(\d+) (\d+)x\d+ d(\d+) k(\d+):(.*)", l)
    if not m:
        continue
    dt = {"float32": "f32", "bfloat16": "bf16"}.get(m.group(1), m.group(1))
    size = int(m.group(4))
    for name, a, b in re.findall(r"(sdpa|gather-na|natten)\s+([\d.]+)/\s*([\d.]+) ms", m.group(7)):
        base[(name, dt, size, "fwd")] = float(a)
        base[(name, dt, size, "fwd+bwd")] = float(b)
    for name in re.findall(r"(sdpa|gather-na|natten) failed", m.group(7)):
        base[(name, dt, size, "failed")] = True
def ms(x):
    return f"{x:.3f}" if isinstance(x, float) else "-"
def ratio(a, b):
    return f"{a / b:.1f}x" if isinstance(a, float) and isinstance(b, float) and b > 0 else "-"
print()
if torch_ver:
    print(f"Baselines: {torch_ver[0]}")
print("Batch 8, heads 4, head dim 32, kernel 7; ours NA with rpb (baselines without); ms = median, CUDA events.\n")
print("| dtype | grid | pass | ours NA ms | ours full ms | gather NA ms | NATTEN Flex ms | SDPA ms | gather/ours | NATTEN/ours | SDPA/ours |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for dt in ("f32", "bf16"):
    for size in (56, 112):
        for p in ("fwd", "fwd+bwd"):
            o = ours.get(("na", dt, size, p), {}).get("ms")
            f = ours.get(("full", dt, size, p), {}).get("ms")
            g = base.get(("gather-na", dt, size, p))
            n = base.get(("natten", dt, size, p))
            s = base.get(("sdpa", dt, size, p))
            print(f"| {dt} | {size}x{size} | {p} | {ms(o)} | {ms(f)} | {ms(g)} | {ms(n)} | {ms(s)} | {ratio(g, o)} | {ratio(n, o)} | {ratio(s, o)} |")
print("\nNA breakdown (ours): forward without attn / backward alone / backward without d(rpb), ms")
for dt in ("f32", "bf16"):
    for size in (56, 112):
        f = [ours.get(("na", dt, size, p), {}).get("ms") for p in ("fwd", "bwd", "bwd-no-drpb")]
        print(f"- {dt} {size}x{size}: " + " / ".join(ms(x) for x in f))
for k in base:
    if k[3] == "failed":
        print(f"baseline {k[0]} failed for {k[1]} {k[2]}x{k[2]} (see torch.log)")
print(f"\nTargets (fwd+bwd): gather/ours >= 20x, NATTEN/ours > 1x, SDPA/ours >= 5x at 112x112. Whole check {int(time.time()) - t0} s")
PY
