"""SQ: soft quantization by summed sigmoids, one scalar per feature (the paper's prior method)."""

from __future__ import annotations

from typing import ClassVar

import torch

from softbits.nn.quantizers.base import ThresholdQuantizer

__all__ = ["SoftQuantizer"]


class SoftQuantizer(ThresholdQuantizer):
    """Training: Σ_j σ((x − a_j)/τ) ∈ (0, M); eval: the count k of exceeded thresholds."""

    kind: ClassVar[str] = "soft"
    uses_temperature: ClassVar[bool] = True

    def __init__(self, n_features: int, bits: int, *, trainable: bool = True,
                 init: str = "quantile", widths: tuple[int, ...] | None = None) -> None:
        super().__init__(n_features, bits, trainable=trainable, init=init, widths=widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            soft = torch.sigmoid((x.unsqueeze(-1) - self.thresholds) / self.temperature)
            return self._only_active(soft).sum(-1)
        return self.encode(x).to(x.dtype)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.to(self.thresholds.dtype)
