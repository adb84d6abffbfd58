"""Input quantizers: one module per family, all sharing :class:`Quantizer`'s device view."""

from __future__ import annotations

import inspect
import numbers
from typing import Any

from softbits.codes import check_bits, check_widths
from softbits.errors import ConfigError
from softbits.nn.quantizers.base import Quantizer, ThresholdQuantizer
from softbits.nn.quantizers.bitwise import BitwiseQuantizer
from softbits.nn.quantizers.llt import LLTQuantizer
from softbits.nn.quantizers.lsq import LSQQuantizer
from softbits.nn.quantizers.midpoint import MidpointQuantizer
from softbits.nn.quantizers.soft import SoftQuantizer
from softbits.nn.quantizers.threshold_init import (
    THRESHOLD_INITS,
    SplitPoints,
    bin_thresholds,
    midpoint_levels,
    minmax_thresholds,
    n_thresholds,
    quantile_thresholds,
    split_thresholds,
)

__all__ = [
    "QUANTIZERS",
    "THRESHOLD_INITS",
    "BitwiseQuantizer",
    "LLTQuantizer",
    "LSQQuantizer",
    "MidpointQuantizer",
    "Quantizer",
    "SoftQuantizer",
    "SplitPoints",
    "ThresholdQuantizer",
    "build_quantizer",
    "midpoint_levels",
    "minmax_thresholds",
    "n_thresholds",
    "bin_thresholds",
    "quantile_thresholds",
    "split_thresholds",
]

QUANTIZERS: dict[str, type[Quantizer]] = {
    cls.kind: cls for cls in (BitwiseQuantizer, SoftQuantizer, MidpointQuantizer, LSQQuantizer, LLTQuantizer)
}


def _check_option(name: str, value: Any) -> None:
    """The constructors trust their arguments; a config read from a file must be checked first."""
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if name == "n_features" and not (is_int and value >= 1):
        raise ConfigError(f"n_features must be an integer >= 1, got {value!r}")
    if name == "bits":
        check_bits(value)
    if name == "granularity" and not (is_int and value >= 1):
        raise ConfigError(f"granularity must be an integer >= 1, got {value!r}")
    if name in ("trainable", "soft") and not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if name == "init" and not (isinstance(value, str) and value in THRESHOLD_INITS):
        raise ConfigError(f"init must be one of {', '.join(THRESHOLD_INITS)}, got {value!r}")
    if name == "widths" and value is not None:
        check_widths(value)


def build_quantizer(kind: str, config: dict[str, Any]) -> Quantizer:
    """Rebuild a quantizer from its ``kind`` and :meth:`Quantizer.config` (no data needed).

    Both usually come from a model file, so they are validated: an unknown kind or option, a
    missing one or a value of the wrong type is a :class:`ConfigError`, not a traceback.
    """
    if not isinstance(kind, str) or kind not in QUANTIZERS:
        raise ConfigError(f"unknown quantizer kind {kind!r}; known kinds: {', '.join(QUANTIZERS)}")
    if not isinstance(config, dict):
        raise ConfigError(f"quantizer config must be a mapping, got {type(config).__name__}")
    cls = QUANTIZERS[kind]
    for name, only in cls.legacy_options.items():
        if name in config:
            if config[name] != only:
                raise ConfigError(f"{kind} quantizer: {name} must be {only!r}, got {config[name]!r}")
            config = {k: v for k, v in config.items() if k != name}
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self")
    unknown = sorted(map(str, set(config) - set(params)))
    if unknown:
        raise ConfigError(f"{kind} quantizer: unknown option {', '.join(unknown)}")
    missing = [name for name, p in params.items() if p.default is p.empty and name not in config]
    if missing:
        raise ConfigError(f"{kind} quantizer: missing {', '.join(missing)}")
    for name, value in config.items():
        _check_option(name, value)
    return cls(**config)
