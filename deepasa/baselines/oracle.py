"""The oracle: ideal ratio masks on the true images, the true labels — the upper limit of the side-by-side table.

Separation: per object ``j`` and microphone ``m`` the magnitude ratio mask

    ``IRM_j = |S_j| / (Σ_k |S_k| + |V|)``  (image)     ``IRMᵈ_j = min(1, |D_j| / (Σ_k |S_k| + |V|))``  (direct path)

(``S_k`` the STFT of source k's image at that mic, ``D_j`` of its direct path, ``V`` of the noise) applied to the
mixture's STFT and inverted. A mask can only reweight the mixture's time-frequency cells, so the oracle shows
what masking can reach, not perfect separation (complex-valued networks can exceed it, notably on the direct
path, whose phase the mixture does not carry). SELD: the true class, activity and direction of every object —
every SELD metric is perfect by construction, which also checks the scoring pipeline end to end.
"""

from __future__ import annotations

import torch

from deepasa.model.deepasa import DeepASAOutput

__all__ = ["OracleBaseline"]


class OracleBaseline:
    """Ideal-ratio-mask separation + true SELD labels, as a system of :func:`deepasa.evaluation.score_system`.

    Args:
        n_classes: C of the class logits.
        n_fft: STFT size of the masks (32 ms at 16 kHz by default).
        hop: STFT hop.
        logit: magnitude of the ±logits that encode certain decisions.
    """

    def __init__(self, n_classes: int, n_fft: int = 512, hop: int = 128, logit: float = 20.0):
        self.n_classes, self.n_fft, self.hop, self.logit = n_classes, n_fft, hop, logit

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        """(..., N) → (..., F, T) complex."""
        lead = x.shape[:-1]
        win = torch.hann_window(self.n_fft, dtype=x.dtype)
        spec = torch.stft(x.reshape(-1, x.shape[-1]), self.n_fft, self.hop, window=win, return_complex=True)
        return spec.reshape(*lead, *spec.shape[-2:])                       # (..., F, T)

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """(..., F, T) complex → (..., N)."""
        lead = spec.shape[:-2]
        win = torch.hann_window(self.n_fft, dtype=spec.real.dtype)
        x = torch.istft(spec.reshape(-1, *spec.shape[-2:]), self.n_fft, self.hop, window=win, length=length)
        return x.reshape(*lead, length)                                     # (..., N)

    def __call__(self, batch: dict) -> DeepASAOutput:
        """The oracle's outputs for a batch.

        Args:
            batch: ``mixture (B, M, N)``, ``direct``/``reverb (B, J, M, N)`` (or ``image``), ``noise (B, M, N)``
                (optional), ``cls (B, J)`` (−1 empty), ``activity (B, J, T')``, ``doa (B, J, T', 3)``.

        Returns:
            :class:`DeepASAOutput` with ``image``, ``direct``, ``reverb`` ``(B, J, M, N)``, ``noise (B, M, N)``,
            ``cls_logits (B, J, C)``, ``sed (B, J, T', C)``, ``onoff (B, J, T')``, ``doa (B, J, T', 3)``.
        """
        mix = batch["mixture"].double()                                     # (B, M, N)
        n = mix.shape[-1]
        image = batch["image"].double() if "image" in batch else (batch["direct"] + batch["reverb"]).double()
        direct = batch["direct"].double() if "direct" in batch else image
        noise = batch["noise"].double() if "noise" in batch else mix - image.sum(1)   # (B, M, N)
        x = self._stft(mix)                                                 # (B, M, F, T)
        s_img = self._stft(image).abs()                                     # (B, J, M, F, T)
        s_dir = self._stft(direct).abs()                                    # (B, J, M, F, T)
        den = s_img.sum(1, keepdim=True) + self._stft(noise).abs().unsqueeze(1) + 1e-12   # (B, 1, M, F, T)
        est_img = self._istft(s_img / den * x.unsqueeze(1), n)              # (B, J, M, N)
        est_dir = self._istft((s_dir / den).clamp(max=1.0) * x.unsqueeze(1), n)   # (B, J, M, N)
        est_noise = self._istft(self._stft(noise).abs() / den[:, 0] * x, n)  # (B, M, N)

        cls = batch["cls"].long()                                           # (B, J)
        activity = batch["activity"].double()                               # (B, J, T')
        onehot = torch.nn.functional.one_hot(cls.clamp(min=0), self.n_classes).double()   # (B, J, C)
        onehot = onehot * (cls >= 0).unsqueeze(-1)                          # empty slots: all zero
        return DeepASAOutput(
            image=est_img.float(), direct=est_dir.float(), reverb=(est_img - est_dir).float(),
            noise=est_noise.float(),
            cls_logits=(self.logit * (2 * onehot - 1)).float(),             # (B, J, C)
            sed=(onehot.unsqueeze(2) * activity.unsqueeze(-1)).float(),     # (B, J, T', C)
            onoff=(self.logit * (2 * activity - 1)).float(),                # (B, J, T')
            doa=batch["doa"].float(),                                       # (B, J, T', 3) unit vectors × activity
        )
