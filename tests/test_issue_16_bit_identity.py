"""Issue 16: the heads, the CoI and ``DeepASA.forward`` were rewritten to read like docs/spec.md §3.5–§3.7; the network
must compute exactly what it computed before, for the same weights.

The numbers below were produced by the code *before* that rewrite (commit ead2782) on fixed seeds: the
parameter count, a digest of the state-dict keys and shapes (what checkpoints load against), and for every
output tensor its sum, absolute sum and one element. ``paper`` runs on a 0.25-s input (its decoders then use
the adaptive time pools), ``paper-coi`` runs its CoI step on a random Z and random Net-1 outputs (a full 4-s
``paper-coi`` forward takes minutes on CPU), ``tiny-coi`` variants run the whole network with one and two
CoI steps. The tolerance (1e-5 relative; for a signed sum, 1e-5 of its absolute sum; 1e-6 absolute for one
element) only absorbs a different CPU's kernels and summation order (an AVX-512 Xeon differs from the AVX2 EPYC
that wrote them by up to 5e-6 relative on one element); on the machine that wrote them the values agree to
the printed digits.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from deepasa.model import DeepASA, get_config
from tests.bit_identity import assert_outputs_match

REFERENCE = {
    'tiny': {
        "n_params": 22216,
        "keys": '4aec21f80df2abffc919923d5c0231ee58652cd9',
        "out": {
            'cls_logits': [6.4189821258, 14.9040420726, -0.002248376608],
            'direct': [-51.9335890121, 9712.0549372615, -0.057490237057],
            'doa': [-23.9539459134, 35.2728509745, -0.330436706543],
            'image': [-72.7708303128, 13326.9678739027, -0.01119389385],
            'noise': [29.8805514563, 6251.1392890925, -0.451689690351],
            'onoff': [-2.5849066898, 2.5936292335, -0.034877829254],
            'reverb': [-20.8372440522, 9462.410143794, 0.046296343207],
            'sed': [50.0000000224, 50.0000000224, 0.072558306158],
        },
    },
    'small': {
        "n_params": 225725,
        "keys": '0b6ad659af4dd1f33b82a3b364ec1ac9fd245490',
        "out": {
            'cls_logits': [-2.8538268022, 7.7085422836, 0.163932874799],
            'direct': [-21.9693507006, 39732.4089921072, 0.062719501555],
            'doa': [-12.8361420007, 82.5623502461, 0.09219712019],
            'image': [-54.2178509264, 57031.6746514874, 0.135424897075],
            'noise': [50.7165313985, 41859.2253034542, 0.169514402747],
            'onoff': [-27.677022621, 27.677022621, -0.143793284893],
            'reverb': [-32.2485018545, 38422.0664625655, 0.07270539552],
            'sed': [199.9999992326, 199.9999992326, 0.08978163451],
        },
    },
    'paper': {
        "n_params": 5107224,
        "keys": '191ec4ac472c827c407d1e1f09c7f44c1a942c21',
        "out": {
            'cls_logits': [1.0106284209, 8.797279235, -0.182437941432],
            'direct': [-4.4708261626, 2350.6577479565, -0.003390954109],
            'doa': [1.3920782451, 1.9284975883, -0.029223136604],
            'image': [5.7013930081, 3306.1230611023, 0.003104218049],
            'noise': [-52.445485781, 6701.2081877475, -0.336466670036],
            'onoff': [1.1816300042, 1.1816300042, 0.049692206085],
            'reverb': [10.1722189503, 2402.1468032725, 0.006495172158],
            'sed': [14.9999996498, 14.9999996498, 0.073315583169],
        },
    },
    'paper-coi': {
        "n_params": 8160358,
        "keys": '3860e248cbba7aa92552248e22ca09ea0a6dd654',
        "out": {
            'cls_logits': [-0.215946055, 55.5008586133, 0.848949193954],
            'doa': [-0.3347983006, 450.6847624462, -1.064261198044],
            'objects': [-0.0597536653, 16406784.77615989, -1.377861022949],
            'onoff': [50.5927480459, 156.6667715311, 0.239727303386],
            'sed': [1492.0963080935, 1492.0963080935, 0.237511947751],
            'sed_logits': [-148.0878913417, 2095.6568381921, 0.575813531876],
        },
    },
    'tiny-coi': {
        "n_params": 40010,
        "out": {
            'cls_logits': [9.5182117, 22.7156376466, 0.035604082048],
            'direct': [-56.6624335805, 10311.9393133441, 0.058617413044],
            'doa': [-27.9438267797, 28.9218720049, -0.343437701464],
            'image': [-73.9240066624, 13460.7460531728, 0.017931036651],
            'net1.cls_logits': [6.4189821258, 14.9040420726, -0.002248376608],
            'net1.direct': [-51.9335890121, 9712.0549372615, -0.057490237057],
            'net1.doa': [-23.9539459134, 35.2728509745, -0.330436706543],
            'net1.image': [-72.7708303128, 13326.9678739027, -0.01119389385],
            'net1.noise': [29.8805514563, 6251.1392890925, -0.451689690351],
            'net1.onoff': [-2.5849066898, 2.5936292335, -0.034877829254],
            'net1.reverb': [-20.8372440522, 9462.410143794, 0.046296343207],
            'net1.sed': [50.0000000224, 50.0000000224, 0.072558306158],
            'noise': [29.8805514563, 6251.1392890925, -0.451689690351],
            'onoff': [11.9657430127, 11.9657430127, 0.280459672213],
            'reverb': [-17.2615741305, 9534.7866674124, -0.040686376393],
            'sed': [99.9999999106, 99.9999999106, 0.137917369604],
        },
    },
    'tiny-coi-logits': {
        "n_params": 67404,
        "out": {
            'cls_logits': [6.4189821258, 14.9040420726, -0.002248376608],
            'direct': [-51.9335890121, 9712.0549372615, -0.057490237057],
            # doa / net1.doa: this variant read doa_spatial "gcc_image" until issue 38 removed that unused value; it
            # now reads "gcc_mixture", whose values here were computed by the code before that removal (commit
            # 79aaedd) — the "gcc_image" values were [2.2906304098, 6.6472353999, 0.034091398120].
            'doa': [2.3467393507, 6.56379472034, 0.0330882817507],
            'image': [-72.7708303128, 13326.9678739027, -0.01119389385],
            'net1.cls_logits': [6.4189821258, 14.9040420726, -0.002248376608],
            'net1.direct': [-51.9335890121, 9712.0549372615, -0.057490237057],
            'net1.doa': [2.3467393507, 6.56379472034, 0.0330882817507],
            'net1.image': [-72.7708303128, 13326.9678739027, -0.01119389385],
            'net1.noise': [29.8805514563, 6251.1392890925, -0.451689690351],
            'net1.onoff': [-2.5849066898, 2.5936292335, -0.034877829254],
            'net1.reverb': [-20.8372440522, 9462.410143794, 0.046296343207],
            'net1.sed': [50.0000000224, 50.0000000224, 0.072558306158],
            'noise': [29.8805514563, 6251.1392890925, -0.451689690351],
            'onoff': [-2.5849066898, 2.5936292335, -0.034877829254],
            'reverb': [-20.8372440522, 9462.410143794, 0.046296343207],
            'sed': [50.0000000224, 50.0000000224, 0.072558306158],
        },
    },
}

CONFIGS = {
    "tiny": ("tiny", {}),
    "small": ("small", {}),
    "paper": ("paper", {}),
    "paper-coi": ("paper-coi", {}),
    "tiny-coi": ("tiny", {"coi_steps": 1}),
    "tiny-coi-logits": ("tiny", {"coi_steps": 2, "coi_sed_sum": "logits", "coi_init": "identity",
                                 "doa_spatial": "gcc_mixture"}),
}


def _keys_digest(model: torch.nn.Module) -> str:
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    return hashlib.sha1(text.encode()).hexdigest()


def _outputs(name: str, model: DeepASA) -> dict[str, torch.Tensor]:
    cfg = model.config
    with torch.no_grad():
        if name == "paper":
            x = torch.randn(1, cfg.n_mics, 4000, generator=torch.Generator().manual_seed(1))  # (1, M, N)
            return model(x).tensors()
        if name == "paper-coi":
            g = torch.Generator().manual_seed(1)
            z = torch.randn(1, cfg.emb_dim, cfg.n_frames, cfg.n_freqs, generator=g)  # (1, D, T, F)
            j, c, t = cfg.n_slots, cfg.n_classes, cfg.n_label_frames
            prev = {"cls_logits": torch.randn(1, j, c, generator=g), "sed": torch.rand(1, j, t, c, generator=g),
                    "onoff": torch.randn(1, j, t, generator=g), "doa": torch.randn(1, j, t, 3, generator=g),
                    "sed_logits": torch.randn(1, j, t, c, generator=g)}
            obj, out = model.coi[0](z, prev)
            return dict(out, objects=obj)
        x = torch.randn(1, cfg.n_mics, cfg.clip_samples, generator=torch.Generator().manual_seed(1))  # (1, M, N)
        return model(x, net1_audio=True).tensors() if cfg.coi_steps else model(x).tensors()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_parameters_and_outputs_as_before_the_rewrite(name):
    torch.set_num_threads(1)
    base, overrides = CONFIGS[name]
    torch.manual_seed(0)
    model = DeepASA(get_config(base, **overrides)).eval()
    ref = REFERENCE[name]
    assert sum(p.numel() for p in model.parameters()) == ref["n_params"]
    if "keys" in ref:
        assert _keys_digest(model) == ref["keys"]
    assert_outputs_match(_outputs(name, model), ref["out"], name)  # tolerance: tests/bit_identity.py


# ---------------------------------------------------------------------------------------------- old checkpoints
class _MeanFrameEncoder(torch.nn.Module):
    """A tiny stand-in for a pretrained branch: mean over frequency, pooled to the label frames."""

    def __init__(self, cfg, out_dim: int = 6) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.proj = torch.nn.Linear(cfg.emb_dim, out_dim)

    def forward(self, obj, n_frames):  # (N, D, F, T) -> (N, n_frames, out_dim)
        pooled = torch.nn.functional.adaptive_avg_pool1d(obj.mean(2), n_frames)  # (N, D, n_frames)
        return self.proj(pooled.transpose(1, 2))


def _old_names(state: dict) -> dict:
    """The state-dict names before issue 16: ClassNet's pretrained branch was ``encoder`` / ``enc_proj``."""
    return {k.replace("classnet.pretrained.", "classnet.encoder.").replace("classnet.pretrained_proj.",
                                                                            "classnet.enc_proj."): v
            for k, v in state.items()}


def test_old_config_dicts_load_with_their_sentinels():
    from deepasa.model import DeepASAConfig

    old = get_config("paper").to_dict() | {"attn_head_dim": 0, "head_channels": 0}
    cfg = DeepASAConfig.from_dict(old)
    assert cfg == get_config("paper") and (cfg.attn_head_dim, cfg.head_channels) == (64, 64)
    assert DeepASAConfig.from_dict(get_config("small").to_dict()).head_channels == 16


def test_old_state_dict_names_load_in_every_path(tmp_path):
    from deepasa.train.module import DeepASAModule, load_model_weights

    cfg = get_config("tiny", coi_steps=1, pretrained_encoder=f"{__name__}:_MeanFrameEncoder")
    torch.manual_seed(0)
    model = DeepASA(cfg).eval()
    old_state = _old_names(model.state_dict())
    assert any(".classnet.encoder." in k for k in old_state) and any(".classnet.enc_proj." in k for k in old_state)
    # a model file written before the rename, with the old config sentinels
    ckpt = model.serialize() | {"state_dict": old_state,
                                "config": cfg.to_dict() | {"attn_head_dim": 0, "head_channels": 0}}
    old_file = tmp_path / "old.pt"
    torch.save(ckpt, old_file)
    x = torch.randn(1, 4, cfg.clip_samples, generator=torch.Generator().manual_seed(2))  # (1, M, N)
    with torch.no_grad():
        want = model(x).tensors()
        got = DeepASA.from_pretrained(old_file).eval()(x).tensors()  # DeepASA.from_pretrained
    assert all(torch.equal(got[k], want[k]) for k in want)
    # a Lightning checkpoint (resume, export, evaluate, init_from all read it through load_model_weights)
    lightning = tmp_path / "old.ckpt"
    torch.save({"deepasa_model": cfg.to_dict(), "state_dict": {f"model.{k}": v for k, v in old_state.items()}},
               lightning)
    _, state = load_model_weights(lightning)
    assert set(state) == set(model.state_dict())
    overrides = {"coi_steps": 1, "pretrained_encoder": cfg.pretrained_encoder}
    module = DeepASAModule(model="tiny", model_overrides=overrides, init_from=str(lightning))
    assert module.init_report["copied"] == len(model.state_dict())
    # Lightning's resume loads the module's state dict directly
    fresh = DeepASAModule(model="tiny", model_overrides=overrides)
    fresh.load_state_dict({f"model.{k}": v for k, v in old_state.items()}, strict=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in fresh.model.state_dict().items())
