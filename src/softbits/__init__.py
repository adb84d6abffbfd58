"""softbits: trainable bitwise soft quantization of input features (Bw-SQ) and its baselines.

The public names below load lazily, so that ``softbits --help`` and the error paths do not pay
for importing torch and scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "TrainedModel": "softbits.trained_model",
    "TrainConfig": "softbits.config",
    "Dataset": "softbits.data",
    "load_dataset": "softbits.data",
    "load_table": "softbits.data",
    "split_and_scale": "softbits.data",
    "ConfigError": "softbits.errors",
    "DataError": "softbits.errors",
    "SoftbitsError": "softbits.errors",
    "SoftbitsClassifier": "softbits.estimator",
    "SoftbitsRegressor": "softbits.estimator",
    "run_protocol": "softbits.experiments.run",
    "METHODS": "softbits.methods",
    "get_method": "softbits.methods",
    "train_dataset": "softbits.train",
    "train_on_split": "softbits.train",
    "TestMetrics": "softbits.train",
    "BitwiseQuantizer": "softbits.quantizers",
    "MidpointQuantizer": "softbits.quantizers",
    "SoftQuantizer": "softbits.quantizers",
    "TemperatureSchedule": "softbits.schedules",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'softbits' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
