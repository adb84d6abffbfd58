"""The layer: what a researcher drops into their own PyTorch model (torch only).

- :mod:`~softbits.nn.quantizers` — per-feature input quantizers (Bw-SQ's
  :class:`BitwiseQuantizer`, the baselines) and their threshold initialisations;
- :mod:`~softbits.nn.schedules` — temperature schedules that anneal soft steps towards hard ones;
- :mod:`~softbits.nn.network` — the MLP and the quantizer + MLP module softbits trains;
- :mod:`~softbits.nn.batched` — K same-shaped members as one module (ensembles, stacked training).

Nothing here imports training, experiments, device or serve code. The names load lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BitwiseQuantizer": "quantizers", "LLTQuantizer": "quantizers", "LSQQuantizer": "quantizers",
    "MidpointQuantizer": "quantizers", "Quantizer": "quantizers", "SoftQuantizer": "quantizers",
    "ThresholdQuantizer": "quantizers", "build_quantizer": "quantizers",
    "quantile_thresholds": "quantizers", "minmax_thresholds": "quantizers",
    "SCHEDULES": "schedules", "TemperatureSchedule": "schedules", "make_schedule": "schedules",
    "QuantizedMLP": "network", "build_mlp": "network", "build_network": "network",
    "BatchedMLP": "batched", "BatchedLinear": "batched", "MemberMean": "batched",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'softbits.nn' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"softbits.nn.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
