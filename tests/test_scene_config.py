"""Scene configuration: YAML + overrides, validation, and the committed defaults file."""

from pathlib import Path

import pytest

from deepasa.errors import DeepASAError
from deepasa.scenes.config import SceneConfig

ROOT = Path(__file__).resolve().parents[1]


def test_committed_yaml_is_the_default_recipe():
    cfg = SceneConfig.from_sources(ROOT / "configs" / "data" / "scenes.yaml")
    assert cfg == SceneConfig()
    # the ASA recipe, docs/spec.md §7.1
    assert (cfg.sample_rate, cfg.duration, cfg.num_sources, cfg.num_sources_weights) == \
        (16000, 4.0, (2, 3, 4, 5), (0.1, 0.2, 0.3, 0.4))
    assert (cfg.moving_prob, cfg.room_xy, cfg.room_z, cfg.rt60, cfg.snr_db) == \
        (0.75, (5.0, 8.0), (3.0, 4.0), (0.2, 0.6), (6.0, 30.0))


def test_overrides_parse_ranges_and_lists(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("rt60: [0.3, 0.9]\nmoving_prob: 0.5\n")
    cfg = SceneConfig.from_sources(y, ["snr_db=10,20", "num_sources=[1,2]", "num_sources_weights=[3,1]"])
    assert cfg.rt60 == (0.3, 0.9) and cfg.moving_prob == 0.5 and cfg.snr_db == (10, 20)
    assert cfg.num_sources == (1, 2) and cfg.n_frames == 40 and cfg.n_samples == 64000


@pytest.mark.parametrize("override,needle", [
    ("rt60=0.9,0.3", "min 0.9 > max 0.3"), ("room_xy=[5]", "pair"), ("bogus=1", "unknown scene parameter"),
    ("moving_prob=1.5", "moving_prob"), ("num_sources=[2,3]", "same, non-zero length"), ("peak=0.5,1.5", "peak"),
])
def test_invalid_configs_are_refused(override, needle):
    with pytest.raises(DeepASAError, match=needle):
        SceneConfig.from_sources(None, [override])


def test_missing_yaml_is_refused(tmp_path):
    with pytest.raises(DeepASAError, match="no such config file"):
        SceneConfig.from_sources(tmp_path / "nope.yaml")
