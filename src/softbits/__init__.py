"""softbits: trainable bitwise soft quantization of input features (Bw-SQ) and its baselines.

The public names below load lazily, so that ``softbits --help`` and the error paths do not pay
for importing torch and scikit-learn.
"""

from __future__ import annotations

from softbits.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "TrainedModel": "softbits.training.trained_model",
    "TrainConfig": "softbits.training.config",
    "Dataset": "softbits.data",
    "load_dataset": "softbits.data",
    "load_table": "softbits.data",
    "split_and_scale": "softbits.data",
    "ConfigError": "softbits.errors",
    "DataError": "softbits.errors",
    "SoftbitsError": "softbits.errors",
    "SoftbitsClassifier": "softbits.training.estimators",
    "SoftbitsRegressor": "softbits.training.estimators",
    "run_protocol": "softbits.experiments.reproduce",
    "METHODS": "softbits.training.methods",
    "get_method": "softbits.training.methods",
    "train_dataset": "softbits.training.train",
    "train_on_split": "softbits.training.train",
    "TestMetrics": "softbits.training.train",
    "BitwiseQuantizer": "softbits.nn.quantizers",
    "MidpointQuantizer": "softbits.nn.quantizers",
    "SoftQuantizer": "softbits.nn.quantizers",
    "TemperatureSchedule": "softbits.nn.schedules",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS, __all__)
