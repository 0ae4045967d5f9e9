"""The LightningModule: DeepASA + its objective, optimiser and schedule (docs/spec.md §5, §6), validation metrics.

Objectives (``objective``):

* ``asa``  — the ASA2 multi-task loss of docs/spec.md §5.1 (:func:`deepasa.losses.multitask_loss`): separation
  (image, direct and reverb terms, reference and other channels), noise, class, SED, DoA, on/off; one
  master permutation from the reference-channel image (or from the SELD loss with ``master: seld``).
* ``seld`` — docs/spec.md §5.2 (:func:`deepasa.losses.seld_loss`): SELD terms only, the permutation chosen from
  the SELD loss itself, for data without isolated sources (STARSS23).
* ``uss``  — docs/spec.md §5.3 (:func:`deepasa.losses.uss_loss`): PIT −SA-SDR of the reference-channel images and
  −0.01·SI-SDR of the noise (MC-FUSS).
* ``s5``   — separation + labels (DCASE 2025 Task 4): the ``uss`` terms, plus the class loss of the slots
  under the same permutation (empty slots pushed to uniform).

Schedule (docs/spec.md §6): Adam (lr 4e-4, weight decay 1e-5) over the trainable parameters and
``ReduceLROnPlateau(factor 0.5, patience 3)`` on ``monitor`` (``val/seld_score``, lower is better); gradient
clipping (norm 5) and precision are Trainer settings of the recipes.

Validation logs every loss term (``val/<term>``), the DeepASA frame SELD metrics (``val/ER``, ``val/F``,
``val/LE``, ``val/LR``, ``val/seld_score``; micro-averaged as the ASA2 tables, or class-macro with
``seld_average: macro`` as STARSS23), the reference-channel SI-SDRi of the image and of the direct path
(``val/si_sdri_db``, ``val/direct_si_sdri_db``) and, for CoI models, ``val/net1_seld_score``. Statistics are
summed over the whole validation set and over DDP ranks before the metrics are formed.

Stages: Net 1 (``model: small``), then CoI (``model: small`` + ``model_overrides: {coi_steps: 1}``,
``init_from: <Net-1 checkpoint>`` copies every matching weight, ``freeze: [encoder, blocks]`` optionally
freezes the encoder and aggregator), then SELD fine-tuning or USS.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from deepasa.errors import DeepASAError
from deepasa.losses import (
    LossOutput,
    LossWeights,
    apply_permutation,
    class_loss,
    multitask_loss,
    sed_targets,
    seld_loss,
    seld_losses_per_slot,
    si_sdr,
    uss_loss,
)
from deepasa.metrics.seld_frame import FrameSELDStats, seld_decisions
from deepasa.model import DeepASA, get_config
from deepasa.model.decision import LEGACY_KEYS, DecisionRule, split_decision
from deepasa.model.loading import load_model, load_model_weights  # noqa: F401 - deepasa.train.load_model

OBJECTIVES = ("asa", "seld", "uss", "s5")
_SELD_KEYS = ("cls_logits", "sed", "onoff", "doa")


def _gain(est: torch.Tensor, tgt: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """SI-SDR improvement (B, J) of estimates (B, J, N) over the mixture (B, J, N) for targets (B, J, N).

    A silent (all-zero) estimate scores as the unprocessed mixture, i.e. improvement 0, the rule of
    :func:`deepasa.metrics.separation.improvement`: otherwise dropping an object would gain over weak sources.
    """
    gain = si_sdr(est, tgt) - si_sdr(mix, tgt)                       # (B, J)
    return torch.where(est.ne(0).any(-1), gain, torch.zeros_like(gain))


def _mean_sum_count(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if np.isfinite(v)]
    return float(sum(finite)), float(len(finite))


def _split_rule(model_overrides: dict, decision_rule: dict | None) -> tuple[dict, DecisionRule]:
    """(config overrides, decision rule) of the module's ``model_overrides`` and ``decision_rule`` arguments.

    ``model_overrides`` that still carry the rule's old config keys (recipes and Lightning checkpoints' hyper-
    parameters written before the rule left the config) give those fields; ``decision_rule`` gives the rest.
    """
    overrides, _ = split_decision(model_overrides)                   # checks the old keys' values by their names
    old = {LEGACY_KEYS[k]: v for k, v in model_overrides.items() if k in LEGACY_KEYS}
    given = DecisionRule.from_dict(decision_rule or {})              # checks decision_rule
    new = given.to_dict() if isinstance(decision_rule, DecisionRule) else dict(decision_rule or {})
    clash = sorted(f for f in set(old) & set(new) if float(old[f]) != float(new[f]))
    if clash:
        names = {v: k for k, v in LEGACY_KEYS.items()}
        raise DeepASAError(f"model.model_overrides.{names[clash[0]]}={old[clash[0]]!r} and model.decision_rule."
                           f"{clash[0]}={new[clash[0]]!r} disagree: set it in model.decision_rule only")
    return overrides, DecisionRule.from_dict({**old, **new})


class DeepASAModule(L.LightningModule):
    """DeepASA training and validation.

    Args:
        model: model config name (``paper``, ``paper-coi``, ``uss``, ``small``, ``tiny``) or YAML path.
        model_overrides: config fields replacing the named ones (e.g. ``{n_classes: 10, coi_steps: 1}``). The
            decision rule's old config keys (``detect_onoff``, ``detect_doa_norm``, ``detect_merge_deg``), which
            recipes and Lightning checkpoints written before the rule left the config hold here, are moved into
            the rule (an error where ``decision_rule`` sets the same field to another value).
        decision_rule: the model's activity decision rule, :class:`~deepasa.model.decision.DecisionRule` fields
            (``{onoff: 0.8, doa_norm: 0.15, merge_deg: 0}``, any subset; default the paper's, docs/spec.md §1);
            a recipe's ``model.decision_rule``. Validation decides with it, and checkpoints and exports carry it.
        objective: ``asa``, ``seld``, ``uss`` or ``s5`` (module docstring).
        loss_weights: :class:`~deepasa.losses.LossWeights` fields replacing the objective's defaults
            (``asa``: docs/spec.md §5.1; ``seld``: docs/spec.md §5.2).
        master: master permutation of ``asa``: ``image`` (docs/spec.md §4) or ``seld``.
        aux_own_permutation: ``asa``: the auxiliary separation terms (direct, reverb, the other mics) each get
            their own PIT, as the released trainer (True), or reuse the master permutation, one assignment per
            object (False): with their own PIT, an object's other-mic channels can be trained towards another
            source than its reference channel.
        net1_loss_weight: weight of the SELD terms of the Net-1 outputs of a CoI model, under the master
            permutation (0 = only the final outputs are supervised, as the released code).
        lr: Adam learning rate (docs/spec.md §6: 4e-4; STARSS23 fine-tuning 5e-5).
        weight_decay: Adam weight decay (1e-5).
        min_lr: floor of the plateau schedule (1e-6).
        lr_factor: plateau factor (0.5).
        lr_patience: plateau patience in validations (3).
        monitor: metric of the plateau schedule (and, by the recipes, of the best checkpoint).
        monitor_mode: ``min`` or ``max``.
        freeze: names of top-level sub-modules to freeze (``stft``, ``encoder``, ``blocks``, ``splitter``,
            ``audio``, ``seld``, ``coi``); ``[encoder, blocks]`` freezes the encoder + aggregator for CoI.
        init_from: a Net-1 model file or checkpoint whose matching weights (same name and shape) initialise
            this model (the CoI stage); applied once, at construction. With ``coi_init: identity`` the CoI
            steps' splitters are then copied from the loaded Net-1 splitter.
        init_skip: name prefixes of weights that ``init_from`` does not copy (they keep their fresh
            initialisation), e.g. ``[audio.]`` when the audio heads change meaning (``audio_output: mask``).
        seld_average: ``micro`` (ASA2 tables) or ``macro`` (STARSS23 table).
        use_doa_norm: SED decisions apply the model's rule (``decision_rule``), its ‖doa‖ threshold (``doa_norm``,
            docs/spec.md §1: 0.5) as well as its on/off threshold (``onoff``, 0.5) and its duplicate merge
            (``merge_deg``, 0 = none) (ASA protocol); False: on/off > 0.5 alone (STARSS23).
        val_separation: compute SI-SDRi in validation (when the data have isolated sources).
        compile: compile the trunk blocks, splitter and heads with torch.compile at set-up
            (:func:`deepasa.train.fastpath.compile_model`; eager where it is unavailable). It pays in long
            runs: 1.3x per `small` step on this CPU, after 5-6 minutes of compilation per process.
    """

    def __init__(self, model: str = "small", model_overrides: dict | None = None,
                 decision_rule: dict | None = None, objective: str = "asa",
                 loss_weights: dict | None = None, master: str = "image", aux_own_permutation: bool = True,
                 net1_loss_weight: float = 0.0,
                 lr: float = 4e-4, weight_decay: float = 1e-5, min_lr: float = 1e-6, lr_factor: float = 0.5,
                 lr_patience: int = 3, monitor: str = "val/seld_score", monitor_mode: str = "min",
                 freeze: list[str] | None = None, init_from: str | None = None, init_skip: list[str] | None = None,
                 seld_average: str = "micro",
                 use_doa_norm: bool = True, val_separation: bool = True, compile: bool = False):
        super().__init__()
        if objective not in OBJECTIVES:
            raise DeepASAError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
        if master not in ("image", "seld"):
            raise DeepASAError(f"master must be 'image' or 'seld', not {master!r}")
        if monitor_mode not in ("min", "max"):
            raise DeepASAError(f"monitor_mode must be 'min' or 'max', not {monitor_mode!r}")
        if seld_average not in ("micro", "macro"):
            raise DeepASAError(f"seld_average must be 'micro' or 'macro', not {seld_average!r}")
        self.save_hyperparameters()
        overrides, rule = _split_rule(model_overrides or {}, decision_rule)
        cfg = get_config(model, **overrides)
        if objective in ("asa", "seld") and not cfg.seld_heads:
            raise DeepASAError(f"objective {objective!r} needs a model with SED/DoA heads (model {model!r} has none)")
        if objective == "asa" and not cfg.reverb_head:
            raise DeepASAError("objective 'asa' needs separate direct and reverb heads (reverb_head: true)")
        if objective == "s5" and not cfg.seld_heads:
            raise DeepASAError("objective 's5' needs the class head (seld_heads: true)")
        self.model = DeepASA(cfg, decision_rule=rule)
        self.weights = self._weights(objective, loss_weights)
        self.init_report: dict[str, int] | None = None
        if init_skip and not init_from:
            raise DeepASAError("init_skip needs init_from")
        if init_from:
            self.init_report = self.copy_matching_weights(init_from, skip=init_skip or ())
        self._frozen = self._freeze(freeze or [])
        self._compiled: list[str] | None = None
        self._reset_val_stats()

    # ------------------------------------------------------------------ set-up helpers
    @staticmethod
    def _weights(objective: str, overrides: dict | None) -> LossWeights:
        base = LossWeights.seld() if objective == "seld" else LossWeights.asa2()
        fields = set(LossWeights.__dataclass_fields__)
        unknown = sorted(set(overrides or {}) - fields)
        if unknown:
            raise DeepASAError(f"unknown loss weight(s): {', '.join(unknown)} (valid: {', '.join(sorted(fields))})")
        for k, v in (overrides or {}).items():
            setattr(base, k, float(v))
        return base

    def copy_matching_weights(self, path: str | Path, skip: tuple[str, ...] | list[str] = ()) -> dict[str, int]:
        """Copy every tensor of ``path`` whose name and shape match into this model (Net 1 → CoI), except
        those whose name starts with one of ``skip``.

        Returns:
            ``{"copied", "skipped_shape", "skipped_prefix", "missing"}``: tensors copied, tensors of the file
            whose shape differs here, tensors left out by ``skip``, and tensors of this model not copied
            (e.g. the new CoI step, or the skipped ones).

        Raises:
            DeepASAError: unreadable file, a ``skip`` prefix that names no tensor, or no tensor matched.
        """
        _, state = load_model_weights(path)
        own = self.model.state_dict()
        unknown = [p for p in skip if not any(k.startswith(p) for k in own)]
        if unknown:
            raise DeepASAError(f"init_skip {', '.join(unknown)} names no weight of this model")
        kept = {k: v for k, v in state.items() if not k.startswith(tuple(skip))}
        skipped_prefix, state = len(state) - len(kept), kept
        copied = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        skipped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
        if not copied:
            raise DeepASAError(f"no weight of {path} fits this model (different config?)")
        own.update(copied)
        self.model.load_state_dict(own, strict=True)
        if self.model.config.coi_init == "identity" and not any(k.startswith("coi.") for k in copied):
            # a Net-1 file: splitter 2 starts as the Net-1 splitter just loaded
            for step in self.model.coi:
                step.copy_splitter(self.model.splitter)
        return {"copied": len(copied), "skipped_shape": len(skipped), "skipped_prefix": skipped_prefix,
                "missing": len(set(own) - set(copied))}

    def _freeze(self, names: list[str]) -> list[str]:
        children = dict(self.model.named_children())
        unknown = [n for n in names if n not in children]
        if unknown:
            raise DeepASAError(f"cannot freeze {', '.join(unknown)}: the model's parts are {', '.join(children)}")
        for n in names:
            for p in children[n].parameters():
                p.requires_grad_(False)
        return list(names)

    def on_train_epoch_start(self) -> None:
        """Frozen parts run in eval mode (no dropout), so they are truly fixed feature extractors."""
        children = dict(self.model.named_children())
        for n in self._frozen:
            children[n].eval()

    def setup(self, stage: str) -> None:
        """Check that the data fit the model (classes, slots, rate) before any step runs; compile if asked."""
        if self.hparams.get("compile") and self._compiled is None:
            from deepasa.train.fastpath import compile_model

            self._compiled = compile_model(self.model, log=lambda m: print(m, file=sys.stderr, flush=True))
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        h = getattr(dm, "hparams", None)
        if dm is None or not {"n_slots", "sample_rate"} <= set(h or {}):
            return                     # plain dataloaders: the forward pass checks the channel count
        cfg = self.model.config
        if h.n_slots != cfg.n_slots:
            raise DeepASAError(f"data.n_slots={h.n_slots} but the model has {cfg.n_slots} slots")
        if h.sample_rate != cfg.sample_rate:
            raise DeepASAError(f"data.sample_rate={h.sample_rate} but the model runs at {cfg.sample_rate} Hz")
        dm.setup(stage)
        names = dm.class_names
        if cfg.seld_heads and names is not None and len(names) != cfg.n_classes:
            raise DeepASAError(f"the data have {len(names)} classes but the model has {cfg.n_classes}: "
                               f"set model.model_overrides.n_classes={len(names)}")

    # ------------------------------------------------------------------ forward and loss
    def forward(self, mixture: torch.Tensor):
        """mixture (B, M, N) → :class:`~deepasa.model.DeepASAOutput`."""
        return self.model(mixture)

    def _check_batch(self, batch: dict) -> None:
        mix = batch["mixture"]
        if mix.shape[1] != self.model.config.n_mics:
            raise DeepASAError(f"the data have {mix.shape[1]} channels but the model expects {self.model.config.n_mics}")

    def _ref(self, x: torch.Tensor) -> torch.Tensor:
        """Reference channel of (B, J, K, N) or (B, K, N): (B, J, N) / (B, N); K = 1 is the ref already."""
        ch = 0 if x.shape[-2] == 1 else self.model.config.ref_mic
        return x[..., ch, :]

    def _target_images(self, batch: dict) -> torch.Tensor:
        """(B, J, K, N) target images: ``image`` if the data have it, else direct + reverb."""
        if "image" in batch:
            return batch["image"]
        if "direct" in batch and "reverb" in batch:
            return batch["direct"] + batch["reverb"]
        raise DeepASAError("this objective needs isolated sources (image, or direct + reverb) in the data")

    def compute_loss(self, out, batch: dict) -> LossOutput:
        """The objective's :class:`~deepasa.losses.LossOutput` for one batch (``perm (B, J)`` included)."""
        obj, w = self.hparams.objective, self.weights
        if obj == "asa":
            loss = multitask_loss(out, batch, w, ref_channel=self.model.config.ref_mic, master=self.hparams.master,
                                  aux_own_permutation=self.hparams.aux_own_permutation)
        elif obj == "seld":
            loss = seld_loss(out, batch, w)
        else:
            tgt = self._target_images(batch)                        # (B, J, M|1, N)
            t_noise = batch.get("noise")
            loss = uss_loss(self._ref(out.image), None if t_noise is None else self._ref(out.noise),
                            self._ref(tgt), None if t_noise is None else self._ref(t_noise),
                            noise_weight=w.noise)
            if obj == "s5":
                cls = class_loss(apply_permutation(out.cls_logits, loss.perm), batch["cls"]).mean()
                loss.components["cls"] = cls.detach()
                loss.total = loss.total + w.cls * cls
        if (out.net1 is not None and self.hparams.net1_loss_weight and obj in ("asa", "seld")):
            aligned = {k: apply_permutation(getattr(out.net1, k), loss.perm) for k in _SELD_KEYS}
            parts = seld_losses_per_slot(aligned, batch, w.onoff_pos_weight)  # each (B, J)
            net1 = sum(getattr(w, k) * v.mean() for k, v in parts.items())
            loss.components["net1_seld"] = net1.detach()
            loss.total = loss.total + self.hparams.net1_loss_weight * net1
        return loss

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """One optimisation step's loss; logs ``train/loss`` and every term ``train/<term>`` (this step's value,
        every ``log_every_n_steps``) and their means over the epoch's steps as ``train_epoch/<term>`` (one row at
        the epoch's end: the training curve without the noise of single batches)."""
        self._check_batch(batch)
        out = self.model(batch["mixture"])
        loss = self.compute_loss(out, batch)
        bs = batch["mixture"].shape[0]
        for k, v in {"loss": loss.total.detach(), **loss.components}.items():
            self.log(f"train/{k}", v, prog_bar=k == "loss", batch_size=bs)
            self.log(f"train_epoch/{k}", v, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        return loss.total

    def configure_optimizers(self) -> dict[str, Any]:
        """Adam + ReduceLROnPlateau on ``monitor`` (docs/spec.md §6)."""
        h = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=h.lr, weight_decay=h.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=h.monitor_mode, factor=h.lr_factor,
                                                           patience=h.lr_patience, min_lr=h.min_lr)
        # strict=False: epochs without validation (check_val_every_n_epoch > 1) keep the rate.
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": h.monitor, "interval": "epoch",
                                                   "frequency": 1, "strict": False}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the model config and, beside it, its decision rule, so ``deepasa evaluate`` and ``export``
        rebuild the model from the checkpoint alone."""
        checkpoint["deepasa_model"] = self.model.config.to_dict()
        checkpoint["deepasa_decision"] = self.model.decision_rule.to_dict()

    # ------------------------------------------------------------------ validation
    def _reset_val_stats(self) -> None:
        c = self.model.config.n_classes
        self._seld = FrameSELDStats(c)
        self._seld_net1 = FrameSELDStats(c)
        self._sep = np.zeros(4)          # si_sdri sum, count, direct_si_sdri sum, count
        self._has_seld = False

    def on_validation_epoch_start(self) -> None:
        """Start the sums of a new validation pass."""
        self._reset_val_stats()

    def _update_seld(self, stats: FrameSELDStats, out, perm: torch.Tensor, batch: dict) -> None:
        cls_logits, onoff, doa = (apply_permutation(getattr(out, k), perm).float() for k in ("cls_logits", "onoff", "doa"))
        rule = self.model.decision_rule
        doa_thr, onoff_thr, merge_deg = ((rule.doa_norm, rule.onoff, rule.merge_deg)
                                         if self.hparams.use_doa_norm else (0.0, 0.5, 0.0))
        sed_out = seld_decisions(cls_logits, onoff, doa, doa_threshold=doa_thr, onoff_threshold=onoff_thr,
                                 merge_deg=merge_deg)                                              # (B, J, T', C)
        sed_label = sed_targets(batch["cls"], batch["activity"], cls_logits.shape[-1])             # (B, J, T', C)
        stats.update(sed_out, sed_label, doa, batch["doa"])

    def _update_separation(self, out, perm: torch.Tensor, batch: dict) -> None:
        tgt = self._target_images(batch)                             # (B, J, K, N)
        est = apply_permutation(self._ref(out.image).float(), perm)  # (B, J, N)
        tgt_ref = self._ref(tgt).float()                             # (B, J, N)
        mix = self._ref(batch["mixture"]).float().unsqueeze(1).expand_as(tgt_ref)   # (B, J, N)
        active = tgt_ref.abs().amax(-1) > 0                          # (B, J)
        gain = _gain(est, tgt_ref, mix)                              # (B, J)
        s, n = _mean_sum_count(gain[active].tolist())
        self._sep[0] += s
        self._sep[1] += n
        if out.direct is not None and "direct" in batch:
            est_d = apply_permutation(self._ref(out.direct).float(), perm)
            tgt_d = self._ref(batch["direct"]).float()
            gain_d = _gain(est_d, tgt_d, mix)                        # (B, J)
            s, n = _mean_sum_count(gain_d[active].tolist())
            self._sep[2] += s
            self._sep[3] += n

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Loss terms (``val/<term>``) and the sums of the SELD and separation metrics."""
        self._check_batch(batch)
        out = self.model(batch["mixture"])
        loss = self.compute_loss(out, batch)
        bs = batch["mixture"].shape[0]
        self.log("val/loss", loss.total.detach(), prog_bar=True, batch_size=bs, sync_dist=True)
        for k, v in loss.components.items():
            self.log(f"val/{k}", v, batch_size=bs, sync_dist=True)
        if self.hparams.objective in ("asa", "seld") and "activity" in batch:
            self._has_seld = True
            self._update_seld(self._seld, out, loss.perm, batch)
            if out.net1 is not None:
                self._update_seld(self._seld_net1, out.net1, loss.perm, batch)
        if self.hparams.val_separation and ("image" in batch or "direct" in batch):
            self._update_separation(out, loss.perm, batch)

    def _reduced(self, stats: FrameSELDStats) -> FrameSELDStats:
        """The stats summed over DDP ranks."""
        names = ("tp", "fp", "fn", "tp20", "fp20", "angle_sum_c", "active_c")
        flat = np.concatenate([getattr(stats, n) for n in names] + [np.array([stats.angle_sum, stats.active])])
        total = self._all_sum(flat)
        out = FrameSELDStats(stats.n_classes)
        c = stats.n_classes
        for i, n in enumerate(names):
            setattr(out, n, total[i * c:(i + 1) * c])
        out.angle_sum, out.active = float(total[-2]), float(total[-1])
        return out

    def _all_sum(self, values: np.ndarray) -> np.ndarray:
        if self.trainer.world_size == 1:
            return values
        t = torch.as_tensor(values, dtype=torch.float64, device=self.device)
        return self.trainer.strategy.reduce(t, reduce_op="sum").cpu().numpy()

    def on_validation_epoch_end(self) -> None:
        """Form the metrics from the summed statistics and log them (lower ``val/seld_score`` is better)."""
        has_seld = bool(self._all_sum(np.array([float(self._has_seld)]))[0])
        if has_seld:
            m = self._reduced(self._seld).compute(self.hparams.seld_average)
            self.log("val/seld_score", m["SELD"], prog_bar=True)
            for k in ("ER", "F", "LE", "LR"):
                self.log(f"val/{k}", m[k])
            if self.model.config.coi_steps:
                m1 = self._reduced(self._seld_net1).compute(self.hparams.seld_average)
                self.log("val/net1_seld_score", m1["SELD"])
        sep = self._all_sum(self._sep)
        if sep[1] > 0:
            self.log("val/si_sdri_db", sep[0] / sep[1], prog_bar=True)
        if sep[3] > 0:
            self.log("val/direct_si_sdri_db", sep[2] / sep[3])
