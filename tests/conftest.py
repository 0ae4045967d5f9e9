"""Shared fixtures: a tiny sound bank in a temporary $DEEPASA_HOME (real taxonomy names, synthetic clips)."""

import csv

import numpy as np
import pytest
import soundfile as sf


@pytest.fixture(scope="session")
def tiny_bank_home(tmp_path_factory):
    """A fetched-looking bank: 3 classes × (train 3, val 1, test 2) clips of coloured noise bursts, 16 kHz."""
    from deepasa.scenes.soundbank import INDEX_FIELDS, class_names

    home = tmp_path_factory.mktemp("deepasa_home")
    rng = np.random.default_rng(0)
    rows = []
    for label in class_names()[:3]:
        for split, count in (("train", 3), ("val", 1), ("test", 2)):
            for i in range(count):
                clip_id = f"fake-{label}-{split}-{i}"
                rel = f"bank/{split}/{label}/{clip_id}.flac"
                x = rng.standard_normal(int(16000 * rng.uniform(1.0, 3.0))) * 0.1
                (home / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(home / rel, x, 16000, subtype="PCM_16")
                rows.append({"clip_id": clip_id, "label": label, "split": split, "path": rel,
                             "duration": f"{len(x) / 16000:.4f}", "package": "test", "licence": "CC0",
                             "source": "test", "member": "", "group": f"{label}-{split}-{i}"})
    with open(home / "bank" / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=INDEX_FIELDS)
        w.writeheader()
        w.writerows(rows)
    return home
