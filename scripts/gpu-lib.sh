# Shared by the GPU check scripts (sourced; each pack copies it beside its script).

# On the GPU host a GPU test that skips (no device, no NVRTC) fails instead of passing vacuously
# (kernels::cuda::skip_gpu_test); packing here runs no tests.
export DINONAT_REQUIRE_GPU=1

# find_test_bin PACKAGE TARGET [FEATURES]: the path of a release test binary cargo builds (here,
# with Rust), with FEATURES (e.g. gemm-dev) enabled.
find_test_bin() {
    cargo test -p "$1" --release ${3:+--features "$3"} --test "$2" --no-run --message-format=json 2>/dev/null |
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
