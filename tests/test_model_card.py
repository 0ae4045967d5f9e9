"""The shipped model files and their card (checkpoints/README.md) agree with each other.

Independent truth: the card's metrics table is regenerated from the `deepasa evaluate` reports beside it; the
parameter counts and MACs it states are recounted from the model files; the class list is read from the weights.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CKPT = REPO / "checkpoints"


def test_card_table_matches_the_evaluate_reports():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "model_card.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("default.json", "default_1-2.json", "previous_default.json", "net1.json"):
        report = json.loads((CKPT / "eval" / name).read_text())
        assert report["n_items"] == 200 and report["split"] == "test"
        model = "net1.pt" if name == "net1.json" else "default.pt"        # previous_default.json: the old default.pt
        assert Path(report["checkpoint"]).name == model


def test_shipped_files_are_what_the_card_says():
    from deepasa.baselines.seldnet import SELDnetBaseline
    from deepasa.model import DecisionRule, DeepASA, get_config
    from deepasa.model.complexity import measure

    card = (CKPT / "README.md").read_text()
    model = DeepASA.from_pretrained()                                   # no path: checkpoints/default.pt
    assert (CKPT / "default.pt").stat().st_size <= 25 * 2**20
    recipe = yaml.safe_load((REPO / "configs" / "train" / "sim_small_shipped.yaml").read_text())["model"]
    assert model.config == get_config(recipe["model"], **recipe["model_overrides"])   # the shipped recipe's model
    assert model.decision_rule == DecisionRule.from_dict(recipe["decision_rule"])     # ... and its decision rule
    assert model.audio_format == "mic" and model.sample_rate == 16000
    assert model.class_names and all(name in card for name in model.class_names)
    for cfg, file in ((model.config, "default.pt"), (get_config("small"), "net1.pt")):
        c = measure(cfg)
        row = next(line for line in card.splitlines() if line.startswith(f"| `{file}`"))
        assert f"{c.trainable_params:,}" in row and f"{c.gmacs_per_second:.2f}" in row, row
    net1 = DeepASA.from_pretrained(CKPT / "net1.pt")
    assert net1.config == get_config("small") and net1.class_names == model.class_names
    sn = SELDnetBaseline.load(CKPT / "seldnet.pt")
    row = next(line for line in card.splitlines() if line.startswith("| `seldnet.pt`"))
    assert f"{sum(p.numel() for p in sn.model.parameters()):,}" in row
    assert sn.class_names == model.class_names
    assert sn.train_info["best_step"] == 2600


@pytest.mark.parametrize("name", ["default.json", "default_1-2.json", "previous_default.json", "net1.json"])
def test_reports_carry_every_block(name):
    report = json.loads((CKPT / "eval" / name).read_text())
    for block in ("separation", "seld", "dcase", "localization", "ca_sdri", "ci95"):
        assert block in report, block
    if not name.startswith(("previous", "net1")):                     # the shipped model's: per N too
        assert report["by_num_sources"] and report["n_items"] == 200, name
