"""The fast training path (deepasa.train.fastpath): the precision it picks per machine, bf16 autocast against
float32, and torch.compile against eager execution."""

import pytest
import torch

from deepasa.train import fastpath

EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_bf16_matrix_units_are_read_from_the_cpu_flags():
    assert not fastpath.cpuinfo_has_bf16(EPYC)
    assert fastpath.cpuinfo_has_bf16(SAPPHIRE)
    assert fastpath.cpuinfo_has_bf16("flags : avx512f avx512_bf16\n")       # AVX-512-BF16 without AMX
    assert not fastpath.cpuinfo_has_bf16("processor : 0\n")                 # no flags line


@pytest.mark.parametrize("units, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_fast_precision_follows_the_hardware(monkeypatch, units, expected):
    monkeypatch.setattr(fastpath, "cpu_bf16_matrix_units", lambda: units)
    precision, why = fastpath.resolve_precision("fast", "cpu")
    assert precision == expected and why.startswith("fast path:")
    assert ("emulated" in why) is (not units)
    # a recipe that names its precision keeps it
    assert fastpath.resolve_precision("32-true", "cpu") == ("32-true", "")
    assert fastpath.resolve_precision("bf16-mixed", "cpu") == ("bf16-mixed", "")


def test_this_machine_picks_a_precision_that_matches_its_flags():
    precision, _ = fastpath.resolve_precision("fast", "cpu")
    assert precision == ("bf16-mixed" if fastpath.cpu_bf16_matrix_units() else "32-true")


def _tiny_batch(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.05 * torch.randn(1, cfg.n_mics, cfg.clip_samples, generator=g)


def test_bf16_forward_matches_float32_within_bf16_tolerance():
    """Each output of the network under bf16 autocast is the float32 output to bf16 accuracy."""
    from deepasa.model import DeepASA, get_config

    torch.manual_seed(0)
    cfg = get_config("tiny", clip_seconds=0.5, doa_spatial="gcc_mixture", doa_spatial_norm=True)
    model = DeepASA(cfg).eval()
    x = _tiny_batch(cfg)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = model(x)
    for key in ("direct", "reverb", "image", "sed", "onoff", "doa", "cls_logits"):
        a, b = getattr(ref, key).float(), getattr(fast, key).float()
        rel = (a - b).norm() / a.norm().clamp_min(1e-12)
        assert rel < 0.05, (key, float(rel))                 # bf16 keeps 8 bits: ~0.4 % per op


@pytest.mark.hardware  # torch.compile needs a C compiler tool chain
def test_compiled_conv_block_equals_eager_forward_and_backward():
    """torch.compile (inductor) of a head block (Conv → GroupNorm → Mish → max-pools) gives the eager outputs
    and gradients to float32 round-off. (A whole head compiles the same way but takes minutes here.)"""
    from deepasa.model.heads import ConvBlock

    ok, why = fastpath.compile_available()
    if not ok:
        pytest.skip(why)
    torch.manual_seed(0)
    eager = ConvBlock(4, 8, pool_f=2, pool_t=5)
    comp = ConvBlock(4, 8, pool_f=2, pool_t=5)
    comp.load_state_dict(eager.state_dict())
    comp.compile(dynamic=False)
    x = torch.randn(3, 4, 33, 50)
    outs = []
    for m in (eager, comp):
        xi = x.clone().requires_grad_(True)
        y = m(xi, 10)                                        # (3, 8, 16, 10)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        outs.append((y.detach(), xi.grad, {k: p.grad for k, p in m.named_parameters()}))
    (ye, xe, ge), (yc, xc, gc) = outs
    assert ye.shape == (3, 8, 16, 10)
    torch.testing.assert_close(yc, ye, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(xc, xe, rtol=1e-3, atol=1e-5)
    for k in ge:
        torch.testing.assert_close(gc[k], ge[k], rtol=1e-3, atol=1e-5)


def test_compile_model_compiles_the_listed_parts_and_keeps_the_weights():
    """compile_model wraps blocks/splitter/heads in place: same state-dict keys, and says what it did."""
    from deepasa.model import DeepASA, get_config

    ok, _ = fastpath.compile_available()
    model = DeepASA(get_config("tiny"))
    keys = list(model.state_dict())
    log = []
    done = fastpath.compile_model(model, log=log.append)
    assert list(model.state_dict()) == keys and len(log) == 1
    if ok:
        assert done == [f"blocks.{i}" for i in range(len(model.blocks))] + ["splitter", "seld"]
        assert "torch.compile of blocks.0" in log[0]
    else:
        assert done == [] and "unavailable" in log[0]
