"""Who are the sources the finder misses? Level, nearest concurrent source, solo share, duration.

    python experiments/2026-12-07-second-pass/missed.py   (20 tuning scenes, 2-5 sources; prints found vs missed)

A source is missed when no object of the shipped finder is assigned to it (absorbers/repair.py assign()).
"""
import sys, numpy as np
sys.path.insert(0, "benchmarks"); sys.path.insert(0, "experiments/2026-12-07-finder-threshold"); sys.path.insert(0, "experiments/2026-12-07-absorbers")
from tune import scenes_of
from repair import assign
from deepasa.model.finder import Finder, find_objects
f = Finder.from_pretrained("checkpoints/finder.pt")
rows = []
for sc in scenes_of("2-5", 20):
    tr = find_objects(sc.mixture, f)
    owner = assign(sc.activity, sc.doa, tr.activity, tr.doa)
    u = sc.doa / np.maximum(np.linalg.norm(sc.doa, axis=-1, keepdims=True), 1e-9)
    ref = sc.direct + sc.reverb
    lvl = 10*np.log10((ref[:, 0]**2).sum(-1) / (sc.mixture[0]**2).sum())
    k = len(sc.activity)
    for i in range(k):
        # nearest concurrently active other source: min angle over frames where both active
        best = 180.0; overlap = 0.0
        for j in range(k):
            if j == i: continue
            both = sc.activity[i] & sc.activity[j]
            if both.any():
                ang = np.degrees(np.arccos(np.clip((u[i][both]*u[j][both]).sum(-1), -1, 1))).min()
                best = min(best, ang)
            overlap = max(overlap, both.sum()/max(sc.activity[i].sum(),1))
        solo = (sc.activity[i] & ~np.delete(sc.activity, i, 0).any(0)).sum()/max(sc.activity[i].sum(),1)
        rows.append((i in owner, lvl[i], best, solo, sc.activity[i].sum()*0.1, k))
r = np.array(rows, dtype=float)
for name, m in (("found", r[:,0]==1), ("missed", r[:,0]==0)):
    x = r[m]
    print(name, len(x), "level med %.1f" % np.median(x[:,1]), "nearest concurrent deg med %.0f" % np.median(x[:,2]),
          "<25deg: %d" % (x[:,2]<25).sum(), "solo share med %.2f" % np.median(x[:,3]), "active s med %.1f" % np.median(x[:,4]),
          "k mean %.1f" % x[:,5].mean())
print("missed rows (level, nearest, solo, active, k):")
for x in r[r[:,0]==0]: print("  %.1f dB  %.0f deg  solo %.2f  %.1f s  k=%d" % tuple(x[1:]))
