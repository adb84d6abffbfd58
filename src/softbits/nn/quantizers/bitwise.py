"""Bitwise quantizers: Bw-SQ (the paper's method) and its hard baselines Bw-MQ / Bw-QQ.

Each feature becomes M = 2^n − 1 outputs, one per threshold, concatenated feature by feature
(input width F·M). Training (Bw-SQ): σ((x − a_j)/τ). Eval: 1[x > a_j], a thermometer code fully
determined by the count k of exceeded thresholds, so the device sends k and ``decode`` rebuilds
the bits — also when training left the thresholds unsorted (bit j is set when a_j is among the k
smallest thresholds). With per-feature widths only the used slots are outputs (input width
Σ_f (2^w_f − 1)): the network never sees the unused ones, nor a 0-width feature at all.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from softbits.nn.quantizers.base import ThresholdQuantizer
from softbits.nn.quantizers.threshold_init import n_thresholds

__all__ = ["BitwiseQuantizer"]


class BitwiseQuantizer(ThresholdQuantizer):
    """Bw-SQ with ``soft=True, trainable=True``; Bw-MQ/Bw-QQ with ``soft=False, trainable=False``."""

    kind: ClassVar[str] = "bitwise"

    _outputs: torch.Tensor
    _output_features: torch.Tensor

    def __init__(self, n_features: int, bits: int, *, soft: bool = True, trainable: bool = True,
                 init: str = "quantile", widths: tuple[int, ...] | None = None) -> None:
        super().__init__(n_features, bits, trainable=trainable, init=init, widths=widths)
        self.soft = bool(soft)
        # the used slots' positions in the flattened [F·M] layout, feature by feature (from the
        # widths, not the mask: a model file is first built on the meta device, which has no values)
        m = self.thresholds.shape[1]
        used = [(f, f * m + j) for f, w in enumerate(self.widths or ()) for j in range(n_thresholds(w))]
        self.register_buffer("_outputs", torch.tensor([i for _, i in used], dtype=torch.long), persistent=False)
        # the feature each used slot compares, so that a forward pass computes only the used slots
        self.register_buffer("_output_features", torch.tensor([f for f, _ in used], dtype=torch.long),
                             persistent=False)

    @property
    def uses_temperature(self) -> bool:  # type: ignore[override]
        return self.soft

    @property
    def out_features(self) -> int:
        return self.n_features * self.thresholds.shape[1] if self.widths is None else self._outputs.numel()

    def _used(self, bits: torch.Tensor) -> torch.Tensor:
        """[B, F, M] per-slot values → the network's input [B, out_features]."""
        flat = bits.flatten(1)
        return flat if self.widths is None else flat.index_select(1, self._outputs)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "soft": self.soft}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.widths is not None:
            return self._forward_used(x)
        if self.training and self.soft:
            # (x − a)/τ as x/τ + (−a/τ): scaling and negation stay on the small tensors, so the
            # [B, F, M] tensor sees one add forward and a plain sum backward
            inv_t = self.temperature.reciprocal()
            z = (x * inv_t).unsqueeze(-1) + self.thresholds * -inv_t
            return torch.sigmoid(z).flatten(1)
        return self._exceeds(x).to(x.dtype).flatten(1)

    def _forward_used(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed widths: the same elementwise operations as the dense forward, on the used slots
        only ([B, Σ (2^w_f − 1)] instead of [B, F, 2^n − 1]), so their cost follows the widths."""
        xs = x.index_select(1, self._output_features)
        a = self.thresholds.flatten().index_select(0, self._outputs)
        if self.training and self.soft:
            inv_t = self.temperature.reciprocal()
            return torch.sigmoid(xs * inv_t + a * -inv_t)
        return (xs > a).to(x.dtype)

    def _ranks(self) -> torch.Tensor:
        """Position of each threshold in its feature's (stable) sorted order, [F, M].

        Cached until the thresholds change (:meth:`_while_thresholds_last`). Unused slots (+inf)
        rank after a feature's own thresholds, so no code sets their bits.
        """
        def ranks() -> torch.Tensor:
            order = torch.argsort(self.effective_thresholds().detach(), dim=-1, stable=True)
            out = torch.empty_like(order)
            return out.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))

        return self._while_thresholds_last("ranks", ranks)

    @property
    def fixed(self) -> bool:
        """Hard bits at thresholds that training leaves alone: the network's input is a function
        of the codes alone, so a training can encode its rows once."""
        return not self.soft and not self.trainable

    def rank_order(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The network-input columns feature by feature, each feature's in threshold order, and
        how many columns each feature has ([out_features], [F], long). Code c of feature f
        sets exactly its first c columns there, so the first layer's response to a code is a
        cumulative sum of weight columns read at c."""
        n_features, m = self.thresholds.shape
        device = self.thresholds.device
        if self.widths is None:
            slots = torch.arange(n_features * m, device=device)
            features = slots // m
        else:
            slots, features = self._outputs, self._output_features
        order = torch.argsort(features * m + self._ranks().flatten()[slots])
        return order, torch.bincount(features, minlength=n_features)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        bits = self._ranks().unsqueeze(0) < codes.long().unsqueeze(-1)
        return self._used(bits.to(self.thresholds.dtype))
