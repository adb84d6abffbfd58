"""The layer: what a researcher drops into their own PyTorch model (torch only).

- :mod:`~softbits.nn.quantizers` — per-feature input quantizers (Bw-SQ's
  :class:`BitwiseQuantizer`, the baselines) and their threshold initialisations;
- :mod:`~softbits.nn.schedules` — temperature schedules that anneal soft steps towards hard ones;
- :mod:`~softbits.nn.network` — the MLP and the quantizer + MLP module softbits trains;
- :mod:`~softbits.nn.batched` — K same-shaped members as one module (ensembles, stacked training).

Nothing here imports training, experiments, device or serve code. The names load lazily.
"""

from __future__ import annotations

from softbits.lazy import lazy_exports

_EXPORTS = {
    "BitwiseQuantizer": "quantizers", "LLTQuantizer": "quantizers", "LSQQuantizer": "quantizers",
    "MidpointQuantizer": "quantizers", "Quantizer": "quantizers", "SoftQuantizer": "quantizers",
    "ThresholdQuantizer": "quantizers", "build_quantizer": "quantizers",
    "quantile_thresholds": "quantizers", "minmax_thresholds": "quantizers",
    "SCHEDULES": "schedules", "Annealer": "schedules", "anneal": "schedules", "TemperatureSchedule": "schedules", "make_schedule": "schedules",
    "QuantizedMLP": "network", "build_mlp": "network", "build_network": "network",
    "BatchedMLP": "batched", "BatchedLinear": "batched", "MemberMean": "batched",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS, __all__)
