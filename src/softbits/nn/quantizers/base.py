"""The interface every input quantizer shares, and the threshold family's common code.

A quantizer maps standardized features [B, F] to the network's input [B, out_features]. Its
*device view* is ``encode`` (features → integer codes, what travels) and ``decode`` (codes → the
exact tensor the network sees in eval mode): ``decode(encode(x)) == eval forward(x)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from softbits.codes import check_widths
from softbits.errors import ConfigError, DataError
from softbits.nn.quantizers.threshold_init import SplitPoints, init_thresholds, n_thresholds

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
    #: one code width per feature, or None when every feature has ``bits`` (threshold family only)
    widths: tuple[int, ...] | None = None

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

    def init_from_data(self, x: torch.Tensor, splits: SplitPoints | None = None) -> None:
        """Data-dependent initialisation on the standardized training features (``splits``: the
        trees' split points, for the thresholds of init ``splits``)."""

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Features [B, F] → integer codes in 0..2^n − 1, what a device sends."""

    @abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes → exactly the tensor the network sees in eval mode."""

    def sorted_thresholds(self) -> np.ndarray:
        """Sorted float32 thresholds [F, 2^n − 1] in standardized units."""
        raise DataError(f"{type(self).__name__} has no threshold table")


def resolve_widths(n_features: int, bits: int, widths: object) -> tuple[int, tuple[int, ...] | None]:
    """``(bits, widths)`` of a quantizer: widths checked against ``n_features``, all-equal widths
    folded into the uniform form (None), and ``bits`` required to be the largest width, so a
    model file whose two fields disagree is refused rather than read one way or the other."""
    if widths is None:
        return bits, None
    checked = check_widths(widths, n_features)
    if bits != max(checked):
        raise ConfigError(f"bits must be the largest of the bit widths ({max(checked)}), got {bits}")
    return bits, (None if len(set(checked)) == 1 else checked)


class ThresholdQuantizer(Quantizer):
    """Quantizers whose code is k = #{j : x > a_j} over 2^n − 1 thresholds per feature.

    With ``widths`` feature f uses only its first 2^w_f − 1 of the 2^n − 1 slots (n the largest
    width; ``active`` marks them). Every comparison sees the unused slots as +inf and the soft
    forms set their sigmoids to 0, so their bits are 0, their gradients 0, codes stay
    ≤ 2^w_f − 1 and a 0-width feature feeds constants only. The parameter itself holds 0
    there: a stored inf would become NaN under Adam's L2 weight decay.
    """

    has_thresholds: ClassVar[bool] = True

    thresholds: torch.Tensor
    active: torch.Tensor

    def __init__(self, n_features: int, bits: int, *, trainable: bool = False,
                 init: str = "quantile", widths: tuple[int, ...] | None = None) -> None:
        bits, widths = resolve_widths(int(n_features), int(bits), widths)
        super().__init__(n_features, bits)
        self.widths = widths
        self.init = init
        self.trainable = bool(trainable)
        zeros = torch.zeros(self.n_features, n_thresholds(self.bits))
        if self.trainable:
            self.thresholds = nn.Parameter(zeros)
        else:
            self.register_buffer("thresholds", zeros)
        used = torch.tensor([n_thresholds(w) for w in self.widths or (self.bits,) * self.n_features])
        # derived from the widths in config(), so not part of the state dict (model files stay as they were)
        self.register_buffer("active", torch.arange(zeros.shape[1]) < used.unsqueeze(-1), persistent=False)

    def config(self) -> dict[str, Any]:
        out = {**super().config(), "trainable": self.trainable, "init": self.init}
        if self.widths is not None:
            out["widths"] = list(self.widths)
        return out

    def init_from_data(self, x: torch.Tensor, splits: SplitPoints | None = None) -> None:
        """Each feature's thresholds initialised at its own width (for widths, the 2^w_f − 1
        quantiles of that feature alone); unused slots hold 0. ``splits``: the trees' split
        points that init ``splits`` places thresholds at."""
        data = x.detach().cpu().double().numpy()
        if self.widths is None:
            a = init_thresholds(data, self.bits, self.init, splits)
        else:
            a = np.zeros(tuple(self.thresholds.shape))
            for f, w in enumerate(self.widths):
                if w:
                    mine = None if splits is None else splits[f:f + 1]
                    a[f, :n_thresholds(w)] = init_thresholds(data[:, f:f + 1], w, self.init, mine)[0]
        with torch.no_grad():
            self.thresholds.copy_(torch.as_tensor(a, dtype=self.thresholds.dtype))

    def effective_thresholds(self) -> torch.Tensor:
        """The thresholds as every comparison sees them: unused slots are +inf (widths only)."""
        if self.widths is None:
            return self.thresholds
        return self.thresholds.masked_fill(~self.active, float("inf"))

    def _only_active(self, soft: torch.Tensor) -> torch.Tensor:
        """Sigmoids [B, F, M] with the unused slots set to exactly 0 (widths only).

        Masking the output, rather than feeding +inf thresholds to the sigmoid, keeps a 0-width
        feature's value out of the result even when it is NaN or ±inf (inf − inf is NaN).
        """
        return soft if self.widths is None else soft.masked_fill(~self.active, 0.0)

    def _exceeds(self, x: torch.Tensor) -> torch.Tensor:
        """[B, F, M] booleans x > a_j (strict: x == a_j gives 0, NaN gives 0)."""
        return x.unsqueeze(-1) > self.effective_thresholds()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The count of thresholds below each value, by binary search in each feature's sorted
        thresholds: the same codes as summing :meth:`_exceeds` without its [B, F, 2^n − 1]
        tensor, which at 12–16 bits is the larger part of encoding a training set."""
        table = self._search_table()
        dtype = torch.promote_types(x.dtype, table.dtype)
        codes = torch.searchsorted(table.to(dtype), x.to(dtype).t().contiguous()).t()
        return codes.masked_fill(torch.isnan(x), 0)  # x > a is false for NaN, as in _exceeds

    def _search_table(self) -> torch.Tensor:
        """Each feature's effective thresholds ascending, NaN as +inf (x > NaN and x > +inf are
        both false for every x)."""
        def table() -> torch.Tensor:
            a = self.effective_thresholds().detach()
            return a.masked_fill(torch.isnan(a), float("inf")).sort(dim=-1).values.contiguous()

        return self._while_thresholds_last("search_table", table)

    def _while_thresholds_last(self, name: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``compute()``, kept under ``name`` until the thresholds change (their version counter
        moves on every in-place update, optimizer steps and ``load_state_dict`` included): a
        server encodes and decodes with the same thresholds for every request."""
        t = self.thresholds
        key = (t._version, t.data_ptr(), t.device)
        cache: dict[str, tuple[Any, torch.Tensor]] = self.__dict__.setdefault("_threshold_cache", {})
        if name not in cache or cache[name][0] != key:
            cache[name] = (key, compute())
        return cache[name][1]

    def sorted_thresholds(self) -> np.ndarray:
        """[F, 2^n − 1] float32: each feature's thresholds ascending, then +inf in unused slots."""
        table = self.effective_thresholds().detach().cpu().float().numpy()
        return np.sort(table, axis=-1).astype(np.float32)
