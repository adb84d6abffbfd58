"""LSQ: learned step size quantization (Esser et al., 2020) of each input feature.

Each feature i has a trainable step s_i; the code is round(clip(x/s_i, −Q_n, Q_p)) on the signed
range [−2^(n−1), 2^(n−1) − 1], rounded with a straight-through estimator, and the network sees
code·s_i. The step's gradient is scaled by 1/sqrt(Q_p·numel) (numel of the quantized batch) so
that its update stays comparable to the network's weights.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from softbits.errors import ConfigError
from softbits.nn.quantizers.base import Quantizer
from softbits.nn.quantizers.threshold_init import SplitPoints

__all__ = ["LSQQuantizer", "grad_scale", "round_ste"]

#: smallest initial step, so that a constant feature does not divide by zero
_MIN_STEP = 1e-8


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Value ``x``, gradient multiplied by ``scale``."""
    scaled = x * scale
    return (x - scaled).detach() + scaled


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return (x.round() - x).detach() + x


class LSQQuantizer(Quantizer):
    """Per-feature learned step on the signed range; codes are shifted by Q_n to 0..2^n − 1."""

    kind: ClassVar[str] = "lsq"

    def __init__(self, n_features: int, bits: int) -> None:
        if bits < 2:
            raise ConfigError("LSQ needs bits >= 2 (Q_p = 2^(n-1) - 1 must be >= 1)")
        super().__init__(n_features, bits)
        self.step = nn.Parameter(torch.ones(self.n_features))

    @property
    def q_neg(self) -> int:
        """Q_n: magnitude of the most negative level."""
        return 1 << (self.bits - 1)

    @property
    def q_pos(self) -> int:
        """Q_p: the most positive level."""
        return (1 << (self.bits - 1)) - 1

    def init_from_data(self, x: torch.Tensor, splits: SplitPoints | None = None) -> None:
        """s_i = 2·mean|x_i| / sqrt(Q_p) on the standardized training features (no thresholds:
        ``splits`` is not used)."""
        s = 2.0 * x.detach().abs().mean(dim=0) / (self.q_pos ** 0.5)
        with torch.no_grad():
            self.step.copy_(s.clamp_min(_MIN_STEP).to(self.step.dtype))

    def _levels(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x / step, -self.q_neg, self.q_pos)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            step = grad_scale(self.step, 1.0 / (self.q_pos * x.numel()) ** 0.5)
            return round_ste(self._levels(x, step)) * step
        return self._levels(x, self.step).round() * self.step

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._levels(x, self.step.detach()).round().long() + self.q_neg

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes.long() - self.q_neg).to(self.step.dtype) * self.step.detach()
