"""Re-initialise chosen object slots of the splitter in a ``deepasa train`` checkpoint (slot revival).

Why: the shipped run spent its first 12,000 scenes on one source per scene (the curriculum's stages 1–2 are
1 source, then 1–2), and its splitter came out of them with one strong object slot and four weak ones:
at step 3,255 the per-slot norms of ``splitter.conv.weight`` were 1.13 / 1.25 / 0.90 / 1.28 / 3.53 against
2.31 at PyTorch's default initialisation, and the on/off output of slots 0–3 was the same constant (0.35) on
every two-source scene (experiments/2026-12-03-slot-probe/slot_probe.py). This module draws the weak slots'
convolution weights afresh (PyTorch's default Conv2d initialisation, seeded) and leaves every other parameter as
it was.

The splitter's ``GroupNorm(1, K·D)`` normalises all slots jointly, so new weights in some slots change the
mean and the standard deviation that the kept slots are normalised by. The kept slots' affine parameters are
corrected so that their features are unchanged on average over the given mixtures: with the old statistics
(μ, σ) and the new (μ', σ'), ``γ' = γ·σ'/σ`` and ``β' = β + γ·(μ' − μ)/σ`` give
``(x − μ')/σ'·γ' + β' = (x − μ)/σ·γ + β``. The statistics vary from mixture to mixture; the correction is
exact for the mean statistics only (the result reports how far the kept slots' features moved).

The optimizer state (Adam moments) of the re-drawn weights is kept: it has the scale of those weights'
gradients, which a zeroed state would not (Adam's first steps after zeroing would be ~``lr`` per weight).

``python -m recipes.surgery IN.ckpt OUT.ckpt --slots 0 1 2 3 --data FOLDER`` (FOLDER: ``*.wav``
mixtures, e.g. ``<simulated set>/val/mixed``; used for the normalisation statistics only).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepasa.audio.io import load_audio
from deepasa.errors import DeepASAError, run_script
from deepasa.staging import atomic_path

PREFIX = "model.splitter."


def _group_stats(y: torch.Tensor) -> tuple[float, float]:
    """Mean over mixtures of GroupNorm(1, ·)'s per-sample mean and std. y (B, C, T, F) -> (μ, σ)."""
    flat = y.reshape(y.shape[0], -1)  # (B, C*T*F)
    return float(flat.mean(dim=1).mean()), float(flat.var(dim=1, unbiased=False).add(1e-5).sqrt().mean())


def revive_slots(src: str | Path, dst: str | Path, slots: list[int], data: str | Path, seed: int = 0,
                 n_mixtures: int = 8) -> dict:
    """Write ``dst``: the checkpoint ``src`` with the splitter weights of ``slots`` drawn afresh.

    Args:
        src: a ``deepasa train`` Lightning checkpoint (``state_dict`` with ``model.`` names, ``deepasa_model``).
        dst: where the changed checkpoint goes (written atomically; never ``src`` itself).
        slots: object slots to re-draw, each in ``[0, K)``.
        data: a folder of mixture ``*.wav`` files at the model's sample rate and channel count.
        seed: seed of the new weights.
        n_mixtures: how many of the folder's mixtures (first ``clip_seconds`` of each) give the statistics.

    Returns:
        What was done: per-slot weight norms before and after, the statistics, and the relative change of
        the kept slots' features on the mixtures (0 = unchanged).

    Raises:
        DeepASAError: unreadable checkpoint, no splitter in it, a slot out of range, or no usable mixture.
    """
    from deepasa.model.deepasa import read_checkpoint
    from deepasa.model.loading import load_model

    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise DeepASAError("surgery: the output must be a new file, not the input checkpoint")
    ckpt = read_checkpoint(src)                                      # tensors and plain data only
    if not isinstance(ckpt, dict) or "deepasa_model" not in ckpt or PREFIX + "conv.weight" not in ckpt.get(
            "state_dict", {}):
        raise DeepASAError(f"surgery: {src} is not a `deepasa train` checkpoint with a splitter")
    model = load_model(src).eval()                                   # the same file, as a network
    cfg = model.config
    sd = ckpt["state_dict"]
    w = sd[PREFIX + "conv.weight"]                                   # (K*D, D, 3, 3)
    k, d = cfg.n_objects, w.shape[1]
    if any(not 0 <= s < k for s in slots) or not slots:
        raise DeepASAError(f"surgery: slots must be in [0, {k}), got {slots}")
    kept = [s for s in range(k) if s not in slots]

    files = sorted(Path(data).glob("*.wav"))[:n_mixtures]
    if not files:
        raise DeepASAError(f"surgery: no *.wav mixture in {data}")
    n = int(round(cfg.clip_seconds * cfg.sample_rate))
    clips = []
    for f in files:
        audio, sr = load_audio(f)                                    # (M, N)
        if sr != cfg.sample_rate or audio.shape[0] != cfg.n_mics or audio.shape[1] < n:
            raise DeepASAError(f"surgery: {f} is not a {cfg.n_mics}-channel {cfg.sample_rate} Hz mixture of "
                               f">= {cfg.clip_seconds} s")
        clips.append(audio[:, :n])
    x = torch.from_numpy(np.stack(clips)).float()                    # (B, M, N)

    with torch.no_grad():
        z, _ = model.aggregate(x)                                    # (B, D, T, F)
        old_pre = F.mish(model.splitter.conv(z))                     # (B, K*D, T, F)
        old_out = model.splitter(z)                                  # (B, K, D, T, F)

        gen = torch.Generator().manual_seed(seed)
        bound = 1.0 / float(np.sqrt(d * 9))                          # PyTorch's default Conv2d bound
        new_w, new_b = w.clone(), sd[PREFIX + "conv.bias"].clone()
        for s in slots:
            rows = slice(s * d, (s + 1) * d)
            new_w[rows] = torch.empty_like(w[rows]).uniform_(-bound, bound, generator=gen)
            new_b[rows] = torch.empty_like(new_b[rows]).uniform_(-bound, bound, generator=gen)
        new_pre = F.mish(F.conv2d(z, new_w, new_b, padding=1))      # (B, K*D, T, F)

        (mu, sigma), (mu2, sigma2) = _group_stats(old_pre), _group_stats(new_pre)
        gamma, beta = sd[PREFIX + "norm.weight"].clone(), sd[PREFIX + "norm.bias"].clone()
        for s in kept:
            rows = slice(s * d, (s + 1) * d)
            beta[rows] = beta[rows] + gamma[rows] * (mu2 - mu) / sigma
            gamma[rows] = gamma[rows] * sigma2 / sigma

        sd[PREFIX + "conv.weight"], sd[PREFIX + "conv.bias"] = new_w, new_b
        sd[PREFIX + "norm.weight"], sd[PREFIX + "norm.bias"] = gamma, beta
        model.splitter.conv.weight.copy_(new_w)
        model.splitter.conv.bias.copy_(new_b)
        model.splitter.norm.weight.copy_(gamma)
        model.splitter.norm.bias.copy_(beta)
        new_out = model.splitter(z)                                  # (B, K, D, T, F)
        moved = [float((new_out[:, s] - old_out[:, s]).norm() / old_out[:, s].norm()) for s in kept]

    with atomic_path(dst, "tmp") as tmp:
        torch.save(ckpt, tmp)

    def norms(t: torch.Tensor) -> list[float]:
        return [round(float(t[s * d:(s + 1) * d].norm()), 3) for s in range(k)]

    return {"src": str(src), "dst": str(dst), "global_step": ckpt.get("global_step"), "slots": slots,
            "seed": seed, "mixtures": len(files), "weight_norm_before": norms(w), "weight_norm_after": norms(new_w),
            "group_stats_before": [round(mu, 4), round(sigma, 4)], "group_stats_after": [round(mu2, 4),
                                                                                          round(sigma2, 4)],
            "kept_slots_feature_change": dict(zip(map(str, kept), [round(m, 4) for m in moved]))}


def main(argv: list[str] | None = None) -> None:
    """``python -m recipes.surgery IN OUT --slots S... --data FOLDER``; prints the result as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--slots", type=int, nargs="+", required=True)
    p.add_argument("--data", required=True, help="folder of *.wav mixtures (normalisation statistics only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixtures", type=int, default=8)
    args = p.parse_args(argv)
    run_script(lambda: print(json.dumps(revive_slots(args.src, args.dst, args.slots, args.data, args.seed,
                                                     args.mixtures), indent=1)))


if __name__ == "__main__":
    main()
