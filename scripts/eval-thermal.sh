#!/usr/bin/env bash
# The cross-modal numbers of one network (docs/notebook/2026-11-27-roadscene-crossmodal.md records a run):
# RoadScene IR<->RGB retrieval (pooled features and layout) and attention IoU, thermset-mini k-NN, thermset-mini
# background-vs-people separation with filter --keep-like / --reject-like (10 background and 12 people exemplars,
# spread over the train split's files), and the share of attention inside the thermal-dogs-people boxes. Needs
# ../shared/data (skips a set that is missing) and a built dinonat.
#
#   scripts/eval-thermal.sh OUT_DIR SIZE WEIGHT_FLAGS...
#   e.g. scripts/eval-thermal.sh runs/eval-trained 64 --checkpoint runs/imagenette/checkpoint.safetensors
#        scripts/eval-thermal.sh runs/eval-random 64 --random-init --arch nat_nano
# Prints one table; every command's JSON is kept under OUT_DIR.
set -euo pipefail
out=${1:?OUT_DIR}; size=${2:?SIZE}; shift 2
weights=("$@")
root=$(cd "$(dirname "$0")/.." && pwd)
data=${DINONAT_DATA:-$root/../shared/data}
bin=${DINONAT_BIN:-$root/target/release/dinonat}
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
mkdir -p "$out"
row() { printf '%-44s %s\n' "$1" "$2"; }
json() { python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(" ".join("%.3f" % d[k] for k in sys.argv[2:]))' "$@"; }

if [ -d "$data/roadscene/rgb" ]; then
  "$bin" crossmodal --rgb "$data/roadscene/rgb" --ir "$data/roadscene/ir" --size "$size" --figure "$out/roadscene.png" \
    --json "${weights[@]}" > "$out/roadscene.json" 2> "$out/roadscene.log"
  row "RoadScene IR->RGB / RGB->IR top-1 (%)" "$(json "$out/roadscene.json" retrieval_top1_ir_to_rgb retrieval_top1_rgb_to_ir)"
  row "RoadScene MedR IR->RGB / RGB->IR / chance" \
    "$(json "$out/roadscene.json" retrieval_median_rank_ir_to_rgb retrieval_median_rank_rgb_to_ir chance_median_rank)"
  row "RoadScene layout IR->RGB / RGB->IR top-1 (%)" \
    "$(json "$out/roadscene.json" layout_retrieval_top1_ir_to_rgb layout_retrieval_top1_rgb_to_ir)"
  row "RoadScene layout MedR IR->RGB / RGB->IR" \
    "$(json "$out/roadscene.json" layout_retrieval_median_rank_ir_to_rgb layout_retrieval_median_rank_rgb_to_ir)"
  row "RoadScene attention IoU / shifted pairs" "$(json "$out/roadscene.json" attention_iou attention_iou_shifted)"
else echo "skip RoadScene: $data/roadscene missing"; fi

ts=$data/thermset-mini
if [ -d "$ts/train" ]; then
  "$bin" knn --train "$ts/train" --val "$ts/val" --size "$size" --json "${weights[@]}" > "$out/thermset_knn.json" 2> "$out/thermset_knn.log"
  row "thermset-mini k-NN top-1 / top-5 (%)" "$(json "$out/thermset_knn.json" top1 top5)"
  rm -rf "$out/keep" "$out/reject" "$out/thermset_filter"; mkdir -p "$out/keep" "$out/reject"
  # Exemplars spread evenly over each sorted train class (file i of n for i = (k + 1/2) n / count): the split
  # holds frames of several cameras, and the first files of a class all come from one of them.
  spread() {
    ls "$1" | sort | awk -v k="$2" '{ f[NR] = $0 } END { for (i = 0; i < k; i++) print f[int((i + 0.5) * NR / k) + 1] }'
  }
  spread "$ts/train/background" 10 | while read -r f; do ln -sf "$ts/train/background/$f" "$out/keep/$f"; done
  for c in people standing sitting lying; do
    spread "$ts/train/$c" 3 | while read -r f; do ln -sf "$ts/train/$c/$f" "$out/reject/$c-$f"; done
  done
  "$bin" filter --images "$ts/val" --out "$out/thermset_filter" --size "$size" --clusters 5 \
    --keep-like "$out/keep" --reject-like "$out/reject" "${weights[@]}" > "$out/thermset_filter.log" 2>&1
  python3 - "$out/thermset_filter/report.csv" > "$out/thermset_keep_like.txt" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
bg = [r["exemplar_similarity"] != "" for r in rows]
truth = ["/background/" in r["path"] for r in rows]
tp = sum(b and t for b, t in zip(bg, truth)); kept = sum(bg); pos = sum(truth)
p = 100.0 * tp / kept if kept else 0.0
r = 100.0 * tp / pos if pos else 0.0
print(f"{p:.1f} {r:.1f} (kept {kept}, background {pos}, of {len(rows)})")
PY
  row "thermset-mini keep-like background P / R (%)" "$(cat "$out/thermset_keep_like.txt")"
else echo "skip thermset-mini: $ts missing"; fi

td=$data/thermal-dogs-people
if [ -d "$td/train" ]; then
  for split in train valid test; do
    "$bin" boxes --images "$td/$split/images" --labels "$td/$split/labels" --size "$size" --json "${weights[@]}" \
      > "$out/boxes_$split.json" 2> "$out/boxes_$split.log"
  done
  python3 - "$out" <<'PY'
import json, sys
for split in ["train", "valid", "test"]:
    d = json.loads(open(f"{sys.argv[1]}/boxes_{split}.json").read().strip().splitlines()[-1])
    parts = [d["all"]] + d["classes"]
    cells = ", ".join(f"{c['name']} {100 * c['share_masked']:.1f} / {100 * c['chance']:.1f}" for c in parts)
    print(f"{'boxes ' + split + ' thresholded share / chance (%)':44s} {cells}")
PY
else echo "skip thermal-dogs-people: $td missing"; fi
