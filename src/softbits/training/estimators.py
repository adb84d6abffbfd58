"""scikit-learn estimators around one training (softbits.training.train): ``fit`` / ``predict`` / ``transform`` (codes).

They standardize X (and y for regression) on the data given to ``fit``, as the paper does on its
training split, and keep the trained :class:`~softbits.training.trained_model.TrainedModel` in ``model_``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from softbits.data import Split, Standardizer
from softbits.training.config import TrainConfig, resolve
from softbits.training.train import train_on_split
from softbits.training.trained_model import TrainedModel

__all__ = ["SoftbitsRegressor", "SoftbitsClassifier"]


class _SoftbitsBase(TransformerMixin, BaseEstimator):
    """Parameters are :class:`~softbits.training.config.TrainConfig`'s fields (numpy-style, same names):
    ``method`` any registered method, ``members`` the MLPs of an ensemble method such as
    ``bw-sq-ens`` (None: the method's default). ``recipe`` (:data:`softbits.training.config.RECIPES`)
    fills ``weight_decay``, ``val_fraction``, ``optimizer``, ``lr_schedule`` and
    ``warmup_epochs`` where they are None; a value given wins. ``bits_per_feature``: one code
    width per column of X (0: the column is not sent), threshold methods only.
    ``threshold_lr_scale``: the quantizer's parameters train at ``lr`` times this (methods that
    learn a quantizer; 1 is the paper's one rate). ``predictor``: the server model behind the
    codes, ``mlp`` (the paper's), ``gbdt`` (trees on the codes, ``softbits[gbdt]``) or ``auto``
    (:mod:`softbits.training.predictors`)."""

    def __init__(self, method: str = "bw-sq", bits: int = 4, layers: int = 5, neurons: int = 128,
                 epochs: int = 30, lr: float = 1e-3, weight_decay: float | None = None,
                 dropout: float = 0.0, decrease_factor: float = 1e-3,
                 schedule: str = "exponential", batch_size: int = 512, init: str = "quantile",
                 seed: int = 0, device: str = "auto", members: int | None = None,
                 recipe: str = "paper", optimizer: str | None = None,
                 lr_schedule: str | None = None, warmup_epochs: int | None = None,
                 val_fraction: float | None = None,
                 bits_per_feature: tuple[int, ...] | None = None,
                 threshold_lr_scale: float = 1.0, predictor: str = "mlp") -> None:
        self.method = method
        self.bits = bits
        self.layers = layers
        self.neurons = neurons
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.decrease_factor = decrease_factor
        self.schedule = schedule
        self.batch_size = batch_size
        self.init = init
        self.seed = seed
        self.device = device
        self.members = members
        self.recipe = recipe
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.val_fraction = val_fraction
        self.bits_per_feature = bits_per_feature
        self.threshold_lr_scale = threshold_lr_scale
        self.predictor = predictor

    _task: str = "regression"

    def _config(self) -> TrainConfig:
        params = self.get_params()
        return resolve(params.pop("recipe"), task=self._task, **params)

    def _fit(self, X: np.ndarray, y: np.ndarray, classes: list[str] | None) -> TrainedModel:
        config = self._config()
        xs = Standardizer.fit(X)
        ys = Standardizer.fit(y.reshape(-1, 1)) if self._task == "regression" else None
        y_std = ys.transform(y.reshape(-1, 1))[:, 0] if ys is not None else y
        X_std = xs.transform(X)
        # the fit data doubles as the evaluation split; metrics_ are training metrics
        split = Split(X_std, y_std, X_std, y_std, xs, ys)
        names = [str(n) for n in getattr(self, "feature_names_in_", range(X.shape[1]))]
        return train_on_split(split, config, task=self._task, feature_names=names, classes=classes)

    def transform(self, X: Any) -> np.ndarray:
        """The n-bit codes a device would send, [N, F] integers."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.model_.encode(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []  # transform gives integer codes, by design
        return tags

    @property
    def metrics_(self) -> dict[str, Any]:
        check_is_fitted(self, "model_")
        return self.model_.metrics


class SoftbitsRegressor(RegressorMixin, _SoftbitsBase):
    """Quantized-input MLP regressor (Bw-SQ by default)."""

    _task = "regression"

    def fit(self, X: Any, y: Any) -> SoftbitsRegressor:
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self.model_ = self._fit(X, np.asarray(y, dtype=np.float64), None)
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.model_.predict(X)


class SoftbitsClassifier(ClassifierMixin, _SoftbitsBase):
    """Quantized-input MLP classifier (cross-entropy)."""

    _task = "classification"

    def fit(self, X: Any, y: Any) -> SoftbitsClassifier:
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        self.model_ = self._fit(X, codes.astype(np.int64), [str(c) for c in self.classes_])
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.classes_[self.model_.predict(X)]
