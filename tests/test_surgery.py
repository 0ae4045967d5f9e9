"""Slot revival (recipes.surgery) on a tiny model: the chosen slots get new weights at PyTorch's default
scale, nothing else changes, the kept slots' features stay where they were, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepasa.audio.io import load_audio, write_audio
from deepasa.errors import DeepASAError
from deepasa.model import DeepASA
from deepasa.model.configs import get_config
from recipes.surgery import revive_slots


@pytest.fixture()
def weak_slots_checkpoint(tmp_path):
    """A Lightning-style checkpoint of a tiny model whose slots 0-2 have shrunk 10x, and 4 mixtures."""
    torch.manual_seed(0)
    cfg = get_config("tiny")
    model = DeepASA(cfg)
    d = cfg.emb_dim
    with torch.no_grad():
        model.splitter.conv.weight[: 3 * d] *= 0.1                   # slots 0, 1, 2 weak
    state = {f"model.{k}": v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "last.ckpt"
    torch.save({"deepasa_model": cfg.to_dict(), "state_dict": state, "global_step": 7,
                "optimizer_states": [{"state": {}}]}, path)
    mixed = tmp_path / "mixed"
    rng = np.random.default_rng(1)
    n = int(cfg.clip_seconds * cfg.sample_rate)
    for i in range(4):
        write_audio(mixed / f"{i:06d}.wav", 0.1 * rng.standard_normal((cfg.n_mics, n)).astype(np.float32),
                    cfg.sample_rate)
    return cfg, path, mixed


def test_revived_slots_change_and_nothing_else(weak_slots_checkpoint, tmp_path):
    cfg, src, mixed = weak_slots_checkpoint
    before = torch.load(src, weights_only=False)
    info = revive_slots(src, tmp_path / "out.ckpt", [0, 1, 2], mixed, seed=3)
    after = torch.load(tmp_path / "out.ckpt", weights_only=False)
    d, k = cfg.emb_dim, cfg.n_objects
    w0, w1 = before["state_dict"]["model.splitter.conv.weight"], after["state_dict"]["model.splitter.conv.weight"]
    # the re-drawn slots: PyTorch's default uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), i.e. norm sqrt(n/3)/sqrt(fan_in)
    fan_in = w0.shape[1] * 9
    expected_norm = np.sqrt(d * fan_in / 3.0) / np.sqrt(fan_in)
    for s in range(3):
        assert not torch.equal(w0[s * d:(s + 1) * d], w1[s * d:(s + 1) * d])
        assert float(w1[s * d:(s + 1) * d].norm()) == pytest.approx(expected_norm, rel=0.1)
    for s in range(3, k):                                            # kept slots' conv weights untouched
        assert torch.equal(w0[s * d:(s + 1) * d], w1[s * d:(s + 1) * d])
    changed = {n for n in before["state_dict"] if not torch.equal(before["state_dict"][n], after["state_dict"][n])}
    assert changed <= {f"model.splitter.{p}" for p in ("conv.weight", "conv.bias", "norm.weight", "norm.bias")}
    assert after["global_step"] == 7 and after["optimizer_states"] == before["optimizer_states"]
    # the kept slots' features: the GroupNorm correction holds them to within a few per cent on the mixtures
    assert all(v < 0.05 for v in info["kept_slots_feature_change"].values())
    assert info["weight_norm_after"][:3] == pytest.approx([expected_norm] * 3, rel=0.1)


def test_kept_slots_features_unchanged_against_naive_forward(weak_slots_checkpoint, tmp_path):
    """The reported feature change agrees with a forward pass of the two saved models, computed here."""
    cfg, src, mixed = weak_slots_checkpoint
    info = revive_slots(src, tmp_path / "out.ckpt", [0, 1, 2], mixed)
    x = torch.stack([torch.from_numpy(load_audio(f)[0]) for f in sorted(mixed.glob("*.wav"))]).float()  # (B, M, N)
    outs = []
    for path in (src, tmp_path / "out.ckpt"):
        m = DeepASA(cfg)
        sd = torch.load(path, weights_only=False)["state_dict"]
        m.load_state_dict({k[len("model."):]: v for k, v in sd.items()})
        m.eval()
        with torch.no_grad():
            outs.append(m.splitter(m.aggregate(x)[0]))             # (B, K, D, T, F)
    for s in range(3, cfg.n_objects):
        rel = float((outs[1][:, s] - outs[0][:, s]).norm() / outs[0][:, s].norm())
        assert rel == pytest.approx(info["kept_slots_feature_change"][str(s)], abs=1e-3)
    # the revived slots really are different objects now
    assert float((outs[1][:, 0] - outs[0][:, 0]).norm() / outs[0][:, 0].norm()) > 0.1


def test_bad_input_is_refused(weak_slots_checkpoint, tmp_path):
    cfg, src, mixed = weak_slots_checkpoint
    with pytest.raises(DeepASAError, match="slots must be in"):
        revive_slots(src, tmp_path / "o.ckpt", [cfg.n_objects], mixed)
    with pytest.raises(DeepASAError, match="new file"):
        revive_slots(src, src, [0], mixed)
    with pytest.raises(DeepASAError, match="no \\*.wav"):
        revive_slots(src, tmp_path / "o.ckpt", [0], tmp_path / "empty")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(DeepASAError, match="cannot read"):
        revive_slots(tmp_path / "junk.ckpt", tmp_path / "o.ckpt", [0], mixed)
    assert not (tmp_path / "o.ckpt").exists()
