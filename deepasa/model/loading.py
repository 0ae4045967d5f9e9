"""Rebuild a :class:`~deepasa.model.DeepASA` from either file a user has: a ``DeepASA.save`` model file or a
``deepasa train`` Lightning checkpoint (read as plain tensors, without Lightning). Pre-issue-16 parameter names
are renamed on the way (:func:`~deepasa.model.heads.upgrade_state_dict`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from deepasa.errors import DeepASAError
from deepasa.model.configs import DeepASAConfig
from deepasa.model.deepasa import DeepASA, read_checkpoint
from deepasa.model.heads import upgrade_state_dict


def load_model_weights(path: str | Path) -> tuple[DeepASAConfig, dict[str, torch.Tensor]]:
    """Config and state dict of a model file: a ``DeepASA.save`` file or a Lightning checkpoint of this module.

    Args:
        path: the file.

    Returns:
        (config, state dict with the network's own parameter names).

    Raises:
        DeepASAError: missing or unreadable file, or a file that holds no DeepASA model.
    """
    cfg, state, _ = _read(Path(path))
    return cfg, state


def _read(path: Path) -> tuple[DeepASAConfig, dict[str, torch.Tensor], dict]:
    """(config, state dict, meta) of a model file or Lightning checkpoint; meta is the model file's class
    names and array format ({} for a Lightning checkpoint, which has neither)."""
    ckpt = read_checkpoint(path)                                     # tensors and plain data only
    if not isinstance(ckpt, dict):
        raise DeepASAError(f"{path} is not a DeepASA checkpoint")
    if "deepasa_model" in ckpt and "state_dict" in ckpt:           # Lightning checkpoint of DeepASAModule
        cfg = DeepASAConfig.from_dict(ckpt["deepasa_model"])
        state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        return cfg, upgrade_state_dict(state), {}
    if "config" in ckpt and "state_dict" in ckpt and str(ckpt.get("format", "")).startswith("deepasa-model"):
        return (DeepASAConfig.from_dict(ckpt["config"]), upgrade_state_dict(ckpt["state_dict"]),
                ckpt.get("meta") or {})
    raise DeepASAError(f"{path} is neither a DeepASA model file nor a `deepasa train` checkpoint")


def load_model(path: str | Path, **overrides) -> DeepASA:
    """Rebuild a :class:`DeepASA` from a model file or a Lightning checkpoint (see :func:`load_model_weights`).

    ``overrides`` replace config fields that leave the weights' shapes alone, e.g. ``doa_refine="srp"`` to
    score a model with the SRP-PHAT refinement it was not exported with (a field that changes a shape fails
    the strict load below)."""
    cfg, state, meta = _read(Path(path))
    if overrides:
        cfg = cfg.replace(**overrides)
    model = DeepASA(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DeepASAError(f"checkpoint {path} does not fit its own config: {str(exc).splitlines()[0]}") from None
    if meta.get("class_names"):  # a model file names its classes: kept (deepasa export of a model file)
        model.class_names = list(meta["class_names"])
    model.audio_format = meta.get("audio_format") or model.audio_format
    return model
