"""Copies of the shipped finder export whose stored tracker options re-join fragments (``meta["track"]``).

    python experiments/2026-12-07-track-rejoin/make_exports.py     # writes /tmp/finder_rejoin{10,30}.pt
"""

import torch

ck = torch.load("checkpoints/finder.pt", map_location="cpu", weights_only=False)
for gap in (10, 30):
    out = dict(ck, meta=dict(ck["meta"], track={"merge_gap_frames": gap, "merge_deg": 20.0}))
    torch.save(out, f"/tmp/finder_rejoin{gap}.pt")
    print(f"/tmp/finder_rejoin{gap}.pt", out["meta"])
