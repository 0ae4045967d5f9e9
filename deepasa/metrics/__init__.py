"""deepasa.metrics: separation metrics, the two SELD metric families and CA-SDRi.

* :mod:`~deepasa.metrics.separation` — SI-SDR(i), SDR(i) (BSS-eval, 512-tap filter), SNR; reference
  channel and M2M; image and direct path.
* :mod:`~deepasa.metrics.seld_frame` — **DeepASA frame-level object metrics** (docs/spec.md §8, the paper's tables).
* :mod:`~deepasa.metrics.seld_dcase` — **official DCASE 2023 Task 3 segment-level metrics** from CSVs.
* :mod:`~deepasa.metrics.ca_sdri` — CA-SDRi of DCASE 2025 Task 4 (SNR-based, as the challenge).
"""

from deepasa.metrics.ca_sdri import ca_sdri, ca_sdri_mixture, label_accuracy
from deepasa.metrics.seld_dcase import (
    DCASESegmentCounts,
    dcase_seld_metrics,
    evaluate_folders,
    frames_from_slots,
    jackknife_estimation,
    parse_dcase_rows,
    read_dcase_csv,
    segment_labels,
    write_dcase_csv,
)
from deepasa.metrics.seld_frame import (
    FrameSELDStats,
    activity_decisions,
    angular_error_deg,
    frame_seld_metrics,
    seld_decisions,
    seld_score,
)
from deepasa.metrics.separation import SEPARATION_KEYS, evaluate_separation, improvement, sdr, si_sdr, snr

__all__ = [
    "DCASESegmentCounts", "FrameSELDStats", "SEPARATION_KEYS", "activity_decisions", "angular_error_deg", "ca_sdri",
    "ca_sdri_mixture", "dcase_seld_metrics", "evaluate_folders", "evaluate_separation", "frame_seld_metrics", "frames_from_slots",
    "improvement", "jackknife_estimation", "label_accuracy", "parse_dcase_rows", "read_dcase_csv", "sdr",
    "segment_labels", "seld_decisions", "seld_score", "si_sdr", "snr", "write_dcase_csv",
]
