#!/usr/bin/env bash
# GPU check of the engine-op kernels and the engine on CUDA (docs/gpu-ops.md), in two halves:
#
#   scripts/gpu-check-ops.sh --pack <bindir>   here (Rust, no GPU): builds and strips the test
#       binaries kernels/tests/cuda_ops.rs (`ops-tests`), engine/tests/cuda.rs (`engine-tests`),
#       engine/tests/cuda_attention.rs (`engine-attention-tests`), engine/tests/cuda_optim.rs
#       (`engine-optim-tests`), engine/tests/cuda_bf16.rs (`engine-bf16-tests`: BF16 storage on
#       CUDA), model/tests/cuda_bf16.rs (`model-bf16-tests`: a NAT forward in BF16),
#       train/tests/cuda_dino.rs (`train-dino-tests`), train/tests/cuda_train.rs (`train-loop-tests`:
#       20 DINO steps on the GPU against the CPU), model/tests/network.rs (`model-network-tests`: the
#       DINO network moved to the GPU), kernels/tests/cuda_na_mma.rs (`na-mma-tests`: tensor-core NA
#       parity, then its timing against the SIMT NA, B8 h4 d32 k7 at 56^2 and 112^2) and the eval
#       library's unit tests (`eval-tests`, run for `backbone_features_on_cuda_match_the_cpu`) and
#       copies them with this script into <bindir>. DINONAT_REQUIRE_GPU=1 (gpu-lib.sh): a skip is
#       a failure.
#   <bindir>/gpu-check-ops.sh <logdir>         on the GPU host (driver + NVRTC, no Rust): runs both
#       under their own timeouts (within GPU_CHECK_BUDGET s, default 150), full logs in <logdir>,
#       and prints a short table LAST (also <logdir>/table.md), whatever failed.
set -u
source "$(dirname "$0")/gpu-lib.sh"

if [ "${1:-}" = "--pack" ]; then
    dest=${2:?usage: gpu-check-ops.sh --pack <bindir>}
    root=$(cd "$(dirname "$0")/.." && pwd)
    cd "$root" || exit 1
    ops=$(find_test_bin dinonat-kernels cuda_ops)
    eng=$(find_test_bin dinonat-engine cuda)
    att=$(find_test_bin dinonat-engine cuda_attention)
    opt=$(find_test_bin dinonat-engine cuda_optim)
    ebf=$(find_test_bin dinonat-engine cuda_bf16)
    mbf=$(find_test_bin dinonat-model cuda_bf16)
    dno=$(find_test_bin dinonat-train cuda_dino)
    lop=$(find_test_bin dinonat-train cuda_train)
    net=$(find_test_bin dinonat-model network)
    trn=$(find_lib_test_bin dinonat-eval)
    nam=$(find_test_bin dinonat-kernels cuda_na_mma)
    for b in "$ops" "$eng" "$att" "$opt" "$ebf" "$mbf" "$dno" "$lop" "$net" "$trn" "$nam"; do
        [ -x "$b" ] || { echo "test binaries not found ($ops, $eng, $att, $opt, $ebf, $mbf, $dno, $lop, $net, $trn, $nam)"; exit 1; }
    done
    mkdir -p "$dest"
    cp "$ops" "$dest/ops-tests"
    cp "$eng" "$dest/engine-tests"
    cp "$att" "$dest/engine-attention-tests"
    cp "$opt" "$dest/engine-optim-tests"
    cp "$ebf" "$dest/engine-bf16-tests"
    cp "$mbf" "$dest/model-bf16-tests"
    cp "$dno" "$dest/train-dino-tests"
    cp "$lop" "$dest/train-loop-tests"
    cp "$net" "$dest/model-network-tests"
    cp "$trn" "$dest/eval-tests"
    cp "$nam" "$dest/na-mma-tests"
    for b in ops-tests engine-tests engine-attention-tests engine-optim-tests engine-bf16-tests model-bf16-tests train-dino-tests train-loop-tests model-network-tests eval-tests na-mma-tests; do
        strip "$dest/$b"
    done
    cp scripts/gpu-check-ops.sh scripts/gpu-lib.sh "$dest/"
    ls -la "$dest"
    exit 0
fi

logdir=${1:?usage: gpu-check-ops.sh <logdir>   (or --pack <bindir>)}
mkdir -p "$logdir"
bin=$(cd "$(dirname "$0")" && pwd)
t0=$(date +%s)
deadline=$((t0 + ${GPU_CHECK_BUDGET:-150}))
steps="$logdir/steps.log"
: >"$steps"

{
    date -u
    nvidia-smi
    ldconfig -p | grep -E 'libcuda\.|libnvrtc' || true
} >"$logdir/env.log" 2>&1
use_nvrtc13
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >>"$logdir/env.log"
card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n1)

run_step ops-tests 60 "$logdir/ops-tests.log" "$bin/ops-tests" --test-threads=1 --nocapture
run_step engine-tests 60 "$logdir/engine-tests.log" "$bin/engine-tests" --test-threads=1 --nocapture
run_step engine-attention-tests 40 "$logdir/engine-attention-tests.log" "$bin/engine-attention-tests" --test-threads=1 --nocapture
run_step engine-optim-tests 30 "$logdir/engine-optim-tests.log" "$bin/engine-optim-tests" --test-threads=1 --nocapture
run_step engine-bf16-tests 30 "$logdir/engine-bf16-tests.log" "$bin/engine-bf16-tests" --test-threads=1 --nocapture
run_step model-bf16-tests 30 "$logdir/model-bf16-tests.log" "$bin/model-bf16-tests" --test-threads=1 --nocapture
run_step train-dino-tests 30 "$logdir/train-dino-tests.log" "$bin/train-dino-tests" --test-threads=1 --nocapture
run_step model-network-tests 20 "$logdir/model-network-tests.log" "$bin/model-network-tests" network_to_cuda --test-threads=1 --nocapture
run_step train-loop-tests 60 "$logdir/train-loop-tests.log" "$bin/train-loop-tests" --test-threads=1 --nocapture
run_step eval-features 40 "$logdir/eval-features.log" "$bin/eval-tests" backbone_features_on_cuda_match_the_cpu --test-threads=1 --nocapture
run_step na-mma-tests 60 "$logdir/na-mma-tests.log" "$bin/na-mma-tests" --test-threads=1 --nocapture
run_step na-mma-timing 30 "$logdir/na-mma-timing.log" "$bin/na-mma-tests" --ignored mma_vs_simt_timing --nocapture

{
    echo "## gpu-check-ops: ${card:-no GPU found} ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "| step | result |"
    echo "| --- | --- |"
    sed -E 's/^([^:]+): (.*)$/| \1 | \2 |/' "$steps"
    for f in ops-tests engine-tests engine-attention-tests engine-optim-tests engine-bf16-tests model-bf16-tests train-dino-tests model-network-tests train-loop-tests eval-features na-mma-tests; do
        [ -f "$logdir/$f.log" ] || continue
        grep -E '^test result|FAILED|panicked|skipped' "$logdir/$f.log" | head -n 12 | sed "s/^/| $f | /; s/$/ |/"
    done
    echo
    echo "| kernel family (ops-tests) | cases | worst rel err | tol |"
    echo "| --- | --- | --- | --- |"
    grep -E ': rel err ' "$logdir/ops-tests.log" 2>/dev/null |
        awk '{fam=$1; if ($2 ~ /^(forward|backward)$/) fam=fam" "$2; if ($1=="layernorm") fam=$1" "$2" "$3;
              sub(/:$/, "", fam);
              for (i=1;i<=NF;i++) if ($i=="err") {e=$(i+1)+0; t=$(i+3)}; sub(/\)/, "", t);
              n[fam]++; if (e>m[fam]) m[fam]=e; tol[fam]=t}
             END {for (f in n) printf "| %s | %d | %.2e | %s |\n", f, n[f], m[f], tol[f]}' | sort
    echo
    echo "| engine on CUDA vs CPU (engine-tests) | ops | worst rel err |"
    echo "| --- | --- | --- |"
    grep -E ': (forward|grad [0-9]+) rel err ' "$logdir/engine-tests.log" 2>/dev/null |
        awk '{kind=($0 ~ /forward rel err/) ? "forward (tol 2e-5)" : "gradients (tol 1e-4)";
              for (i=1;i<=NF;i++) if ($i=="err") e=$(i+1)+0; n[kind]++; if (e>m[kind]) {m[kind]=e; w[kind]=$0}}
             END {for (k in n) printf "| %s | %d | %.2e (%s) |\n", k, n[k], m[k], substr(w[k], 1, index(w[k], ":")-1)}'
    echo
    grep -hE '^na mma .*: out |^na B8 ' "$logdir/na-mma-tests.log" "$logdir/na-mma-timing.log" 2>/dev/null | sed 's/^/    /'
} >"$logdir/table.md"
cat "$logdir/table.md"
