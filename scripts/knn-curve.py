#!/usr/bin/env python3
"""The k-NN curve of a `dinonat train` run split into segments (--resume), as one PNG (needs matplotlib):

    python3 scripts/knn-curve.py OUT.png RUN_DIR SEGMENT_LOG [SEGMENT_LOG ...] [--rate IMG_PER_S] [--pixels P]
                                 [--random R] [--point STEP=TOP1 ...]

The points are the `step N: k-NN top-1 X%` lines and the final table's teacher line of each segment's stdout; the
batch comes from RUN_DIR/config.json. The x axis is images seen; the top axis is minutes at --rate (the machine's
undisturbed `bench train-step` rate), since the wall time of a segment that shared the machine overstates the
recipe's cost. --pixels / --random draw the controls as horizontal lines."""
import argparse, json, os, re

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("run")
p.add_argument("logs", nargs="+")
p.add_argument("--rate", type=float, default=None)
p.add_argument("--pixels", type=float, default=None)
p.add_argument("--random", type=float, default=None)
p.add_argument("--point", action="append", default=[], metavar="STEP=TOP1",
               help="a point measured apart (e.g. `dinonat knn --checkpoint` of a segment that ran without its k-NN)")
a = p.parse_args()

config = json.load(open(os.path.join(a.run, "config.json")))
batch, steps = config["batch_size"], config["steps"]
points = {0: a.random} if a.random is not None else {}
for log in a.logs:
    text = open(log).read()
    for m in re.finditer(r"^step (\d+): k-NN top-1 ([\d.]+)%", text, re.M):
        points[int(m.group(1))] = float(m.group(2))
    # the table at a segment's end: "| teacher (step N) | X |" or the stop line
    for m in re.finditer(r"^\| (?:trained|teacher)[^|]*?step (\d+)[^|]*\| ([\d.]+)", text, re.M):
        points[int(m.group(1))] = float(m.group(2))

for pt in a.point:
    step, value = pt.split("=")
    points[int(step)] = float(value)

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

xs = sorted(points)
fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
ax.plot([s * batch for s in xs], [points[s] for s in xs], "o-", label=f"teacher ({config['arch']})")
for value, name, style in ((a.pixels, "raw pixels", "--"), (a.random, "random init", ":")):
    if value is not None:
        ax.axhline(value, linestyle=style, color="gray", label=f"{name} {value:.2f}")
ax.set_xlabel("images seen")
ax.set_ylabel("k-NN top-1 % (val)")
ax.set_xlim(0, steps * batch)
ax.grid(alpha=0.3)
ax.legend(loc="lower right", fontsize=8)
if a.rate:
    top = ax.secondary_xaxis("top", functions=(lambda x: x / a.rate / 60, lambda m: m * a.rate * 60))
    top.set_xlabel(f"minutes at {a.rate:g} img/s")
fig.tight_layout()
fig.savefig(a.out)
print(a.out, {s: points[s] for s in xs})
