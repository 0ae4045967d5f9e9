"""DeepASAModule: each objective trains and validates (SELD-only on STARSS-like data, USS, S5), and rejects bad set-ups."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from deepasa.errors import DeepASAError
from deepasa.model import DeepASA, get_config
from deepasa.train.module import DeepASAModule, load_model

N, T, J = 8000, 10, 5
USS = {"n_slots": 4, "noise_object": True, "output_mode": "reference", "reverb_head": False, "seld_heads": False}


class Synthetic(Dataset):
    """A few random items with the requested target fields."""

    def __init__(self, fields, n_slots=J, n=2, n_classes=13):
        self.fields, self.n_slots, self.n, self.c = fields, n_slots, n, n_classes

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        k = 2
        item = {"mixture": 0.1 * torch.randn(4, N, generator=g), "scene_id": f"s{i}"}
        if "sources" in self.fields:
            direct = torch.zeros(self.n_slots, 4, N)
            direct[:k] = 0.05 * torch.randn(k, 4, N, generator=g)
            item.update(direct=direct, reverb=0.3 * direct, noise=0.01 * torch.randn(4, N, generator=g))
            item["mixture"] = (direct * 1.3).sum(0) + item["noise"]
        if "image" in self.fields:
            image = torch.zeros(self.n_slots, 1, N)
            image[:k] = 0.05 * torch.randn(k, 1, N, generator=g)
            item["image"] = image
        if "seld" in self.fields or "cls" in self.fields:
            cls = torch.full((self.n_slots,), -1, dtype=torch.long)
            cls[:k] = torch.tensor([i % self.c, (i + 3) % self.c])
            item["cls"] = cls
        if "seld" in self.fields:
            act = torch.zeros(self.n_slots, T)
            act[:k, 2:8] = 1.0
            item.update(activity=act, doa=F.normalize(torch.randn(self.n_slots, T, 3, generator=g), dim=-1) * act[..., None],
                        num_sources=torch.tensor(k))
        return item


def fit(module, dataset, tmp_path, steps=1):
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, limit_val_batches=1, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, gradient_clip_val=5.0, default_root_dir=tmp_path)
    dl = DataLoader(dataset, batch_size=2)
    trainer.fit(module, train_dataloaders=dl, val_dataloaders=dl)
    return trainer.callback_metrics


def test_seld_only_objective_on_data_without_sources(tmp_path):
    module = DeepASAModule(model="tiny", objective="seld", seld_average="macro", use_doa_norm=False)
    assert module.weights.image_ref == 0 and module.weights.cos == 1      # docs/spec.md §5.2 weights
    metrics = fit(module, Synthetic({"seld"}), tmp_path)
    for k in ("val/loss", "val/cls", "val/sed", "val/doa", "val/cos", "val/onoff", "val/seld_score", "val/ER"):
        assert k in metrics and torch.isfinite(metrics[k]), k
    assert "val/si_sdri_db" not in metrics                                    # no sources to score


def test_asa_objective_with_seld_master_permutation(tmp_path):
    module = DeepASAModule(model="tiny", objective="asa", master="seld", loss_weights={"cos": 0.5})
    assert module.weights.cos == 0.5
    metrics = fit(module, Synthetic({"sources", "seld"}), tmp_path)
    assert {"val/seld_score", "val/si_sdri_db", "val/direct_si_sdri_db", "val/image_ref"} <= set(metrics)


def test_uss_objective_reference_channel_model(tmp_path):
    module = DeepASAModule(model="tiny", model_overrides=USS, objective="uss", monitor="val/loss")
    metrics = fit(module, Synthetic({"sources"}, n_slots=4), tmp_path)
    assert {"val/loss", "val/sep", "val/noise", "val/si_sdri_db"} <= set(metrics)
    assert "val/seld_score" not in metrics


def test_s5_objective_separation_plus_labels(tmp_path):
    overrides = {"n_slots": 3, "n_classes": 18, "output_mode": "reference", "reverb_head": False}
    module = DeepASAModule(model="tiny", model_overrides=overrides, objective="s5", monitor="val/loss")
    metrics = fit(module, Synthetic({"image", "cls"}, n_slots=3, n_classes=18), tmp_path)
    assert {"val/sep", "val/cls", "val/si_sdri_db"} <= set(metrics) and "val/noise" not in metrics


def test_checkpoint_with_the_model_config_rebuilds_the_network(tmp_path):
    """What on_save_checkpoint adds to a Lightning checkpoint is enough to rebuild the network alone."""
    module = DeepASAModule(model="tiny", model_overrides={"n_classes": 7})
    ckpt = {"state_dict": module.state_dict(), "global_step": 0}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "m.ckpt")
    model = load_model(tmp_path / "m.ckpt")
    assert model.config == get_config("tiny", n_classes=7)
    for k, v in module.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    # one loader: DeepASA.from_pretrained reads the Lightning checkpoint too (issue 38)
    again = DeepASA.from_pretrained(tmp_path / "m.ckpt", config=get_config("tiny", n_classes=7))
    for k, v in module.model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)


def test_decision_rule_is_a_module_setting_apart_from_the_model_config(tmp_path):
    """``decision_rule`` (a recipe's model.decision_rule) sets the model's rule; the checkpoint carries it beside
    the config. Old recipes and Lightning hyper-parameters with ``detect_*`` in model_overrides still train: those
    keys move into the rule (a clash with decision_rule is one error)."""
    from deepasa.model import DecisionRule

    module = DeepASAModule(model="tiny", decision_rule={"onoff": 0.8, "doa_norm": 0.15})
    assert module.model.decision_rule == DecisionRule(onoff=0.8, doa_norm=0.15)
    assert module.model.config == get_config("tiny")
    ckpt = {"state_dict": module.state_dict(), "global_step": 0}
    module.on_save_checkpoint(ckpt)
    assert ckpt["deepasa_decision"] == {"onoff": 0.8, "doa_norm": 0.15, "merge_deg": 0.0}
    assert not any(k.startswith("detect_") for k in ckpt["deepasa_model"])
    torch.save(ckpt, tmp_path / "m.ckpt")
    assert load_model(tmp_path / "m.ckpt").decision_rule == DecisionRule(onoff=0.8, doa_norm=0.15)
    old = DeepASAModule(model="tiny", model_overrides={"n_classes": 7, "detect_onoff": 0.8, "detect_merge_deg": 20},
                        decision_rule={"doa_norm": 0.15, "onoff": 0.8})
    assert old.model.decision_rule == DecisionRule(onoff=0.8, doa_norm=0.15, merge_deg=20.0)
    assert old.model.config == get_config("tiny", n_classes=7)
    with pytest.raises(DeepASAError, match="model_overrides.detect_onoff=0.8 and model.decision_rule.onoff=0.7"):
        DeepASAModule(model="tiny", model_overrides={"detect_onoff": 0.8}, decision_rule={"onoff": 0.7})
    with pytest.raises(DeepASAError, match="unknown decision rule key"):
        DeepASAModule(model="tiny", decision_rule={"detect_onoff": 0.8})


def test_bad_setups_are_user_errors(tmp_path):
    with pytest.raises(DeepASAError, match="objective"):
        DeepASAModule(model="tiny", objective="nope")
    with pytest.raises(DeepASAError, match="SED/DoA"):
        DeepASAModule(model="tiny", model_overrides=USS, objective="asa")
    with pytest.raises(DeepASAError, match="loss weight"):
        DeepASAModule(model="tiny", loss_weights={"colour": 1.0})
    with pytest.raises(DeepASAError, match="freeze"):
        DeepASAModule(model="tiny", freeze=["decoder"])
    with pytest.raises(DeepASAError, match="not found"):
        DeepASAModule(model="tiny", init_from=str(tmp_path / "missing.pt"))
    module = DeepASAModule(model="tiny")
    with pytest.raises(DeepASAError, match="channels"):
        module.training_step({"mixture": torch.zeros(1, 2, N)}, 0)


def test_step_time_reports_a_positive_step_cost():
    from recipes.step_time import step_seconds

    res = step_seconds("tiny", batch=1, repeats=1)
    assert res["forward_s"] > 0 and res["backward_s"] > 0
    assert res["step_s"] == pytest.approx(res["forward_s"] + res["backward_s"], abs=2e-3)


def test_validation_si_sdri_equals_the_evaluate_metric_and_a_silent_object_gains_nothing():
    """The module's running validation SI-SDRi equals deepasa.metrics.separation.improvement (numpy, float64) on the
    same estimates, including its rule that a silent estimate scores as the mixture (improvement exactly 0)."""
    from types import SimpleNamespace

    from deepasa.metrics.separation import improvement, si_sdr

    module = DeepASAModule(model="tiny")
    module._reset_val_stats()
    batch = Synthetic({"sources", "seld"})[0]
    batch = {k: v[None] if torch.is_tensor(v) else [v] for k, v in batch.items()}
    g = torch.Generator().manual_seed(5)
    image = batch["direct"] + batch["reverb"]                                 # (1, J, M, N)
    est = image + 0.02 * torch.randn(image.shape, generator=g)               # (1, J, M, N)
    est[:, 1] = 0.0                                                           # object 1 dropped: silent
    direct = batch["direct"] + 0.02 * torch.randn(image.shape, generator=g)
    out = SimpleNamespace(image=est, direct=direct)
    perm = torch.arange(J)[None]                                              # (1, J) identity
    module._update_separation(out, perm, batch)
    active = [0, 1]                                                           # Synthetic has two sources
    mix = batch["mixture"][0, 0].double().numpy()
    want = improvement(si_sdr, est[0, active, 0].double().numpy(), image[0, active, 0].double().numpy(), mix)
    assert want[1] == 0.0 and want[0] > 10.0
    assert module._sep[1] == 2 and module._sep[0] / module._sep[1] == pytest.approx(want.mean(), abs=1e-3)
    want_d = improvement(si_sdr, direct[0, active, 0].double().numpy(), batch["direct"][0, active, 0].double().numpy(), mix)
    assert module._sep[2] / module._sep[3] == pytest.approx(want_d.mean(), abs=1e-3)
