"""Cross-window stitching on constructed per-window outputs whose slot order is permuted between windows.

Independent truth: the permutation used to build each window (which slot carries which true source) and the
true source signals. The stitcher must give every true source one object id over the whole file, follow it
through the permutations, and overlap-add its signal back exactly (no seams).
"""

import numpy as np
import pytest

from deepasa.inference.stitching import (MemorySink, Stitcher, WindowOutput, crossfade_weights, slot_activity,
                                         window_starts)

M, C, J = 4, 10, 5
LS = 100          # samples per label frame
L, H = 1600, 800  # window and hop: 16 and 8 frames


def _sources(n, rng):
    """Five true sources: (S, M, n) images, classes, unit directions, (S, T) frame activity.

    0: persistent (whole file); 1: first 40 % only; 2: starts at 55 %; 3: after source 1 ends, another class;
    4: intermittent, same class and direction, with a 1.2-window pause across an overlap.
    """
    t_frames = n // LS
    act = np.zeros((5, t_frames), bool)
    act[0] = True
    act[1, : int(0.4 * t_frames)] = True
    act[2, int(0.55 * t_frames):] = True
    act[3, int(0.45 * t_frames): int(0.8 * t_frames)] = True
    act[4, :20] = True          # frames 0-19, pause 20-39 (covers the overlap 24-31), active again from 40
    act[4, 40:60] = True
    classes = np.array([0, 3, 5, 7, 8])
    az = np.radians([0, 90, -120, 150, 45])
    dirs = np.stack([np.cos(az), np.sin(az), np.zeros(5)], -1)  # (S, 3)
    gains = rng.uniform(0.3, 1.0, (5, M, 1))
    sig = rng.standard_normal((5, M, n)) * gains  # (S, M, n): channels differ (spatial image)
    sig *= np.repeat(act, LS, axis=1)[:, None, :n]  # silent where inactive
    return sig, classes, dirs, act


def _window_outputs(sig, classes, dirs, act, rng, noise_level=0.0):
    """Per-window outputs with the sources in a random slot order; returns outputs and the permutations."""
    n = sig.shape[-1]
    outs, perms = [], []
    for s in window_starts(n, L, H):
        perm = rng.permutation(J)  # perm[k] = slot of source k
        crop = np.zeros((J, M, L))
        cls = np.full((J, C), 1.0 / C)
        onoff = np.full((J, L // LS), 0.05)
        doa = np.zeros((J, L // LS, 3))
        seg = sig[:, :, s:s + L]
        f0 = s // LS
        fa = act[:, f0:f0 + L // LS]
        for k in range(len(sig)):
            j = perm[k]
            crop[j, :, : seg.shape[-1]] = seg[k]
            if fa[k].any():
                cls[j] = 0.02 / (C - 1)
                cls[j, classes[k]] = 0.98
            onoff[j, : fa.shape[1]] = np.where(fa[k], 0.95, 0.05)
            doa[j, : fa.shape[1]] = fa[k][:, None] * dirs[k] * 0.9
        crop += noise_level * rng.standard_normal(crop.shape)
        outs.append(WindowOutput(image=crop, direct=0.75 * crop, reverb=0.25 * crop, noise=np.zeros((M, L)) + 0.01,
                                 cls_prob=cls, onoff_prob=onoff, doa=doa))
        perms.append(perm)
    return outs, perms


def _run(outs, n, sink=None):
    sink = sink or MemorySink()
    st = Stitcher(L, H, n, LS, sink)
    for o in outs:
        st.push(o)
    return st, st.finish(), sink


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permuted_slots_keep_one_id_per_source(seed):
    rng = np.random.default_rng(seed)
    n = 12 * H + 300  # 13 windows, the last one padded
    sig, classes, dirs, act = _sources(n, rng)
    outs, perms = _window_outputs(sig, classes, dirs, act, rng)
    st, tracks, sink = _run(outs, n)
    assignments = np.stack(st.assignments)  # (W, J) object id of each slot
    starts = window_starts(n, L, H)
    for k in range(len(sig)):
        # windows where source k is active: the object of its (permuted) slot must always be the same
        ids = {int(assignments[w, perms[w][k]]) for w, s in enumerate(starts) if act[k, s // LS: (s + L) // LS].any()}
        assert len(ids) == 1, f"source {k} got object ids {ids}"
    # different sources got different objects
    first_ids = []
    for k in range(len(sig)):
        w = next(w for w, s in enumerate(starts) if act[k, s // LS: (s + L) // LS].any())
        first_ids.append(int(assignments[w, perms[w][k]]))
    assert len(set(first_ids)) == len(sig)
    # and each object's overlap-added image is its source, exactly (complementary cross-fades, no seams)
    for k, tid in enumerate(first_ids):
        est = sink.stream((tid, "image"), n)  # (M, n)
        np.testing.assert_allclose(est, sig[k], atol=1e-5)
        np.testing.assert_allclose(sink.stream((tid, "direct"), n), 0.75 * sig[k], atol=1e-5)
    # frame decisions of the object reproduce the true activity
    for k, tid in enumerate(first_ids):
        prob, doa, _ = tracks[tid].frames.averaged(n // LS)
        np.testing.assert_array_equal(slot_activity(prob, doa), act[k])
    np.testing.assert_allclose(sink.stream(("noise",), n), 0.01, atol=1e-6)


def test_new_source_in_a_reused_slot_gets_a_new_id():
    """A source of another class and direction appears in the slot of a source that ended two windows before
    (no window holds both): it must not inherit the id; the persistent source keeps its own."""
    rng = np.random.default_rng(5)
    n = 12 * H
    sig, classes, dirs, act = _sources(n, rng)
    sig, classes, dirs, act = sig[[0, 1, 3]], classes[[0, 1, 3]], dirs[[0, 1, 3]], act[[0, 1, 3]]
    act[2] = False
    act[2, 60:90] = True  # source 1 ends at frame 38; windows are 16 frames every 8
    sig[2] = rng.standard_normal((M, n)) * np.repeat(act[2], LS)[None, :n]
    st, tracks, sink = _run(_window_outputs_fixed(sig, classes, dirs, act), n)
    ids_1 = {int(a[1]) for w, a in enumerate(st.assignments) if act[1, w * H // LS: (w * H + L) // LS].any()}
    ids_2 = {int(a[1]) for w, a in enumerate(st.assignments) if act[2, w * H // LS: (w * H + L) // LS].any()
             and not act[1, w * H // LS: (w * H + L) // LS].any()}
    assert len(ids_1) == 1 and len(ids_2) == 1 and ids_1 != ids_2
    assert len({int(a[0]) for a in st.assignments}) == 1
    assert sum(t.ever_active for t in tracks) == 3


def _window_outputs_fixed(sig, classes, dirs, act):
    """Like :func:`_window_outputs` but source k always in slot k and sources 1 and 2 sharing slot 1."""
    n = sig.shape[-1]
    outs = []
    for s in window_starts(n, L, H):
        crop, cls = np.zeros((J, M, L)), np.full((J, C), 1.0 / C)
        onoff, doa = np.full((J, L // LS), 0.05), np.zeros((J, L // LS, 3))
        f0 = s // LS
        for k, j in ((0, 0), (1, 1), (2, 1)):
            fa = act[k, f0:f0 + L // LS]
            if not fa.any():
                continue
            seg = sig[k, :, s:s + L]
            crop[j, :, : seg.shape[-1]] += seg
            cls[j] = 0.02 / (C - 1)
            cls[j, classes[k]] = 0.98
            onoff[j, : len(fa)] = np.where(fa, 0.95, onoff[j, : len(fa)])
            doa[j, : len(fa)] += fa[:, None] * dirs[k] * 0.9
        outs.append(WindowOutput(image=crop, direct=crop, reverb=0 * crop, noise=np.zeros((M, L)),
                                 cls_prob=cls, onoff_prob=onoff, doa=doa))
    return outs


def test_each_cue_alone_decides_the_assignment():
    """Two windows, two active sources, slots swapped: signal, class or direction alone recovers the swap."""
    from deepasa.inference.stitching import StitchWeights

    rng = np.random.default_rng(3)
    n = L + H
    sig, classes, dirs, act = _sources(n, rng)
    sig, classes, dirs, act = sig[[0, 2]], classes[[0, 2]], dirs[[0, 2]], act[[0, 2]]
    act[:] = True
    sig = rng.standard_normal(sig.shape)
    for cue in ("signal", "cls", "direction"):
        w = StitchWeights(**{k: float(k == cue) for k in ("signal", "cls", "direction")})
        outs, perms = _window_outputs(sig, classes, dirs, act, np.random.default_rng(1))
        st = Stitcher(L, H, n, LS, MemorySink(), w)
        for o in outs:
            st.push(o)
        a = st.assignments
        for k in range(2):
            assert a[0][perms[0][k]] == a[1][perms[1][k]], cue


def test_crossfade_weights_sum_to_one():
    n = 10 * H + 123
    total = np.zeros(window_starts(n, L, H)[-1] + L)
    starts = window_starts(n, L, H)
    for i, s in enumerate(starts):
        total[s:s + L] += crossfade_weights(L, H, i == 0, i == len(starts) - 1)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    # a short hop (3 windows overlap) still gives positive weights everywhere (normalised overlap-add)
    assert (crossfade_weights(L, LS * 4, False, False) > 0).all()


def test_short_hop_still_reconstructs_exactly():
    rng = np.random.default_rng(7)
    hop = 4 * LS
    n = 9 * hop
    sig = rng.standard_normal((1, M, n))
    sink = MemorySink()
    st = Stitcher(L, hop, n, LS, sink)
    for s in window_starts(n, L, hop):
        crop = np.zeros((J, M, L))
        seg = sig[0, :, s:s + L]
        crop[0, :, : seg.shape[-1]] = seg
        onoff = np.full((J, L // LS), 0.05)
        onoff[0] = 0.9
        doa = np.zeros((J, L // LS, 3))
        doa[0] = [0.0, 0.9, 0.0]
        cls = np.full((J, C), 1.0 / C)
        st.push(WindowOutput(crop, None, None, np.zeros((M, L)), cls, onoff, doa))
    tracks = st.finish()
    tid = int(st.assignments[0][0])
    assert all(int(a[0]) == tid for a in st.assignments)
    np.testing.assert_allclose(sink.stream((tid, "image"), n), sig[0], atol=1e-5)
    assert sum(t.ever_active for t in tracks) == 1
