#!/usr/bin/env bash
# Crash-and-resume check of `dinonat train` (docs/training.md, "Crash and resume"): starts a tiny
# training run on the built-in data with a checkpoint every 2 steps, kills it with SIGKILL at
# KILLS (default 20) random moments, resumes each time, and after every kill checks that the
# checkpoint on disk loads completely (`dinonat train --check-checkpoint`) and that its step never
# moves backwards. Ends with a resume that must finish further steps, then checks that no temporary
# file is left and that log.csv holds each step once. Exits non-zero on a violation.
# Not part of CI: takes a minute or two.
#
#   scripts/crash-resume.sh                 # builds target/release/dinonat if missing
#   KILLS=50 DINONAT=path/to/dinonat scripts/crash-resume.sh
set -u
cd "$(dirname "$0")/.."
BIN=${DINONAT:-target/release/dinonat}
KILLS=${KILLS:-20}
if [ ! -x "$BIN" ]; then
    cargo build --release || exit 2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dinonat-crash-resume.XXXXXX")
RUN="$WORK/run"
CK="$RUN/checkpoint.safetensors"
# nat_pico, K 64, head 64-64-32, 2 x 32 + 2 x 16 crops, batch 8: tens of steps per second
TINY=(--arch nat_pico --out-dim 64 --head-hidden 64 --head-bottleneck 32 --crops tiny --local-crops 2
      --batch-size 8 --procedural-len 256 --steps 100000 --checkpoint-every 2 --log-every 1000000
      --no-eval --out "$RUN")

violations=0
prev=-1
loads=0
fail() { echo "VIOLATION: $*"; violations=$((violations + 1)); }

check() {
    local out step
    if [ ! -e "$CK" ]; then
        if [ "$prev" -ge 0 ]; then fail "the checkpoint disappeared after step $prev"; fi
        return
    fi
    if ! out=$("$BIN" train --check-checkpoint "$CK" 2>&1); then
        fail "checkpoint does not load: $out"
        return
    fi
    loads=$((loads + 1))
    step=$(sed -n 's/.*: step \([0-9]*\) of.*/\1/p' <<<"$out")
    if [ -z "$step" ]; then fail "no step in: $out"; return; fi
    if [ "$step" -lt "$prev" ]; then fail "step went back from $prev to $step"; fi
    echo "  checkpoint loads, step $step"
    prev=$step
}

for i in $(seq 1 "$KILLS"); do
    if [ -e "$CK" ]; then
        "$BIN" train --resume "$CK" --no-eval >"$WORK/out.$i" 2>&1 &
    else
        "$BIN" train "${TINY[@]}" >"$WORK/out.$i" 2>&1 &
    fi
    pid=$!
    # a random moment between 0.3 and 3.3 s (start-up, mid-step, mid-checkpoint write)
    sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", 0.3 + 3.0 * r / 32767 }')"
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
        wait "$pid" 2>/dev/null
        echo "kill $i: SIGKILL"
    else
        wait "$pid"
        fail "run $i ended by itself (rc $?): $(tail -2 "$WORK/out.$i")"
    fi
    check
done

# a last resume must continue from the checkpoint and finish more steps
if [ -e "$CK" ]; then
    target=$((prev + 10))
    if "$BIN" train --resume "$CK" --no-eval --stop-at "$target" >"$WORK/out.final" 2>&1; then
        check
        if [ "$prev" -ne "$target" ]; then fail "final resume stopped at step $prev, not $target"; fi
    else
        fail "final resume failed: $(tail -2 "$WORK/out.final")"
    fi
else
    fail "no checkpoint after $KILLS runs"
fi
stray=$(find "$RUN" -name '*.tmp*' | wc -l)
if [ "$stray" -ne 0 ]; then fail "$stray temporary files left: $(find "$RUN" -name '*.tmp*')"; fi
# every step once in log.csv: the rows of steps replayed after a kill were dropped on resume
dups=$(tail -n +2 "$RUN/log.csv" | cut -d, -f1 | sort | uniq -d | wc -l)
if [ "$dups" -ne 0 ]; then fail "$dups steps appear more than once in log.csv"; fi

echo "crash-resume: $KILLS SIGKILLs, $loads checkpoint loads, final step $prev, $stray stray temporary files, $dups duplicate log rows, $violations violations (work dir $WORK)"
if [ "$violations" -ne 0 ]; then exit 1; fi
rm -rf "$WORK"
