"""Split objects: how much of a source's image lies in slots other than its own, and which rule could merge them.

For every source of every scene of a simulated set, the model's slots are aligned with the references as
``deepasa evaluate`` aligns them (PIT on the reference-channel images), and the reference-channel image
SI-SDRi of the source is computed for:

* ``own``: its PIT slot alone (the number ``deepasa evaluate`` reports);
* ``oracle``: its slot plus the other slots that raise its SI-SDR, added greedily (uses the reference: an upper
  bound of any merge rule);
* ``class_doa``: its slot plus every other *present* slot (active in some frame under the model's rule) of the
  same clip class whose activity-weighted mean DoA is within 20° of its own (a rule the model can apply);
* ``doa``: the same without the class condition;
* ``soft_doa``: every other slot, present or not, whose on/off-weighted mean DoA is within 20°.

A rule helps only where it raises ``own`` on single sources without lowering it where two sources share the
scene. Means by the number of sources in the scene, one JSON object on stdout; ``merged`` counts the slots a
rule adds per source.

    python experiments/2026-12-06-split-objects/split_objects.py MODEL DATA [--split val]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from deepasa.data.scenes import SceneDataset
from deepasa.errors import run_script
from deepasa.losses import pit_sa_sdr
from deepasa.metrics.seld_frame import activity_decisions
from deepasa.metrics.separation import si_sdr

# the command line of experiments/2026-12-03-dup-slots/dup_slots.py (MODEL DATA [--split val]), shared
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "2026-12-03-dup-slots"))
from dup_slots import model_set_main  # noqa: E402

MERGE_DEG = 20.0


def _unit(v: np.ndarray) -> np.ndarray:
    """(J, 3) vectors -> (J, 3) unit vectors (a zero vector stays zero)."""
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _oracle_sum(img: np.ndarray, own: int, target: np.ndarray) -> float:
    """Greedy: add to slot ``own`` of ``img`` (J, N) any slot that raises SI-SDR with ``target`` (N,); -> dB."""
    cur, best = img[own].copy(), float(si_sdr(img[own], target))
    grown = True
    while grown:
        grown = False
        for k in range(len(img)):
            value = float(si_sdr(cur + img[k], target)) if k != own else -np.inf
            if value > best + 1e-6:
                cur, best, grown = cur + img[k], value, True
    return best


def split_rows(model, ds: SceneDataset) -> list[dict]:
    """One row per reference source of ``ds``: its scene's source count and the SI-SDRi (dB) of every rule."""
    cfg = model.config
    ref = cfg.ref_mic
    cos_max = np.cos(np.radians(MERGE_DEG))
    rows = []
    for i in range(len(ds)):
        item = ds[i]
        with torch.no_grad():
            out = model(item["mixture"].unsqueeze(0))                         # one clip: (1, M, N)
        tgt = (item["direct"] + item["reverb"])[:, ref].numpy()                # (J_ref, N)
        img = out.image[0, :, ref].numpy()                                     # (J, N)
        _, perm = pit_sa_sdr(out.image[:, :, ref].float(), torch.from_numpy(tgt)[None].float())  # (1, J)
        act = activity_decisions(out.onoff[0], out.doa[0], cfg.detect_doa_norm, cfg.detect_onoff)  # (J, T')
        present = act.any(-1)                                                  # (J,)
        cls = out.cls_logits[0].argmax(-1).numpy()                             # (J,)
        doa = out.doa[0].numpy()                                               # (J, T', 3)
        hard = _unit((doa * act[..., None]).sum(1))                            # (J, 3) mean over active frames
        soft = _unit((doa * torch.sigmoid(out.onoff[0]).numpy()[..., None]).sum(1))  # (J, 3) on/off-weighted
        mix = item["mixture"][ref].numpy()                                     # (N,)
        n_src = int((np.abs(tgt).max(-1) > 0).sum())
        for j in range(n_src):
            s = int(perm[0, j])
            base = float(si_sdr(mix, tgt[j]))
            others = np.arange(len(img)) != s                                  # (J,)
            near = others & present & present[s] & (hard @ hard[s] > cos_max)  # (J,) present, within the angle
            groups = {"class_doa": near & (cls == cls[s]), "doa": near, "soft_doa": others & (soft @ soft[s] > cos_max)}
            row = {"sources": n_src, "own": float(si_sdr(img[s], tgt[j])) - base,
                   "oracle": _oracle_sum(img, s, tgt[j]) - base}
            for name, g in groups.items():
                row[name] = float(si_sdr(img[s] + img[g].sum(0), tgt[j])) - base
                row[f"{name}_merged"] = int(g.sum())
            rows.append(row)
    return rows


def tally(model, ds: SceneDataset) -> dict:
    """Means of :func:`split_rows` by the number of sources in the scene: ``{"by_sources": {n: {...}}}``."""
    rows = split_rows(model, ds)
    by = {}
    for n in sorted({r["sources"] for r in rows}):
        group = [r for r in rows if r["sources"] == n]
        by[str(n)] = {"n": len(group)} | {
            k: round(float(np.mean([r[k] for r in group])), 2) for k in group[0] if k != "sources"}
    return {"merge_deg": MERGE_DEG, "by_sources": by}


def main() -> int:
    return model_set_main(__doc__, tally)


if __name__ == "__main__":
    run_script(main)
