"""Official DCASE 2023 Task 3 segment-level metrics on hand-made CSV cases, derived by hand below.

Conventions of every case: 3 classes; frames of 100 ms; 1-s segments of 10 frames; a recording is
max(reference frame index) frames long (the official rule); elevation 0 unless said, so the angle between
two directions is the azimuth difference.
"""

import math

import numpy as np
import pytest

from deepasa.errors import DeepASAError
from deepasa.metrics import dcase_seld_metrics, evaluate_folders, jackknife_estimation, parse_dcase_rows, read_dcase_csv


def rows(cls, frames, azi, track=0, ele=0.0):
    """Polar rows ``frame,class,track,azimuth,elevation``; ``azi`` is a number or a function of the frame."""
    return [f"{f},{cls},{track},{azi(f) if callable(azi) else azi},{ele}" for f in frames]


def score(pred_rows, ref_rows, average="micro", n_classes=3):
    """Score one recording given as lists of CSV lines."""
    return dcase_seld_metrics({"a": parse_dcase_rows(pred_rows)}, {"a": parse_dcase_rows(ref_rows)},
                              n_classes, average=average)


def check(m, er, f, le, lr):
    assert m["ER"] == pytest.approx(er, abs=1e-6)
    assert m["F"] == pytest.approx(f, abs=1e-6)
    # 1e-2°: like the official code, vectors are normalised by sqrt(‖v‖² + 1e-10), so identical directions
    # are 0.0008° apart.
    assert m["LE"] == pytest.approx(le, abs=1e-2)
    assert m["LR"] == pytest.approx(lr, abs=1e-6)
    assert m["SELD"] == pytest.approx((er + (1 - f) + le / 180 + (1 - lr)) / 4, abs=1e-4)


def test_perfect_prediction_and_absent_classes_in_the_macro_average():
    ref = rows(0, range(0, 20), 30, ele=10)                  # class 0 in both segments (frames 0..19)
    # Micro: 2 TPs at 0°, nothing else → ER 0, F 1, LE 0, LR 1.
    check(score(ref, ref), 0.0, 1.0, 0.0, 1.0)
    # Macro over 3 classes: classes 1 and 2 never occur → F = 0, LE = 180, LR = 0 for each (official rule):
    # F = (1 + 0 + 0)/3, LE = (0 + 180 + 180)/3 = 120, LR = 1/3.
    check(score(ref, ref, "macro"), 0.0, 1 / 3, 120.0, 1 / 3)


def test_substitution_insertion_and_a_correct_class_at_25_degrees():
    ref = rows(0, range(0, 10), 0) + rows(1, range(10, 20), 90)
    pred = rows(0, range(0, 10), 25) + rows(2, range(10, 20), 90)
    # Segment 0: class 0 matched at a mean 25° > 20° → DE_TP 1 (LE 25), spatial FP 1 → FP 1, FN 0 → I = 1.
    # Segment 1: class 1 missed (FN 1) and class 2 predicted (FP 1) → S = 1.
    # N_ref = 2 → ER = (S + D + I)/N_ref = (1 + 0 + 1)/2 = 1.
    # Micro: TP 0 → F = 0/(0 + 1 + ½(1 + 1)) = 0; LE = 25; LR = DE_TP/(DE_TP + DE_FN) = 1/(1 + 1) = 0.5.
    check(score(pred, ref), 1.0, 0.0, 25.0, 0.5)
    # Macro: F = [0, 0, 0]; LE = [25, 180, 180] → 128.33…; LR = [1/1, 0/1, 0] → 1/3.
    check(score(pred, ref, "macro"), 1.0, 0.0, (25 + 360) / 3, 1 / 3)


def test_insertion_and_deletion():
    ref = rows(0, range(0, 10), 45) + rows(1, range(10, 20), -60)
    pred = rows(0, range(0, 10), 50) + rows(2, range(0, 5), 0)
    # Segment 0: class 0 TP (5° ≤ 20°); class 2 inserted → FP 1, FN 0 → I = 1.
    # Segment 1: class 1 deleted → FN 1 → D = 1.  N_ref = 2 → ER = 2/2 = 1.
    # F = 1/(1 + 0 + ½(1 + 1)) = 0.5; LE = 5; LR = 1/(1 + 1) = 0.5.
    check(score(pred, ref), 1.0, 0.5, 5.0, 0.5)


def test_moving_source_mean_error_over_matched_frames():
    ref = rows(0, range(0, 10), lambda f: 10 * f) + rows(0, [19], 0)     # frame 19 only fixes the length to 19
    # The prediction follows the source 10° off in frames 0-4 and 26° off in frames 5-7, and stops at frame 7.
    pred = rows(0, range(0, 5), lambda f: 10 * f + 10) + rows(0, range(5, 8), lambda f: 10 * f - 26) + rows(0, [19], 0)
    # Segment 0: one track matched in 8 frames, mean error (5·10 + 3·26)/8 = 16° ≤ 20° → TP (frames without a
    # prediction do not count against a segment-level match). Segment 1: frame 19, exact → TP at 0°.
    # ER = 0; F = 2/2 = 1; LE = (16 + 0)/2 = 8; LR = 1.
    check(score(pred, ref), 0.0, 1.0, 8.0, 1.0)


def test_several_sources_of_the_same_class():
    # Segment 0: two class-0 sources at 0° and 90°; three predictions at 180°, 5°, 95° (the Hungarian
    # association pairs 0°↔5° and 90°↔95°, the 180° one is extra).
    # Segment 1: the same two sources; one prediction at 88° (paired with the 90° source).
    ref = (rows(0, range(0, 20), 0) + rows(0, range(0, 20), 90, track=1))
    pred = (rows(0, range(0, 10), 180, track=2) + rows(0, range(0, 10), 5) + rows(0, range(0, 10), 95, track=1)
            + rows(0, range(10, 20), 88))
    # Segment 0: 2 TPs (5°, 5°); #pred 3 > #ref 2 → FP 1 → I = 1.  Segment 1: 1 TP (2°); #pred 1 < #ref 2 →
    # FN 1 → D = 1.  N_ref = 2 + 2 = 4 → ER = 2/4 = 0.5.
    # F = 3/(3 + 0 + ½(1 + 1)) = 0.75; LE = (5 + 5 + 2)/3 = 4; LR = 3/(3 + 1) = 0.75.
    check(score(pred, ref), 0.5, 0.75, 4.0, 0.75)


def test_class_in_both_but_no_common_frame_counts_predictions_as_misses():
    ref = rows(0, range(0, 5), 0) + rows(1, [19], 0)
    pred = rows(0, range(5, 10), 0) + rows(1, [19], 0)
    # Segment 0, class 0: present in both, no common frame → the official rule adds #pred = 1 FN (D = 1).
    # Segment 1, class 1: TP at 0°.  N_ref = 2 → ER = 1/2.  F = 1/(1 + ½·1) = 2/3; LE = 0; LR = 1/(1 + 1) = 0.5.
    check(score(pred, ref), 0.5, 2 / 3, 0.0, 0.5)


def test_recording_length_is_the_largest_reference_index():
    ref = rows(0, range(0, 21), 0)                           # frames 0..20 → length 20 → frame 20 is not scored
    pred = ref + rows(1, [20], 0)                            # an insertion in frame 20 therefore costs nothing
    check(score(pred, ref), 0.0, 1.0, 0.0, 1.0)


def test_cartesian_and_polar_files_agree(tmp_path):
    ref = rows(0, range(0, 10), 30, ele=20) + rows(2, range(10, 20), -100, ele=-10)
    pred_polar = rows(0, range(0, 10), 45, ele=20) + rows(2, range(10, 20), -90, ele=-10)
    pred_cart = []
    for line in pred_polar:
        f, c, t, a, e = line.split(",")
        a, e = math.radians(float(a)), math.radians(float(e))
        x, y, z = math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)
        pred_cart.append(f"{f},{c},{t},{2 * x},{2 * y},{2 * z},1.5")          # unnormalised + a distance
    six_col = [line + ",2.0" for line in ref]                                  # polar with distance
    for name, lines in (("ref", six_col), ("polar", pred_polar), ("cart", pred_cart)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "rec.csv").write_text("\n".join(lines) + "\n")
    a = evaluate_folders(tmp_path / "polar", tmp_path / "ref", 3)
    b = evaluate_folders(tmp_path / "cart", tmp_path / "ref", 3)
    for k in ("ER", "F", "LE", "LR", "SELD"):
        assert a[k] == pytest.approx(b[k], abs=1e-9)
    # Macro (the default): class 0 at elevation 20° is 15° off in azimuth, class 2 at −10° is 10° off;
    # the great-circle angle is arccos(sin²e + cos²e·cos Δa); class 1 never occurs → 180°.
    def gc(e, da):
        e, da = math.radians(e), math.radians(da)
        return math.degrees(math.acos(math.sin(e) ** 2 + math.cos(e) ** 2 * math.cos(da)))
    assert a["LE"] == pytest.approx((gc(20, 15) + 180 + gc(-10, 10)) / 3, abs=1e-2)
    assert (a["ER"], a["F"], a["LR"]) == pytest.approx((0.0, 2 / 3, 2 / 3), abs=1e-9)


def test_jackknife_matches_leave_one_out_by_recomputation(tmp_path):
    refs = {"r1": rows(0, range(20), 0), "r2": rows(1, range(20), 90), "r3": rows(0, range(10), 40) + rows(2, [19], 0)}
    preds = {"r1": rows(0, range(20), 10), "r2": rows(1, range(10), 120),
             "r3": rows(0, range(10), 70) + rows(1, [19], 0)}
    P = {k: parse_dcase_rows(v) for k, v in preds.items()}
    R = {k: parse_dcase_rows(v) for k, v in refs.items()}
    full = dcase_seld_metrics(P, R, 3, jackknife=True)
    for key in ("ER", "F", "LE", "LR", "SELD"):
        loo = np.array([dcase_seld_metrics({k: P[k] for k in P if k != out}, {k: R[k] for k in R if k != out}, 3)[key]
                        for out in sorted(P)])
        n, mean = 3, loo.mean()
        bias = (n - 1) * (mean - full[key])
        se = math.sqrt((n - 1) / n * ((loo - mean) ** 2).sum())
        t = 4.302652729911275                                   # Student t, 2 dof, 97.5 %
        jk = full["jackknife"][key]
        assert jk["estimate"] == pytest.approx(full[key] - bias, abs=1e-9)
        assert jk["std_err"] == pytest.approx(se, abs=1e-9)
        assert jk["ci"] == pytest.approx([full[key] - bias - t * se, full[key] - bias + t * se], abs=1e-6)
    assert jackknife_estimation(1.0, [1.0, 1.0])["std_err"] == 0.0


def test_reader_accepts_documented_forms_and_rejects_bad_rows(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("3,1,0,90,0\n3,2,1,0,0,2.5\n4,1,0,1,0,0,1\n")      # 5-, 6- and 7-column rows: mixed kinds
    with pytest.raises(DeepASAError, match="mixed"):
        read_dcase_csv(f)
    f.write_text("3,1,0,90,0\n3,2,1,0,90,2.5\n")
    got = read_dcase_csv(f)
    assert [r[:2] for r in got[3]] == [(1, 0), (2, 1)]
    np.testing.assert_allclose(got[3][0][2], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(got[3][1][2], [0, 0, 1], atol=1e-12)
    f.write_text("3,1,0,abc,0\n")
    with pytest.raises(DeepASAError, match="x.csv:1"):
        read_dcase_csv(f)
    f.write_text("3,1,0\n")
    with pytest.raises(DeepASAError, match="columns"):
        read_dcase_csv(f)


def test_class_outside_range_is_an_error():
    with pytest.raises(DeepASAError, match="class 5"):
        score(rows(5, [1], 0), rows(0, [1, 2], 0))


def test_frames_from_slots_round_trip_through_a_csv(tmp_path):
    from deepasa.metrics import frames_from_slots, write_dcase_csv

    sed = np.zeros((2, 3, 3))                      # 2 slots, 3 frames, 3 classes
    sed[0, 0, 1] = sed[0, 1, 1] = 1                # slot 0: class 1 in frames 0, 1
    sed[1, 1, 2] = 1                               # slot 1: class 2 in frame 1
    doa = np.zeros((2, 3, 3))
    doa[0, :, 1] = 0.9                             # +y → azimuth 90°
    doa[1, :, 2] = 0.7                             # +z → elevation 90°
    frames = frames_from_slots(sed, doa, frame_offset=40)
    assert sorted(frames) == [40, 41]
    assert [(c, s) for c, s, _ in frames[41]] == [(1, 0), (2, 1)]
    for cartesian in (False, True):
        write_dcase_csv(tmp_path / "o.csv", frames, cartesian=cartesian)
        back = read_dcase_csv(tmp_path / "o.csv")
        np.testing.assert_allclose(back[41][0][2], [0, 1, 0], atol=1e-5)
        np.testing.assert_allclose(back[41][1][2], [0, 0, 1], atol=1e-5)


def test_any_reference_scored_against_itself_is_perfect():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    event = st.tuples(st.integers(0, 45), st.integers(0, 2), st.integers(0, 2),
                      st.integers(-180, 180), st.integers(-60, 60))

    @settings(max_examples=40, deadline=None)
    @given(st.lists(event, min_size=1, max_size=40))
    def check_identity(events):
        lines = [f"{f},{c},{t},{a},{e}" for f, c, t, a, e in sorted(events)]
        m = score(lines, lines)
        assert m["ER"] == pytest.approx(0.0)
        if m["F"] == 0.0:
            # Nothing inside the scored length (e.g. only frame 0: the length max index = 0 has no segment).
            assert m["LE"] == 180.0 and m["LR"] == 0.0
        else:
            assert m["F"] == pytest.approx(1.0) and m["LR"] == pytest.approx(1.0) and m["LE"] < 0.01

    check_identity()
