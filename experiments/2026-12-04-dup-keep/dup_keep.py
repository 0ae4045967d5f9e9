"""Which slot of a duplicate pair is the true one: the precedence score for the duplicate merge.

For every frame of every scene of a simulated set, every pair of slots active under the model's rule (without
the merge) with the same clip class and DoAs within 20° is a *duplicate pair*. The slots are aligned with the
references as ``deepasa evaluate`` aligns them (PIT on the reference-channel images); a pair counts when exactly
one of its slots is assigned to a source active in that frame (the *true* slot). For each candidate score the
fraction of those pairs in which the true slot has the higher score is printed as one JSON line:

* ``onoff``: the frame's on/off logit (``merge_duplicates``' order);
* ``frames``: the slot's number of active frames in the clip;
* ``energy``: the energy of the slot's reference-channel image in that frame;
* ``doa_norm``: the frame's ‖doa‖;
* ``confidence``: the clip class posterior's maximum.

    python experiments/2026-12-04-dup-keep/dup_keep.py MODEL DATA [--split val]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from deepasa.data.scenes import SceneDataset
from deepasa.errors import run_script
from deepasa.losses import pit_sa_sdr
from deepasa.metrics.seld_frame import activity_decisions, angular_error_deg

# the command line of experiments/2026-12-03-dup-slots/dup_slots.py (MODEL DATA [--split val]), shared
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "2026-12-03-dup-slots"))
from dup_slots import model_set_main  # noqa: E402

MERGE_DEG = 20.0
SCORES = ("onoff", "frames", "energy", "doa_norm", "confidence")


def tally(model, ds: SceneDataset) -> dict:
    """Pair counts over ``ds`` (see the module docstring); each item's mixture is (M, N), activity (J, T)."""
    cfg = model.config
    wins = dict.fromkeys(SCORES, 0)
    pairs = pairs_no_true = pairs_both_true = 0
    for i in range(len(ds)):
        item = ds[i]
        with torch.no_grad():
            out = model(item["mixture"].unsqueeze(0))  # one clip: (1, M, N)
        ref = cfg.ref_mic
        _, perm = pit_sa_sdr(out.image[:, :, ref].float(), (item["direct"] + item["reverb"])[None, :, ref].float())  # (1, J)
        slot_of = perm[0].numpy()                                  # reference j <- estimated slot slot_of[j]
        act = activity_decisions(out.onoff[0], out.doa[0], cfg.detect_doa_norm, cfg.detect_onoff)  # (J, T')
        t_max = min(act.shape[1], item["activity"].shape[1])
        act = act[:, :t_max]                                       # (J, T)
        ref_act = item["activity"].numpy()[:, :t_max] > 0.5        # (J_ref, T)
        cls = out.cls_logits[0].argmax(-1).numpy()                 # (J,)
        d = out.doa[0, :, :t_max].numpy()                          # (J, T, 3)
        angle = angular_error_deg(d[:, None], d[None])            # (J, J, T)
        ls = cfg.label_samples
        img = out.image[0, :, ref].numpy()                         # (J, N)
        n_img = t_max * ls
        img = np.pad(img, ((0, 0), (0, max(0, n_img - img.shape[1]))))[:, :n_img]  # (J, T·ls)
        score = {"onoff": out.onoff[0, :, :t_max].numpy(),
                 "frames": np.repeat(act.sum(-1, keepdims=True), t_max, -1).astype(float),
                 "energy": (img.reshape(img.shape[0], t_max, ls) ** 2).sum(-1),   # (J, T)
                 "doa_norm": np.linalg.norm(d, axis=-1),
                 "confidence": np.repeat(torch.softmax(out.cls_logits[0], -1).max(-1).values.numpy()[:, None],
                                         t_max, -1)}
        true_at = np.zeros_like(act)                               # (J, T): slot assigned to a source active at t
        for j, s in enumerate(slot_of):
            if j < ref_act.shape[0]:
                true_at[s] |= ref_act[j]
        for t in range(t_max):
            on = np.flatnonzero(act[:, t])
            for a_i, a in enumerate(on):
                for b in on[a_i + 1:]:
                    if cls[a] != cls[b] or angle[a, b, t] >= MERGE_DEG:
                        continue
                    ta, tb = bool(true_at[a, t]), bool(true_at[b, t])
                    if ta == tb:
                        pairs_both_true += int(ta)
                        pairs_no_true += int(not ta)
                        continue
                    pairs += 1
                    true, dup = (a, b) if ta else (b, a)
                    for k in SCORES:
                        wins[k] += int(score[k][true, t] > score[k][dup, t])
    return {"pairs_one_true": pairs, "pairs_both_true": pairs_both_true, "pairs_none_true": pairs_no_true,
            "true_slot_higher": {k: round(v / max(pairs, 1), 3) for k, v in wins.items()}}


def main() -> int:
    return model_set_main(__doc__, tally)


if __name__ == "__main__":
    run_script(main)
