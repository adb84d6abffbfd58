"""Fixed min-max / quantile quantizers with the midpoint decoder (Pr-MQ, Pr-QQ, Po-MQ, Po-QQ)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from softbits.errors import ConfigError
from softbits.nn.quantizers.base import ThresholdQuantizer
from softbits.nn.quantizers.threshold_init import SplitPoints, midpoint_levels, n_thresholds

__all__ = ["MidpointQuantizer"]


class MidpointQuantizer(ThresholdQuantizer):
    """x ↦ q_k: quantize to the code k, decode to the midpoint level of that interval."""

    kind: ClassVar[str] = "midpoint"

    legacy_options: ClassVar[dict[str, Any]] = {"trainable": False}

    levels: torch.Tensor

    def __init__(self, n_features: int, bits: int, *, init: str = "minmax",
                 widths: tuple[int, ...] | None = None) -> None:
        super().__init__(n_features, bits, trainable=False, init=init, widths=widths)
        if min(w for w in self.widths or (self.bits,) if w) < 2:
            raise ConfigError("midpoint decoding needs bits >= 2 (at least 2 thresholds per feature)")
        self.register_buffer("levels", torch.zeros(self.n_features, n_thresholds(self.bits) + 1))

    def config(self) -> dict[str, Any]:
        """Fixed thresholds: no ``trainable`` switch to record."""
        return {k: v for k, v in super().config().items() if k != "trainable"}

    def init_from_data(self, x: torch.Tensor, splits: SplitPoints | None = None) -> None:
        """Levels per feature at its own width; slots past a feature's last code repeat its last
        level (no code reaches them), and a 0-width feature decodes to 0 (the training mean)."""
        super().init_from_data(x, splits)
        a = self.thresholds.double().cpu().numpy()
        if self.widths is None:
            levels = midpoint_levels(a)
        else:
            levels = np.zeros(tuple(self.levels.shape))
            for f, w in enumerate(self.widths):
                if w:
                    own = midpoint_levels(a[f:f + 1, :n_thresholds(w)])[0]
                    levels[f, :own.size] = own
                    levels[f, own.size:] = own[-1]
        with torch.no_grad():
            self.levels.copy_(torch.as_tensor(levels, dtype=self.levels.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)).to(x.dtype)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.gather(self.levels.expand(codes.shape[0], -1, -1), 2,
                            codes.long().unsqueeze(-1)).squeeze(-1)
