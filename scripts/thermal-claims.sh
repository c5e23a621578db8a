#!/usr/bin/env bash
# Issue 22's thermal claims for one backbone at one size, each beside its controls, as JSON files in OUT:
#   bash scripts/thermal-claims.sh OUT SIZE BACKBONE_FLAGS...
#   e.g. bash scripts/thermal-claims.sh runs/claims/rgb-64 64 --checkpoint runs/imagenette/checkpoint.safetensors
#        bash scripts/thermal-claims.sh runs/claims/random-64 64 --random-init --arch nat_nano --seed 0
# Data from ../shared/data (DATA=... to change). What it runs (docs/curation.md, "The thermal claims"):
#   knn.json          thermset-mini k-NN (train bank, val queries): top-1 / balanced, majority class, uniform
#   knn-pixels.json   the same on raw pixels
#   duplicates.json   near-duplicate frames of one clip (thresholds on train, scored on val) vs pixels and dhash
#   exemplars.json    val's background frames retrieved by filter's two-sided rule, train's background frames
#                     as keep-exemplars and its frames with people as reject-exemplars, vs pixels
#   boxes-choice.tsv  attention-in-boxes share on thermal-dogs-people train + valid for levels 0-3 x masses
#                     0.4 / 0.6 / 0.8 (the choice: the highest network share there)
#   boxes-test.json   the chosen level and mass on the test split, with the centre / square / intensity /
#                     uniform priors
#   crossmodal.json   RoadScene IR <-> RGB retrieval (pooled and layout) vs the non-learned descriptors
# No evaluation image (thermset-mini val, thermal-dogs-people valid/test, RoadScene) chooses anything but the
# boxes' level and mass, which train + valid choose and test reports; the exemplars' threshold is chosen on the
# exemplars themselves (each without its own clip's).
set -euo pipefail
out=$1; size=$2; shift 2
data=${DATA:-$(dirname "$0")/../../shared/data}
bin=${DINONAT:-$(dirname "$0")/../target/release/dinonat}
mkdir -p "$out"
T=$data/thermset-mini; D=$data/thermal-dogs-people; R=$data/roadscene
"$bin" knn "$@" --train "$T/train" --val "$T/val" --size "$size" --json > "$out/knn.json"
"$bin" knn --pixels --train "$T/train" --val "$T/val" --size "$size" --json > "$out/knn-pixels.json"
"$bin" duplicates "$@" --tune "$T/train" --eval "$T/val" --size "$size" --json > "$out/duplicates.json"
people=$out/train-with-people    # the reject-exemplars: every train frame outside background/, as links
rm -rf "$people"; mkdir -p "$people"
for c in "$T"/train/*/; do
  [ "$(basename "$c")" = background ] && continue
  for f in "$c"*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$people/$(basename "$f")"; done
done
"$bin" exemplars "$@" --keep-like "$T/train/background" --reject-like "$people" --images "$T/val" \
  --positive background --size "$size" --json > "$out/exemplars.json"
: > "$out/boxes-choice.tsv"
for level in 0 1 2 3; do
  for mass in 0.4 0.6 0.8; do
    share=0; n=0
    for split in train valid; do
      s=$("$bin" boxes "$@" --images "$D/$split/images" --labels "$D/$split/labels" --size "$size" \
            --level "$level" --mass "$mass" --json 2>/dev/null | python3 -c \
            'import json,sys; a=json.load(sys.stdin)["all"]; print(a["share_masked"], a["images"])' ) || continue
      share=$(python3 -c "a,b='$s'.split(); print($share + float(a) * int(b))"); n=$((n + ${s#* }))
    done
    [ "$n" -gt 0 ] && printf '%s\t%s\t%s\n' "$level" "$mass" "$(python3 -c "print($share / $n)")" >> "$out/boxes-choice.tsv"
  done
done
read -r level mass _ < <(sort -t$'\t' -k3,3gr "$out/boxes-choice.tsv" | head -1)
"$bin" boxes "$@" --images "$D/test/images" --labels "$D/test/labels" --size "$size" --level "$level" \
  --mass "$mass" --json > "$out/boxes-test.json"
"$bin" crossmodal "$@" --rgb "$R/rgb" --ir "$R/ir" --size "$size" --batch 16 --json > "$out/crossmodal.json"
echo "thermal claims in $out (boxes: level $level, mass $mass chosen on train + valid)"
