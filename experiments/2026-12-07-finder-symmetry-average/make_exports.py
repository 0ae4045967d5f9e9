"""Copies of the shipped finder export that average their maps over array rotations (``meta["symmetries"]``).

    python experiments/2026-12-07-finder-symmetry-average/make_exports.py   # writes /tmp/finder_sym*.pt
"""

import torch

ck = torch.load("checkpoints/finder.pt", map_location="cpu", weights_only=False)
for name, n, thr in (("sym4", 4, 0.2), ("sym12", 12, 0.2), ("sym12t15", 12, 0.15), ("sym12t10", 12, 0.1)):
    out = dict(ck, meta=dict(ck["meta"], symmetries=n, threshold=thr))
    torch.save(out, f"/tmp/finder_{name}.pt")
    print(f"/tmp/finder_{name}.pt", out["meta"])
