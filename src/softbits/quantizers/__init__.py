"""Input quantizers: one module per family, all sharing :class:`Quantizer`'s device view."""

from __future__ import annotations

from typing import Any

from softbits.quantizers.base import Quantizer, ThresholdQuantizer
from softbits.quantizers.bitwise import BitwiseQuantizer
from softbits.quantizers.fixed import MidpointQuantizer
from softbits.quantizers.init import (
    THRESHOLD_INITS,
    midpoint_levels,
    minmax_thresholds,
    n_thresholds,
    quantile_thresholds,
)
from softbits.quantizers.llt import LLTQuantizer
from softbits.quantizers.lsq import LSQQuantizer
from softbits.quantizers.soft import SoftQuantizer

__all__ = [
    "QUANTIZERS",
    "THRESHOLD_INITS",
    "BitwiseQuantizer",
    "LLTQuantizer",
    "LSQQuantizer",
    "MidpointQuantizer",
    "Quantizer",
    "SoftQuantizer",
    "ThresholdQuantizer",
    "build_quantizer",
    "midpoint_levels",
    "minmax_thresholds",
    "n_thresholds",
    "quantile_thresholds",
]

QUANTIZERS: dict[str, type[Quantizer]] = {
    cls.kind: cls for cls in (BitwiseQuantizer, SoftQuantizer, MidpointQuantizer, LSQQuantizer, LLTQuantizer)
}


def build_quantizer(kind: str, config: dict[str, Any]) -> Quantizer:
    """Rebuild a quantizer from its ``kind`` and :meth:`Quantizer.config` (no data needed)."""
    return QUANTIZERS[kind](**config)
