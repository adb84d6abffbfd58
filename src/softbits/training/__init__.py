"""Training: from a dataset and a :class:`TrainConfig` to a :class:`TrainedModel`.

- :mod:`~softbits.training.config` — the validated settings of one training and the recipes;
- :mod:`~softbits.training.methods` — the method registry (which quantizer, which network);
- :mod:`~softbits.training.engine` — the epoch loop of one network;
- :mod:`~softbits.training.stacked` — many same-shaped trainings as one batched network;
- :mod:`~softbits.training.train` — a training on a split, its test metrics;
- :mod:`~softbits.training.allocation` — per-feature widths under a payload budget;
- :mod:`~softbits.training.trained_model` — the trained model and its file;
- :mod:`~softbits.training.estimators` — scikit-learn estimators.

The names load lazily so that ``softbits --help`` does not import torch.
"""

from __future__ import annotations

from softbits.lazy import lazy_exports

_EXPORTS = {
    "RECIPES": "config", "TrainConfig": "config", "resolve": "config",
    "METHODS": "methods", "Method": "methods", "get_method": "methods", "register_method": "methods",
    "FitResult": "engine", "fit": "engine",
    "fit_stacked": "stacked",
    "TestMetrics": "train", "train_dataset": "train", "train_on_split": "train",
    "allocate": "allocation", "train_allocated": "allocation",
    "TrainedModel": "trained_model",
    "SoftbitsClassifier": "estimators", "SoftbitsRegressor": "estimators",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS, __all__)
