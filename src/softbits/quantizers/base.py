"""The interface every input quantizer shares, and the threshold family's common code.

A quantizer maps standardized features [B, F] to the network's input [B, out_features]. Its
*device view* is ``encode`` (features → integer codes, what travels) and ``decode`` (codes → the
exact tensor the network sees in eval mode): ``decode(encode(x)) == eval forward(x)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from softbits.errors import DataError
from softbits.quantizers.threshold_init import init_thresholds, n_thresholds

__all__ = ["Quantizer", "ThresholdQuantizer"]


class Quantizer(nn.Module, ABC):
    """Base class: ``bits`` per feature, ``n_features`` in, ``out_features`` to the network."""

    kind: ClassVar[str] = ""
    #: whether a temperature schedule applies (soft quantizers)
    uses_temperature: ClassVar[bool] = False
    #: whether the codes are thresholds counts, i.e. the device encoder is a threshold table
    has_thresholds: ClassVar[bool] = False
    #: options that older model files wrote but the constructor no longer takes, with the only
    #: value they may hold there (dropped when the file is read)
    legacy_options: ClassVar[dict[str, Any]] = {}

    temperature: torch.Tensor

    def __init__(self, n_features: int, bits: int) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.bits = int(bits)
        self.register_buffer("temperature", torch.tensor(1.0))

    @property
    def out_features(self) -> int:
        return self.n_features

    def config(self) -> dict[str, Any]:
        """Constructor arguments; with the state dict they rebuild the module."""
        return {"n_features": self.n_features, "bits": self.bits}

    def set_temperature(self, value: float) -> None:
        self.temperature.fill_(float(value))

    def init_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation on the standardized training features."""

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Features [B, F] → integer codes in 0..2^n − 1, what a device sends."""

    @abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes → exactly the tensor the network sees in eval mode."""

    def sorted_thresholds(self) -> np.ndarray:
        """Sorted float32 thresholds [F, 2^n − 1] in standardized units."""
        raise DataError(f"{type(self).__name__} has no threshold table")


class ThresholdQuantizer(Quantizer):
    """Quantizers whose code is k = #{j : x > a_j} over 2^n − 1 thresholds per feature."""

    has_thresholds: ClassVar[bool] = True

    thresholds: torch.Tensor

    def __init__(self, n_features: int, bits: int, *, trainable: bool = False,
                 init: str = "quantile") -> None:
        super().__init__(n_features, bits)
        self.init = init
        self.trainable = bool(trainable)
        zeros = torch.zeros(self.n_features, n_thresholds(self.bits))
        if self.trainable:
            self.thresholds = nn.Parameter(zeros)
        else:
            self.register_buffer("thresholds", zeros)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "trainable": self.trainable, "init": self.init}

    def init_from_data(self, x: torch.Tensor) -> None:
        a = init_thresholds(x.detach().cpu().double().numpy(), self.bits, self.init)
        with torch.no_grad():
            self.thresholds.copy_(torch.as_tensor(a, dtype=self.thresholds.dtype))

    def _exceeds(self, x: torch.Tensor) -> torch.Tensor:
        """[B, F, M] booleans x > a_j (strict: x == a_j gives 0, NaN gives 0)."""
        return x.unsqueeze(-1) > self.thresholds

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._exceeds(x).sum(dim=-1)

    def sorted_thresholds(self) -> np.ndarray:
        return np.sort(self.thresholds.detach().cpu().float().numpy(), axis=-1).astype(np.float32)
