"""Determinism, save/load, config files and errors, pluggable pretrained encoder, `deepasa complexity` CLI."""

import json

import pytest
import torch
from torch import nn

from deepasa import cli
from deepasa.errors import DeepASAError
from deepasa.model import NAMED_CONFIGS, DeepASA, DeepASAConfig, get_config
from deepasa.model.configs import CONFIG_DIR, flatten_config, load_yaml
from deepasa.model.heads import PretrainedEncoder

torch.set_num_threads(1)


def test_eval_is_deterministic_and_train_is_not():
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", coi_steps=1))
    x = torch.randn(2, 4, 8000)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    for name, value in a.tensors().items():
        assert torch.equal(value, b.tensors()[name]), name
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x).image, model(x).image)  # dropout is active in training only


def test_save_load_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", coi_steps=1, trainable_window=True)).eval()
    path = model.save(tmp_path / "m.pt")
    loaded = DeepASA.from_pretrained(path).eval()
    assert loaded.config == model.config
    x = torch.randn(1, 4, 8000)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for name, value in a.tensors().items():
        assert torch.equal(value, b.tensors()[name]), name
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt["versions"]) >= {"deepasa", "torch"}
    assert DeepASA.from_pretrained(path, config=model.config).config == model.config


def test_load_with_other_config_fails_clearly(tmp_path):
    path = DeepASA("tiny").save(tmp_path / "tiny.pt")
    with pytest.raises(DeepASAError, match=r"different model config .*emb_dim: checkpoint 8 vs requested 64"):
        DeepASA.from_pretrained(path, config="paper")
    with pytest.raises(DeepASAError, match="n_slots: checkpoint 5 vs requested 3"):
        DeepASA.from_pretrained(path, config=get_config("tiny", n_slots=3))
    with pytest.raises(DeepASAError, match="checkpoint not found"):
        DeepASA.from_pretrained(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(DeepASAError, match="neither a DeepASA model file nor a `deepasa train` checkpoint"):
        DeepASA.from_pretrained(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DeepASAError, match="cannot read checkpoint"):
        DeepASA.from_pretrained(tmp_path / "junk.pt")
    (tmp_path / "text.pt").write_text("hi\n")                 # the unpickler says only "105" about this one
    with pytest.raises(DeepASAError, match=r"text\.pt \(not a PyTorch checkpoint\? KeyError: '?105"):
        DeepASA.from_pretrained(tmp_path / "text.pt")


def test_named_configs_are_the_yaml_files():
    """One place per named config: the YAML files, each holding only what differs from the paper defaults."""
    assert set(NAMED_CONFIGS) == {p.stem for p in CONFIG_DIR.glob("*.yaml")}
    assert {"paper", "paper-coi", "uss", "small", "shipped", "tiny"} <= set(NAMED_CONFIGS)
    assert get_config("paper") == DeepASAConfig() and load_yaml(CONFIG_DIR / "paper.yaml") == {}
    for name in NAMED_CONFIGS:
        values = flatten_config(load_yaml(CONFIG_DIR / f"{name}.yaml"))
        assert get_config(name) == DeepASAConfig.from_dict(values) == get_config(str(CONFIG_DIR / f"{name}.yaml"))
        defaults = DeepASAConfig().to_dict()
        same = sorted(k for k, v in values.items() if defaults[k] == (list(v) if isinstance(v, tuple) else v))
        assert not same, f"{name}.yaml repeats paper defaults: {same}"


def test_config_sections_partition_the_fields_and_read_nested_or_flat():
    """SECTIONS (signal, objects, front end, trunk, heads, CoI, extensions) name every field once, in the
    dataclass's order; a nested mapping and the flat one build the same config; the named YAML files are nested;
    a field under the wrong section is a one-line error."""
    import dataclasses

    from deepasa.model.configs import SECTIONS

    names = [f.name for f in dataclasses.fields(DeepASAConfig)]
    assert [n for section in SECTIONS.values() for n in section] == names
    small = get_config("small")
    assert DeepASAConfig.from_dict(small.to_nested_dict()) == small == DeepASAConfig.from_dict(small.to_dict())
    assert small.section("trunk")["emb_dim"] == 16 and set(small.section("coi")) == set(SECTIONS["coi"])
    assert set(load_yaml(CONFIG_DIR / "small.yaml")) <= set(SECTIONS)  # written by section
    assert DeepASAConfig.from_dict({"trunk": {"emb_dim": 8, "attn_head_dim": 8}, "emb_dim": 16,
                                    "attn_head_dim": 16}).emb_dim == 16  # a flat field overrides the nested one
    with pytest.raises(DeepASAError, match="section 'trunk' has no field.*n_slots"):
        DeepASAConfig.from_dict({"trunk": {"n_slots": 3}})
    with pytest.raises(DeepASAError, match="section 'heads' must be a mapping"):
        DeepASAConfig.from_dict({"heads": 3})
    with pytest.raises(DeepASAError, match="no config section"):
        small.section("nope")


def test_shipped_config_is_the_shipped_models():
    """``get_config("shipped")`` is the architecture of checkpoints/default.pt, and the other committed models of
    the shipped run share it but for the decision rule and the extensions they were trained before."""
    from deepasa.model.deepasa import DEFAULT_CHECKPOINT

    assert DeepASA.from_pretrained(DEFAULT_CHECKPOINT).config == get_config("shipped")
    assert DeepASA.from_pretrained(DEFAULT_CHECKPOINT, config="shipped").config == get_config("shipped")


def test_every_committed_model_loads():
    """Every DeepASA model in checkpoints/ loads (configs stored before issue 38 carry its removed fields), with
    the decision rule its stored config held (the ``detect_*`` keys; the defaults those fields had where absent)."""
    from deepasa.model import DecisionRule
    from deepasa.model.configs import REMOVED_FIELDS
    from deepasa.model.deepasa import DEFAULT_CHECKPOINT, read_checkpoint

    folder = DEFAULT_CHECKPOINT.parent
    names = ["default.pt", "net1.pt", "shipped_latest.pt", "shipped_run3.pt", "shipped_resume.ckpt"]
    carried = set()
    rules = {}
    for name in names:
        ckpt = read_checkpoint(folder / name)
        stored = ckpt.get("config") or ckpt["deepasa_model"]
        carried |= set(stored) & set(REMOVED_FIELDS)
        model = DeepASA.from_pretrained(folder / name)
        assert model.config.n_classes == 10
        held = {k[len("detect_"):]: v for k, v in stored.items() if k.startswith("detect_")}
        assert model.decision_rule == DecisionRule(**held), name
        rules[name] = model.decision_rule
    assert carried == set(REMOVED_FIELDS)  # written before the removal: the upgrade is exercised for each field
    shipped = DecisionRule(onoff=0.8, doa_norm=0.15, merge_deg=0.0)  # checkpoints/README.md: the shipped rule
    assert rules["default.pt"] == rules["shipped_latest.pt"] == rules["shipped_resume.ckpt"] == shipped
    assert rules["net1.pt"] == rules["shipped_run3.pt"] == DecisionRule()      # no detect_ key: the old defaults
    assert DeepASA.from_pretrained().decision_rule == shipped


def test_removed_config_fields_load_only_when_off():
    from deepasa.model.configs import REMOVED_FIELDS

    base = get_config("tiny").to_dict()
    for name, off in REMOVED_FIELDS.items():
        assert DeepASAConfig.from_dict({**base, name: off}) == get_config("tiny")
        on = (not off) if isinstance(off, bool) else off + 1
        with pytest.raises(DeepASAError, match=f"{name}.*removed"):
            DeepASAConfig.from_dict({**base, name: on})
    with pytest.raises(DeepASAError, match="gcc_image.*removed"):
        DeepASAConfig.from_dict({**base, "doa_spatial": "gcc_image"})


def test_config_errors(tmp_path):
    with pytest.raises(DeepASAError, match="unknown model config key.*emb_dimm"):
        get_config("paper", emb_dimm=3)
    bad = tmp_path / "bad.yaml"
    bad.write_text("emb_dim: 32\nbogus_key: 1\n")
    with pytest.raises(DeepASAError, match="bogus_key"):
        get_config(str(bad))
    with pytest.raises(DeepASAError, match="unknown model config 'nope'"):
        get_config("nope")
    with pytest.raises(DeepASAError, match="time_ffn"):
        get_config("tiny", time_ffn="lstm")
    with pytest.raises(DeepASAError, match="chain-of-inference needs"):
        get_config("uss", coi_steps=1)


@pytest.mark.parametrize("override, needle", [
    ({"doa_refine_cone_deg": "abc"}, "doa_refine_cone_deg must be a number, got 'abc'"),
    ({"n_slots": 2.5}, "n_slots must be an integer, got 2.5"),
    ({"n_slots": True}, "n_slots must be an integer, got True"),
    ({"reverb_head": 1}, "reverb_head must be true or false, got 1"),
    ({"doa_refine": 3}, "doa_refine must be a string, got 3"),
    ({"attn_head_dim": "wide"}, "attn_head_dim must be an integer"),
])
def test_config_field_types_are_checked(override, needle):
    with pytest.raises(DeepASAError, match=needle):
        get_config("tiny", **override)


def test_config_field_types_accept_what_yaml_and_the_cli_write():
    cfg = get_config("tiny", clip_seconds=2, doa_refine_cone_deg=30, attn_head_dim=None)  # ints for float fields
    assert cfg.clip_seconds == 2 and cfg.attn_head_dim == cfg.emb_dim


@pytest.mark.parametrize("setting, needle", [("detect_onoff=abc", "detect_onoff must be a number"),
                                             ("detect_doa_norm=1", "need 0 <= detect_doa_norm < 1"),
                                             ("doa_refine_cone_deg=abc", "doa_refine_cone_deg must be a number")])
def test_cli_export_refuses_a_mistyped_setting(tmp_path, capsys, setting, needle):
    src = tmp_path / "tiny.pt"
    DeepASA("tiny").save(src)
    out = tmp_path / "out.pt"
    assert cli.main(["export", str(src), str(out), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err
    assert not out.exists()


def test_decision_rule_travels_with_the_model_apart_from_its_config(tmp_path):
    """A model file stores its rule in meta["decision_rule"], not in the config; it loads with it, and a rule
    given at load time replaces it (a mapping: only the fields it names)."""
    from deepasa.model import DecisionRule
    from deepasa.model.loading import load_model

    rule = DecisionRule(onoff=0.7, doa_norm=0.2, merge_deg=15.0)
    path = DeepASA("tiny", decision_rule=rule).save(tmp_path / "m.pt")
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["meta"]["decision_rule"] == rule.to_dict()
    assert not any(k.startswith("detect_") for k in ckpt["config"])
    assert DeepASA.from_pretrained(path).decision_rule == rule
    assert load_model(path, decision_rule={"doa_norm": 0.0}).decision_rule == rule.replace(doa_norm=0.0)
    assert DeepASA.from_pretrained(path, decision_rule=DecisionRule()).decision_rule == DecisionRule()
    assert load_model(path, detect_onoff=0.9).decision_rule == rule.replace(onoff=0.9)   # the old names
    with pytest.raises(DeepASAError, match="unknown decision rule key"):
        load_model(path, decision_rule={"threshold": 0.5})


def test_cli_export_sets_the_rule_under_its_old_names(tmp_path, capsys):
    from deepasa.model import DecisionRule

    src = DeepASA("tiny", decision_rule=DecisionRule(onoff=0.8, doa_norm=0.15)).save(tmp_path / "tiny.pt")
    out = tmp_path / "out.pt"
    assert cli.main(["export", str(src), str(out), "--set", "detect_doa_norm=0",
                     "--set", "doa_refine_cone_deg=20"]) == 0
    model = DeepASA.from_pretrained(out)
    assert model.decision_rule == DecisionRule(onoff=0.8, doa_norm=0.0)      # the stored onoff kept
    assert model.config == get_config("tiny", doa_refine_cone_deg=20.0)


def _old_style(cfg: DeepASAConfig, **detect) -> dict:
    """A stored config as written before the rule left it: the config's fields plus ``detect_*`` keys."""
    return {**cfg.to_dict(), **detect}


def test_old_files_load_with_the_rule_their_config_held(tmp_path):
    """Model files and Lightning checkpoints written before the split hold the rule as config keys: read into
    the rule (missing keys: the defaults the config fields had); the config itself refuses them (one line)."""
    from deepasa.model import DecisionRule

    model = DeepASA("tiny")
    new = model.serialize()
    old = {**new, "config": _old_style(model.config, detect_onoff=0.8, detect_doa_norm=0.15),
           "meta": {"class_names": None, "audio_format": "mic"}}
    torch.save(old, tmp_path / "old.pt")
    loaded = DeepASA.from_pretrained(tmp_path / "old.pt")
    assert loaded.config == model.config and loaded.decision_rule == DecisionRule(onoff=0.8, doa_norm=0.15)
    assert DeepASA.from_pretrained(tmp_path / "old.pt", config="tiny").config == model.config
    lightning = {"state_dict": {f"model.{k}": v for k, v in new["state_dict"].items()},
                 "deepasa_model": _old_style(model.config, detect_merge_deg=20.0)}
    torch.save(lightning, tmp_path / "old.ckpt")
    assert DeepASA.from_pretrained(tmp_path / "old.ckpt").decision_rule == DecisionRule(merge_deg=20.0)
    torch.save({**lightning, "deepasa_model": model.config.to_dict(), "deepasa_decision": {"onoff": 0.6}},
               tmp_path / "new.ckpt")                                          # DeepASAModule.on_save_checkpoint
    assert DeepASA.from_pretrained(tmp_path / "new.ckpt").decision_rule == DecisionRule(onoff=0.6)
    with pytest.raises(DeepASAError, match="detect_onoff, detect_doa_norm: .*DecisionRule"):
        DeepASAConfig.from_dict(old["config"])


class MeanFrameEncoder(nn.Module):
    """A test encoder honouring the PretrainedEncoder protocol: mean over frequency, pooled to n_frames."""

    def __init__(self, cfg, out_dim=6):
        super().__init__()
        self.out_dim = out_dim
        self.proj = nn.Linear(cfg.emb_dim, out_dim)

    def forward(self, obj, n_frames):  # (N, D, F, T) -> (N, n_frames, out_dim)
        pooled = nn.functional.adaptive_avg_pool1d(obj.mean(2), n_frames)  # (N, D, n_frames)
        return self.proj(pooled.transpose(1, 2))


def test_pluggable_frozen_encoder(tmp_path):
    cfg = get_config("tiny", coi_steps=1, pretrained_encoder=f"{__name__}:MeanFrameEncoder",
                     pretrained_encoder_kwargs={"out_dim": 6})
    model = DeepASA(cfg).train()
    enc = model.seld.classnet.pretrained.encoder
    assert isinstance(enc, PretrainedEncoder) and not enc.training
    assert model.coi[0].heads.classnet.pretrained.encoder is not enc  # Net 2 has its own copy, as released
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {n for n in frozen if ".pretrained.encoder." in n} and all(
        ".pretrained.encoder." in n or n.startswith("stft.") for n in frozen)
    out = model(torch.randn(1, 4, 8000))
    sum(v.float().pow(2).mean() for v in out.tensors().values()).backward()
    assert model.seld.classnet.pretrained_proj.weight.grad is not None and enc.proj.weight.grad is None
    model.eval()
    path = model.save(tmp_path / "enc.pt")
    x = torch.randn(1, 4, 8000)
    with torch.no_grad():
        torch.testing.assert_close(DeepASA.from_pretrained(path).eval()(x).doa, model(x).doa)
    with pytest.raises(DeepASAError, match="cannot import pretrained encoder"):
        DeepASA(get_config("tiny", pretrained_encoder="no_such_module:factory"))


def test_cli_complexity_json_and_errors(capsys):
    assert cli.main(["complexity", "--config", "tiny", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trainable_params"] == sum(p.numel() for p in DeepASA("tiny").parameters() if p.requires_grad)
    assert data["frozen_params"] == 1306 and data["gmacs_per_second"] > 0
    assert set(data["modules"]) >= {"frontend", "aggregator", "splitter", "audio", "classnet", "doanet"}
    assert cli.main(["complexity", "--config", "tiny"]) == 0
    assert "aggregator" in capsys.readouterr().out
    assert cli.main(["complexity", "--config", "does-not-exist"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model config" in err
    assert cli.main(["complexity", "--config", "paper-coi", "--seconds", "2"]) == 2


def test_class_names_and_format_travel_with_the_weights(tmp_path):
    model = DeepASA("tiny")
    model.class_names = [f"c{i}" for i in range(model.config.n_classes)]
    model.audio_format = "foa"
    again = DeepASA.from_pretrained(model.save(tmp_path / "m.pt"))
    assert again.class_names == model.class_names and again.audio_format == "foa"
    plain = DeepASA.from_pretrained(DeepASA("tiny").save(tmp_path / "p.pt"))
    assert plain.class_names is None and plain.audio_format == "mic"


def test_default_checkpoint_missing_is_one_clear_error(monkeypatch, tmp_path):
    import deepasa.model.deepasa as mod

    monkeypatch.setattr(mod, "DEFAULT_CHECKPOINT", tmp_path / "default.pt")
    with pytest.raises(DeepASAError, match="shipped model is not installed"):
        DeepASA.from_pretrained()
