"""The DeepASA multi-task loss (docs/spec.md §5): components, the shared permutation, and a tiny overfit run."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepasa.losses import (
    Estimates,
    LossWeights,
    Targets,
    apply_permutation,
    class_loss,
    multitask_loss,
    sa_sdr,
    seld_loss,
    seld_losses_per_slot,
    uss_loss,
)

B, J, M, N, T, C = 2, 3, 4, 256, 8, 5


def _targets(seed=0) -> Targets:
    g = torch.Generator().manual_seed(seed)
    direct = torch.randn(B, J, M, N, generator=g)
    reverb = 0.3 * torch.randn(B, J, M, N, generator=g)
    direct[:, -1] = 0.0                                        # last slot empty (zero-padded)
    reverb[:, -1] = 0.0
    noise = 0.05 * torch.randn(B, M, N, generator=g)
    cls = torch.tensor([[1, 3, -1], [0, 4, -1]])
    activity = (torch.rand(B, J, T, generator=g) > 0.3).float()
    activity[:, -1] = 0.0
    doa = F.normalize(torch.randn(B, J, T, 3, generator=g), dim=-1) * activity.unsqueeze(-1)
    return Targets(mixture=(direct + reverb).sum(1) + noise, direct=direct, reverb=reverb, noise=noise,
                   cls=cls, activity=activity, doa=doa)


class ToyASA(nn.Module):
    """A learnable-parameter toy that emits every estimate field (no input dependence)."""

    def __init__(self):
        super().__init__()
        self.direct = nn.Parameter(0.1 * torch.randn(B, J, M, N))
        self.reverb = nn.Parameter(0.1 * torch.randn(B, J, M, N))
        self.noise = nn.Parameter(0.1 * torch.randn(B, M, N))
        self.cls_logits = nn.Parameter(torch.zeros(B, J, C))
        self.sed_logits = nn.Parameter(torch.zeros(B, J, T, C))
        self.onoff = nn.Parameter(torch.zeros(B, J, T))
        self.doa_raw = nn.Parameter(0.1 * torch.randn(B, J, T, 3))

    def forward(self) -> Estimates:
        return Estimates(direct=self.direct, reverb=self.reverb, noise=self.noise, cls_logits=self.cls_logits,
                         sed=self.sed_logits.softmax(-1), onoff=self.onoff, doa=torch.tanh(self.doa_raw))


def test_class_loss_ce_and_kl_to_uniform():
    logits = torch.randn(4, C)
    cls = torch.tensor([2, -1, 0, -1])
    got = class_loss(logits, cls)
    ce = F.cross_entropy(logits, cls.clamp_min(0), reduction="none")
    uniform = torch.full((4, C), 1.0 / C)
    kl = F.kl_div(F.log_softmax(logits, -1), uniform, reduction="none").sum(-1)   # Σ u·(log u − log p)
    torch.testing.assert_close(got, torch.where(cls >= 0, ce, kl))
    # A uniform posterior is a perfect empty slot.
    assert float(class_loss(torch.zeros(1, C), torch.tensor([-1]))) == pytest.approx(0.0, abs=1e-6)


def test_multitask_loss_components_and_master_permutation():
    tgt = _targets()
    shuffle = torch.tensor([[2, 0, 1], [1, 2, 0]])             # estimate slot e holds target slot shuffle[b, e]
    inv = torch.argsort(shuffle, dim=1)
    sed = F.one_hot(tgt.cls.clamp_min(0), C).float()[:, :, None] * tgt.activity[..., None]
    est = Estimates(
        direct=apply_permutation(tgt.direct, shuffle), reverb=apply_permutation(tgt.reverb, shuffle),
        noise=tgt.noise.clone(), cls_logits=apply_permutation(10 * F.one_hot(tgt.cls.clamp_min(0), C).float(), shuffle),
        sed=apply_permutation(sed, shuffle), onoff=apply_permutation(20 * tgt.activity - 10, shuffle),
        doa=apply_permutation(tgt.doa, shuffle))
    out = multitask_loss(est, tgt)
    assert torch.equal(out.perm, inv)                          # π* undoes the shuffle
    assert set(out.components) == {"image_ref", "direct_ref", "reverb_ref", "nonref", "noise", "cls", "sed",
                                   "doa", "cos", "onoff"}
    assert out.components["image_ref"] < -60                   # perfect audio: −SA-SDR very negative
    assert out.components["sed"] < 1e-9 and out.components["doa"] < 1e-9
    assert torch.isfinite(out.total)


def test_issue_nonref_channels_exclude_the_reference():
    """The released code summed channels {0, 1, 2} (off by one); ours uses {1, 2, 3} for ref 0."""
    tgt = _targets(1)
    est = ToyASA()()
    base = multitask_loss(est, tgt).components["nonref"]
    bumped_ref = Estimates(**{**est.__dict__, "direct": est.direct + torch.eye(M)[0][None, None, :, None]})
    assert torch.equal(multitask_loss(bumped_ref, tgt).components["nonref"], base)
    bumped_last = Estimates(**{**est.__dict__, "direct": est.direct + torch.eye(M)[M - 1][None, None, :, None]})
    assert not torch.equal(multitask_loss(bumped_last, tgt).components["nonref"], base)


def test_weights_scale_the_total():
    tgt, est = _targets(2), ToyASA()()
    full = multitask_loss(est, tgt)
    only_cls = multitask_loss(est, tgt, LossWeights(image_ref=0, direct_ref=0, reverb_ref=0, nonref=0, noise=0,
                                                    cls=2.0, sed=0, doa=0, cos=0, onoff=0))
    torch.testing.assert_close(only_cls.total, 2.0 * full.components["cls"])


def test_multitask_loss_decreases_when_overfitting_one_batch():
    torch.manual_seed(0)
    tgt, model = _targets(3), ToyASA()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    history = []
    for _ in range(40):
        out = multitask_loss(model(), tgt, LossWeights(cos=1.0))
        assert torch.isfinite(out.total) and all(torch.isfinite(v) for v in out.components.values())
        opt.zero_grad()
        out.total.backward()
        opt.step()
        history.append(out.total.item())
    assert history[-1] < history[0] - 20.0                     # dB-scale separation terms dominate the drop
    final = multitask_loss(model(), tgt).components
    assert final["cls"] < 0.5 and final["onoff"] < 0.5


def test_seld_loss_matches_brute_force_over_permutations():
    tgt = _targets(4)
    est = Estimates(**{k: v.detach() for k, v in ToyASA()().__dict__.items()})
    out = seld_loss(est, tgt)
    w = LossWeights.seld()
    for b in range(B):
        best = math.inf
        for p in itertools.permutations(range(J)):
            e = {k: getattr(est, k)[b:b + 1, list(p)] for k in ("cls_logits", "sed", "onoff", "doa")}
            t = {k: getattr(tgt, k)[b:b + 1] for k in ("cls", "activity", "doa")}
            parts = seld_losses_per_slot(e, t)
            per_slot = (w.cls * parts["cls"] + w.sed * parts["sed"] + w.doa * parts["doa"]
                        + w.cos * parts["cos"] + w.onoff * parts["onoff"])
            best = min(best, float(per_slot.mean()))
        mine = {k: getattr(est, k)[b:b + 1, out.perm[b]] for k in ("cls_logits", "sed", "onoff", "doa")}
        parts = seld_losses_per_slot(mine, {k: getattr(tgt, k)[b:b + 1] for k in ("cls", "activity", "doa")})
        got = float((parts["cls"] + parts["sed"] + parts["doa"] + parts["cos"] + parts["onoff"]).mean())
        assert got == pytest.approx(best, abs=1e-5)
    assert torch.isfinite(out.total)


def test_master_permutation_from_seld_when_audio_is_uninformative():
    tgt = _targets(6)
    shuffle = torch.tensor([[1, 2, 0], [2, 0, 1]])
    sed = F.one_hot(tgt.cls.clamp_min(0), C).float()[:, :, None] * tgt.activity[..., None]
    est = Estimates(direct=torch.zeros_like(tgt.direct), reverb=torch.zeros_like(tgt.reverb),
                    cls_logits=apply_permutation(10 * F.one_hot(tgt.cls.clamp_min(0), C).float(), shuffle),
                    sed=apply_permutation(sed, shuffle), onoff=apply_permutation(20 * tgt.activity - 10, shuffle),
                    doa=apply_permutation(tgt.doa, shuffle))
    out = multitask_loss(est, tgt, master="seld")
    assert torch.equal(out.perm, torch.argsort(shuffle, dim=1))
    assert torch.equal(seld_loss(est, tgt).perm, out.perm)


def test_uss_loss_reference_channel_and_permutation():
    tgt = _targets(5)
    src = tgt.direct + tgt.reverb                                # (B, J, M, N)
    est = apply_permutation(src, torch.tensor([[1, 2, 0], [0, 2, 1]])) + 0.01 * torch.randn_like(src)
    out = uss_loss(est, tgt.noise + 0.01, src, tgt.noise)
    aligned = apply_permutation(est[:, :, 0], out.perm)
    torch.testing.assert_close(out.components["sep"], -sa_sdr(aligned, src[:, :, 0]).mean())
    assert out.components["sep"] < -20 and torch.isfinite(out.total)


def test_aux_terms_on_the_master_permutation_keep_an_object_whole():
    """An estimate whose slots swap sources between the reference mic and the others (what the shipped run
    learned with own-PIT auxiliary terms): own PIT rewards it, the master permutation does not."""
    t = _targets()
    direct = t.direct.clone()
    direct[:, :2, 1:] = t.direct[:, [1, 0], 1:]                 # slots 0/1 swapped on mics 1..3 only
    reverb = t.reverb.clone()
    reverb[:, :2, 1:] = t.reverb[:, [1, 0], 1:]
    est = Estimates(direct=direct, reverb=reverb, noise=t.noise,
                    cls_logits=torch.zeros(B, J, C), sed=torch.zeros(B, J, T, C), onoff=torch.zeros(B, J, T),
                    doa=torch.zeros(B, J, T, 3))
    w = LossWeights()
    own = multitask_loss(est, t, w, aux_own_permutation=True)
    master = multitask_loss(est, t, w, aux_own_permutation=False)
    assert torch.equal(own.perm, master.perm) and torch.equal(own.perm[0], torch.arange(J))   # π* from mic 0
    # own PIT: every other-mic term finds the swap and is perfect (the SA-SDR cap of an exact estimate)
    perfect = -sa_sdr(t.direct[:, :, 1] + t.reverb[:, :, 1], t.direct[:, :, 1] + t.reverb[:, :, 1]).mean()
    assert own.components["nonref"] < 3 * w.nonref_image * perfect + 1.0
    # master permutation: the hand-computed −SA-SDR of the swapped slots on each other mic
    ref = sum(w.nonref_image * -sa_sdr((direct + reverb)[:, :, m], (t.direct + t.reverb)[:, :, m]).mean()
              + w.nonref_direct * -sa_sdr(direct[:, :, m], t.direct[:, :, m]).mean()
              + w.nonref_reverb * -sa_sdr(reverb[:, :, m], t.reverb[:, :, m]).mean() for m in (1, 2, 3))
    torch.testing.assert_close(master.components["nonref"], ref)
    assert master.components["nonref"] > own.components["nonref"] + 10.0


def test_onoff_positive_weight_is_a_weighted_bce_and_moves_the_optimum():
    tgt = _targets()
    torch.manual_seed(0)
    est = ToyASA()()
    est.onoff = torch.randn(B, J, T)                                              # (B, J, T) logits
    active = (tgt.doa.norm(dim=-1) > 0.5).double()                                # (B, J, T)
    p = torch.sigmoid(est.onoff.double())                                         # (B, J, T)
    for w_pos in (1.0, 4.0):
        # the per-slot BCE written out, against the weighted BCE of the loss
        naive = -(w_pos * active * torch.log(p) + (1 - active) * torch.log(1 - p)).mean(-1)  # (B, J)
        got = seld_losses_per_slot(est, tgt, onoff_pos_weight=w_pos)["onoff"]
        assert torch.allclose(got.double(), naive, atol=1e-5)
        # the multi-task term: the same BCE of the logits re-ordered by the loss's own permutation π*
        out = multitask_loss(est, tgt, LossWeights(onoff_pos_weight=w_pos))
        p_al = torch.sigmoid(apply_permutation(est.onoff, out.perm).double())     # (B, J, T)
        naive_total = -(w_pos * active * torch.log(p_al) + (1 - active) * torch.log(1 - p_al)).mean()
        assert float(out.components["onoff"]) == pytest.approx(float(naive_total), abs=1e-5)
    # one logit fitted through the project's loss to frames of which a share q is active settles at
    # w·q / (w·q + 1 − q): the weighted-BCE optimum
    q, w_pos, n = 0.3, 4.0, 1000
    lab = torch.zeros(1, 1, n, 3)                                                 # (1, 1, n, 3)
    lab[0, 0, : int(q * n), 0] = 1.0                                              # active: a unit DoA label
    fit_tgt = Targets(cls=torch.zeros(1, 1, dtype=torch.long), activity=(lab.norm(dim=-1) > 0.5).float(), doa=lab)
    z = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([z], lr=2.0)
    for _ in range(300):
        opt.zero_grad()
        fit_est = {"cls_logits": torch.zeros(1, 1, C), "sed": torch.zeros(1, 1, n, C), "onoff": z.expand(1, 1, n),
                   "doa": torch.zeros(1, 1, n, 3)}
        seld_losses_per_slot(fit_est, fit_tgt, onoff_pos_weight=w_pos)["onoff"].sum().backward()
        opt.step()
    assert float(torch.sigmoid(z.detach())) == pytest.approx(w_pos * q / (w_pos * q + 1 - q), abs=1e-3)
