"""A streaming magnitude spectrogram for display: fed block by block, bounded memory for any length.

``deepasa analyze`` feeds it the mixture while the windows run; the report (:mod:`deepasa.report`) feeds it the
WAV files of an analysis. It lives here, below both, so the report never imports the analysis code.
"""

from __future__ import annotations

import math

import numpy as np

#: FFT size and the largest number of columns of a display spectrogram.
SPEC_NFFT = 512
SPEC_MAX_COLUMNS = 1500


class StreamingSpectrogram:
    """Streaming magnitude spectrogram (dB) of one channel with at most ``max_cols`` frames.

    Feed contiguous (n,) blocks; ``result()`` gives (F, K) dB, times (K,), freqs (F,).
    """

    def __init__(self, n_total: int, sample_rate: int, n_fft: int = SPEC_NFFT, max_cols: int = SPEC_MAX_COLUMNS):
        self.sr, self.n_fft = sample_rate, n_fft
        self.hop = max(n_fft // 2, math.ceil(max(n_total - n_fft, 1) / max_cols))
        self.win = np.hanning(n_fft)
        self.pending, self.pending_start, self.next_frame = np.zeros(0), 0, 0
        self.cols: list[np.ndarray] = []

    def feed(self, x: np.ndarray) -> None:
        """Append the next (n,) samples."""
        buf = np.concatenate([self.pending, np.asarray(x, np.float64)])
        end = self.pending_start + len(buf)
        while self.next_frame + self.n_fft <= end:
            i = self.next_frame - self.pending_start
            seg = buf[i:i + self.n_fft] * self.win  # (n_fft,)
            self.cols.append(np.abs(np.fft.rfft(seg)).astype(np.float32))  # (F,)
            self.next_frame += self.hop
        keep_from = max(0, min(self.next_frame, end) - self.pending_start)
        self.pending, self.pending_start = buf[keep_from:], self.pending_start + keep_from

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(F, K) dB magnitude, (K,) frame-centre times in s, (F,) frequencies in Hz."""
        if not self.cols:  # shorter than one FFT: one zero-padded frame
            seg = np.pad(self.pending, (0, self.n_fft - len(self.pending)))[: self.n_fft] * self.win
            self.cols = [np.abs(np.fft.rfft(seg)).astype(np.float32)]
        mag = np.stack(self.cols, axis=1)  # (F, K)
        times = (np.arange(mag.shape[1]) * self.hop + self.n_fft / 2) / self.sr
        freqs = np.fft.rfftfreq(self.n_fft, 1.0 / self.sr)
        return 20 * np.log10(mag + 1e-9), times, freqs
