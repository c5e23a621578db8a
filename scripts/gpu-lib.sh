# Shared by the GPU check scripts (sourced; each pack copies it beside its script).

# On the GPU host a GPU test that skips (no device, no NVRTC) fails instead of passing vacuously
# (kernels::cuda::skip_gpu_test); packing here runs no tests.
export DINONAT_REQUIRE_GPU=1

# find_test_bin PACKAGE TARGET [FEATURES] [KIND]: the path of a release test binary cargo builds (here,
# with Rust); KIND is "test" (tests/TARGET.rs, the default) or "bench" (benches/TARGET.rs of PACKAGE).
find_test_bin() {
    cargo test -p "$1" --release --"${4:-test}" "$2" ${3:+--features "$3"} --no-run --message-format=json 2>/dev/null |
        python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]==sys.argv[1]: print(m["executable"])' "$2" |
        tail -n1
}

# find_lib_test_bin PACKAGE: the path of the release unit-test binary of PACKAGE's library.
find_lib_test_bin() {
    cargo test -p "$1" --release --lib --no-run --message-format=json 2>/dev/null |
        python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["profile"]["test"] and "lib" in m["target"]["kind"]: print(m["executable"])' |
        tail -n1
}

# use_nvrtc13 (on the GPU host): puts a folder holding libnvrtc.so.13 on LD_LIBRARY_PATH when the
# loader does not already know it (CUDA toolkit folders, then the pip `nvidia` wheels).
use_nvrtc13() {
    ldconfig -p | grep -q 'libnvrtc\.so\.13' && return 0
    local nv lib
    nv=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)
    lib=$( (ls -d /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 2>/dev/null
        [ -n "$nv" ] && find "$nv/nvidia" -maxdepth 3 -name 'libnvrtc.so.13' -printf '%h\n' 2>/dev/null) |
        while read -r d; do [ -e "$d/libnvrtc.so.13" ] && echo "$d" && break; done)
    [ -n "$lib" ] && export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    return 0
}

# use_nccl LINKDIR (on the GPU host): makes libnccl loadable under a name cudarc tries. Distributions and
# the pip wheel nvidia-nccl-cu13 ship libnccl.so.2 alone; cudarc looks for libnccl.so (and
# libnccl.so.<CUDA major>), so a link LINKDIR/libnccl.so -> libnccl.so.2 goes on LD_LIBRARY_PATH.
# Prints where NCCL was found; returns 1 when there is none. Call it directly, not in $(...), or the
# export is lost.
use_nccl() {
    local dir=$1 so nv
    if ldconfig -p | grep -q 'libnccl\.so '; then
        ldconfig -p | grep 'libnccl\.so ' | head -n1
        return 0
    fi
    so=$(ldconfig -p | awk '/libnccl\.so\.2 /{print $NF; exit}')
    if [ -z "$so" ]; then
        nv=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)
        [ -n "$nv" ] && so=$(find "$nv/nvidia" -maxdepth 3 -name 'libnccl.so.2' 2>/dev/null | head -n1)
    fi
    [ -n "$so" ] || return 1
    mkdir -p "$dir" && ln -sf "$so" "$dir/libnccl.so" || return 1
    export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "$so (linked as $dir/libnccl.so)"
}

# run_step NAME CAP_SECONDS OUTFILE CMD...: runs CMD under `timeout` (CAP, cut to what is left of the
# caller's $deadline), stdout+stderr to OUTFILE, its status appended to the caller's $steps file.
run_step() {
    local name=$1 cap=$2 out=$3
    shift 3
    local left=$((deadline - $(date +%s)))
    if [ "$left" -lt 5 ]; then
        echo "$name: not run (time budget spent)" | tee -a "$steps"
        return 99
    fi
    [ "$cap" -gt "$left" ] && cap=$left
    local s=$(date +%s)
    timeout -k 5 "$cap" "$@" >"$out" 2>&1
    local rc=$?
    echo "$name: rc=$rc in $(($(date +%s) - s)) s (cap $cap s)$([ $rc = 124 ] && echo ' TIMED OUT')" | tee -a "$steps"
    return $rc
}
