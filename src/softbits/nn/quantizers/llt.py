"""LLT: learnable lookup table quantization (Wang et al., CVPR 2022) of each input feature.

Per feature, a symmetric table on [−1, 1] with R = 2^(n−1) − 1 positive levels, each level's step
placed inside its interval at one of ``granularity`` sub-positions. Table logits [R, granularity]
start at 0. Training: softmax(logits/τ) per level, cumulative sum over the flattened table
(a monotone staircase from 0 to R), mirrored to the negative side and divided by R; x is scaled
by exp(log_scale), clipped to [−1, 1], looked up at the nearest of the 2·R·granularity + 1 grid
points, and the lookup passes x's gradient straight through. Inference: the softmax becomes the
argmax one-hot, so the output is one of the 2R + 1 = 2^n − 1 levels scale·k/R, k ∈ −R..R, and the
code k + R fits n bits. log_scale starts at log(3·std(x_i)) of the first training batch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from softbits.errors import ConfigError
from softbits.nn.quantizers.base import Quantizer

__all__ = ["LLTQuantizer"]

#: smallest initial std, so that a constant feature in the first batch keeps a finite scale
_MIN_STD = 1e-6


class LLTQuantizer(Quantizer):
    """One learnable lookup table and log-scale per feature; τ sharpens the table's softmax."""

    kind: ClassVar[str] = "llt"
    uses_temperature: ClassVar[bool] = True

    initialized: torch.Tensor

    def __init__(self, n_features: int, bits: int, *, granularity: int = 4) -> None:
        if bits < 2:
            raise ConfigError("LLT needs bits >= 2 (R = 2^(n-1) - 1 must be >= 1)")
        if granularity < 1:
            raise ConfigError(f"LLT granularity must be >= 1, got {granularity}")
        super().__init__(n_features, bits)
        self.granularity = int(granularity)
        self.table = nn.Parameter(torch.zeros(self.n_features, self.levels, self.granularity))
        self.log_scale = nn.Parameter(torch.zeros(self.n_features))
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def levels(self) -> int:
        """R: positive levels of the symmetric table."""
        return (1 << (self.bits - 1)) - 1

    @property
    def half_grid(self) -> int:
        """S = R·granularity: grid points on each side of 0."""
        return self.levels * self.granularity

    def config(self) -> dict[str, Any]:
        return {**super().config(), "granularity": self.granularity}

    def _init_scale(self, x: torch.Tensor) -> None:
        """log(3·std) per feature on the first training batch (the original's lazy init)."""
        std = x.detach().std(dim=0).clamp_min(_MIN_STD) if x.shape[0] > 1 else torch.ones_like(self.log_scale)
        with torch.no_grad():
            self.log_scale.copy_(torch.log(3.0 * std).to(self.log_scale.dtype))
            self.initialized.fill_(True)

    def _staircase(self, weights: torch.Tensor) -> torch.Tensor:
        """Per-feature table values on the 2S + 1 grid points, in units of R: [F, 2S + 1]."""
        c = weights.flatten(1).cumsum(dim=-1)
        zero = torch.zeros_like(c[:, :1])
        return torch.cat([-c.flip(-1), zero, c], dim=-1)

    def _grid(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x / scale, -1.0, 1.0)

    def _grid_index(self, grid: torch.Tensor) -> torch.Tensor:
        """Nearest grid point, 0..2S (round half to even, as the training lookup)."""
        s = self.half_grid
        return (grid.detach() * s).round().long() + s

    def _lookup(self, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        feature = torch.arange(self.n_features, device=index.device)
        return table[feature, index]

    def integer_levels(self, x: torch.Tensor) -> torch.Tensor:
        """Level k ∈ −R..R of each sample and feature under the argmax (inference) table."""
        one_hot = torch.zeros_like(self.table).scatter_(-1, self.table.argmax(-1, keepdim=True), 1.0)
        table = self._staircase(one_hot).round().long()
        scale = self.log_scale.detach().exp()
        return self._lookup(table, self._grid_index(self._grid(x, scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.decode(self.encode(x)).to(x.dtype)
        if not bool(self.initialized):
            self._init_scale(x)
        scale = self.log_scale.exp()
        weights = torch.softmax(self.table / self.temperature, dim=-1)
        table = self._staircase(weights) / self.levels
        grid = self._grid(x, scale)
        values = self._lookup(table, self._grid_index(grid))
        return (values + grid - grid.detach()) * scale

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.integer_levels(x) + self.levels

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        k = (codes.long() - self.levels).to(self.log_scale.dtype)
        return k / self.levels * self.log_scale.detach().exp()
