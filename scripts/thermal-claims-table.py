#!/usr/bin/env python3
"""One markdown table of issue 22's thermal claims from folders written by scripts/thermal-claims.sh:
`python3 scripts/thermal-claims-table.py NAME=DIR [NAME=DIR ...]` (NAME labels the network, e.g. rgb-64).
Each row: a claim's metric for the network beside the control it has to beat (docs/curation.md)."""
import json, os, sys


def load(d, f):
    with open(os.path.join(d, f)) as fh:
        return json.load(fh)


def rows(name, d):
    k, px, dup = load(d, "knn.json"), load(d, "knn-pixels.json"), load(d, "duplicates.json")
    b, x = load(d, "boxes-test.json"), load(d, "crossmodal.json")
    ci = k["intervals"]
    yield (name, "thermset k-NN top-1 %", f"{k['top1']:.2f} [{ci['top1'][0]:.1f}, {ci['top1'][1]:.1f}]",
           f"majority {k['majority']:.2f}, pixels {px['top1']:.2f}, uniform {100 / k['classes']:.0f}")
    yield (name, "thermset k-NN balanced %",
           f"{k['balanced_accuracy']:.2f} [{ci['balanced_accuracy'][0]:.1f}, {ci['balanced_accuracy'][1]:.1f}]",
           f"pixels {px['balanced_accuracy']:.2f}, uniform {100 / k['classes']:.0f}")
    s = {r["method"]: r for r in dup["scores"]}
    net = s["network"]
    yield (name, "near-duplicates P / R / AP", f"{100 * net['precision']:.1f} / {100 * net['recall']:.1f} / "
           f"{net['average_precision']:.3f}",
           "; ".join(f"{m} {100 * s[m]['precision']:.1f} / {100 * s[m]['recall']:.1f} / {s[m]['average_precision']:.3f}"
                     for m in ("pixels", "dhash")) + f"; base rate {100 * dup['base_rate']:.2f}")
    ex = {r["features"]: r for r in load(d, "exemplars.json")["scores"]}
    e = lambda r: (f"AP {r['average_precision']:.3f}, rule {100 * r['rule_precision']:.1f} / {100 * r['rule_recall']:.1f}, "
                   f"chosen {100 * r['precision']:.1f} / {100 * r['recall']:.1f}")
    base = load(d, "exemplars.json")["base_rate"]
    yield (name, "background retrieval (P / R %)", e(ex["network"]), f"pixels {e(ex['pixels'])}; base rate {100 * base:.2f}")
    sc = {r["map"]: r for r in b["all"]["scores"]}
    fmt = lambda r: f"{100 * r['share_masked']:.1f} [{100 * r['interval']['low']:.1f}, {100 * r['interval']['high']:.1f}]"
    yield (name, f"boxes share % (test, level {b['level']}, mass {b['mass']})", fmt(sc["network"]),
           ", ".join(f"{m} {fmt(sc[m])}" for m in ("centre_gaussian", "central_square", "intensity", "uniform")))
    r = {e["features"]: e for e in x["retrieval"]}
    t = lambda e: f"{e['top1_ir_to_rgb']:.1f} / {e['top1_rgb_to_ir']:.1f}"
    yield (name, "RoadScene top-1 % IR->RGB / RGB->IR", f"pooled {t(r['network_pooled'])}, layout {t(r['network_layout'])}",
           f"luminance {t(r['luminance'])}, gradient {t(r['gradient'])}, chance {x['chance_top1']:.2f}")


print("| network | claim | network's value | controls |")
print("|---|---|---|---|")
for arg in sys.argv[1:]:
    name, d = arg.split("=", 1)
    for row in rows(name, d):
        print("| " + " | ".join(row) + " |")
