"""Issue 38, build item 4: ``DeepASA.forward`` was rewritten to read in the order of docs/spec.md §3.8 (front end →
trunk → splitter → audio heads → SELD heads → CoI steps), every extension reading the objects' audio heads through
explicit arguments instead of a shared cache. The network must compute exactly what it computed before.

tests/test_issue_16_bit_identity.py and tests/test_issue_38_bit_identity.py pin ``paper``, ``paper-coi``, ``small``,
``tiny`` (with CoI and the GCC features) and the shipped model's default forward. This file pins the paths they
leave out: the shipped model with ``net1_audio`` both ways and without the SRP refinement, and ``tiny`` with mask
audio + ``gcc_mixture`` + one CoI step + Net-1 audio, and with every extension (mask audio, ``gcc_mixture``, the
aisfx embedding, the SRP refinement) over two CoI steps + Net-1 audio. The numbers were produced by the code
*before* that rewrite (the cache-based forward) on fixed seeds, with the tolerance scheme of
tests/test_issue_16_bit_identity.py (1e-5 relative; for a signed sum, 1e-5 of its absolute sum; 1e-6 absolute
for one element: another CPU's kernels and summation order).

Each case also pins how many times the audio heads (and the extensions) run: the rewrite passes the heads'
outputs along instead of caching them, and must not run them more often than the cache did.
"""

from __future__ import annotations

import pytest
import torch

from deepasa.model import DeepASA, get_config
from deepasa.model.deepasa import DEFAULT_CHECKPOINT
from tests.bit_identity import assert_outputs_match, count_calls
from tests.test_issue_38_bit_identity import OUT

SHIPPED_OUT = OUT  # the shipped model's default forward, pinned by tests/test_issue_38_bit_identity.py

REFERENCE = {
    # the shipped model has no CoI step: net1_audio changes nothing, the default forward refines the DoA (eval)
    'shipped': {
        "calls": {'direct': 1, 'reverb': 1, 'noise': 1, 'gcc': 1, 'srp': 1, 'sfx': 1},
        "out": SHIPPED_OUT,
    },
    'shipped-net1-audio': {
        "calls": {'direct': 1, 'reverb': 1, 'noise': 1, 'gcc': 1, 'srp': 1, 'sfx': 1},
        "out": SHIPPED_OUT,
    },
    'shipped-no-refine': {
        "calls": {'direct': 1, 'reverb': 1, 'noise': 1, 'gcc': 1, 'srp': 0, 'sfx': 1},
        "out": SHIPPED_OUT | {'doa': [2.00341198212, 5.44753458441, 0.0215928666294]},
    },
    'tiny-mask-gcc-coi1-net1': {
        "calls": {'direct': 2, 'reverb': 2, 'noise': 1, 'gcc': 2, 'srp': 0},
        "out": {
            'cls_logits': [7.24679921567, 24.2004487365, -0.243253275752],
            'direct': [51.812444541, 60544.4539236, 0.435141712427],
            'doa': [-23.7861236855, 48.9699973986, -0.239914506674],
            'image': [171.922355596, 85632.884097, 0.388558983803],
            'net1.cls_logits': [6.41898249835, 14.9040416107, -0.00224831700325],
            'net1.direct': [212.101683841, 63824.2380257, -0.663888275623],
            'net1.doa': [2.20447061872, 6.83437849241, 0.0333672389388],
            'net1.image': [592.474809274, 88376.1161516, -1.24448943138],
            'net1.noise': [-450.629704645, 30028.679081, 1.46907830238],
            'net1.onoff': [-2.58490671217, 2.59362913668, -0.0348778963089],
            'net1.reverb': [380.373141961, 63813.1299095, -0.580601096153],
            'net1.sed': [50.0000003427, 50.0000003427, 0.0725583061576],
            'noise': [-450.629704645, 30028.679081, 1.46907830238],
            'onoff': [15.2269226462, 15.2269226462, 0.329500079155],
            'reverb': [120.109904282, 59333.9131193, -0.0465827248991],
            'sed': [99.9999998882, 99.9999998882, 0.134500801563],
        },
    },
    # Net 1's heads run once and serve its GCC features, its embedding, its refined DoA and its audio; each CoI
    # step's heads serve that step's features and embedding, the last step's also the output audio and DoA
    'tiny-all-coi2-net1': {
        "calls": {'direct': 3, 'reverb': 3, 'noise': 1, 'gcc': 3, 'srp': 2, 'sfx': 3},
        "out": {
            'cls_logits': [4.02257797122, 19.1336896569, 0.58779335022],
            'direct': [357.7567721, 62379.0199794, -1.64104318619],
            'doa': [-16.3639807627, 38.9213054245, 0.0765265822411],
            'image': [650.418435105, 88893.3711983, -1.26843488216],
            'net1.cls_logits': [6.41898249835, 14.9040416107, -0.00224831700325],
            'net1.direct': [212.101683841, 63824.2380257, -0.663888275623],
            'net1.doa': [-17.1704915878, 33.1877334826, 0.0726681649685],
            'net1.image': [592.474809274, 88376.1161516, -1.24448943138],
            'net1.noise': [-450.629704645, 30028.679081, 1.46907830238],
            'net1.onoff': [-2.58490671217, 2.59362913668, -0.0348778963089],
            'net1.reverb': [380.373141961, 63813.1299095, -0.580601096153],
            'net1.sed': [50.0000003427, 50.0000003427, 0.0725583061576],
            'noise': [-450.629704645, 30028.679081, 1.46907830238],
            'onoff': [12.5470155925, 12.5470155925, 0.258414208889],
            'reverb': [292.661667039, 66135.7525643, 0.372608304024],
            'sed': [150.000000358, 150.000000358, 0.179107248783],
        },
    },
}

TINY_EXTENSIONS = {
    'tiny-mask-gcc-coi1-net1': {"audio_output": "mask", "doa_spatial": "gcc_mixture", "coi_steps": 1},
    'tiny-all-coi2-net1': {"audio_output": "mask", "doa_spatial": "gcc_mixture", "coi_steps": 2,
                           "cls_embedding": "aisfx", "doa_refine": "srp"},
}

FORWARD_KWARGS = {
    'shipped': {},
    'shipped-net1-audio': {"net1_audio": True},
    'shipped-no-refine': {"refine_doa": False},
    'tiny-mask-gcc-coi1-net1': {"net1_audio": True},
    'tiny-all-coi2-net1': {"net1_audio": True},
}


def _model_and_input(name: str) -> tuple[DeepASA, torch.Tensor]:
    if name.startswith("shipped"):
        model = DeepASA.from_pretrained(DEFAULT_CHECKPOINT, config="shipped").eval()
        cfg = model.config
        x = 0.1 * torch.randn(1, cfg.n_mics, cfg.clip_samples, generator=torch.Generator().manual_seed(1))  # (1, M, N)
        return model, x
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", **TINY_EXTENSIONS[name])).eval()
    x = torch.randn(1, 4, model.config.clip_samples, generator=torch.Generator().manual_seed(1))  # (1, M, N)
    return model, x


@pytest.mark.parametrize("name", list(REFERENCE))
def test_forward_paths_compute_what_they_computed_before_the_rewrite(name, request):
    torch.set_num_threads(1)
    if name == "shipped":  # the default forward, which tests/test_issue_38_bit_identity.py runs too: once for both
        shipped = request.getfixturevalue("shipped_default_forward")
        calls, out = shipped.calls, shipped.out
    else:
        model, x = _model_and_input(name)
        calls = count_calls(model)
        with torch.no_grad():
            out = model(x, **FORWARD_KWARGS[name]).tensors()
    ref = REFERENCE[name]
    assert calls == ref["calls"]
    assert_outputs_match(out, ref["out"], name)


def test_net1_audio_only_adds_net1_waveforms():
    """With the GCC features Net 1's heads run anyway: asking for Net 1's audio decodes them into waveforms,
    runs no head again and changes no other output."""
    torch.set_num_threads(1)
    model, x = _model_and_input('tiny-mask-gcc-coi1-net1')
    calls = count_calls(model)
    with torch.no_grad():
        without = model(x).tensors()
        assert calls["direct"] == 2
        with_audio = model(x, net1_audio=True).tensors()
    assert calls["direct"] == 4
    assert set(with_audio) - set(without) == {"net1.direct", "net1.reverb", "net1.image"}
    assert all(torch.equal(without[k], with_audio[k]) for k in without)
