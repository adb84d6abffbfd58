"""The paper's split and scaling: 90/10 with ``random_state=seed``, StandardScaler on X and y."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from softbits.data.loading import Dataset
from softbits.errors import DataError

__all__ = ["Standardizer", "Split", "split_and_scale"]


@dataclass(frozen=True)
class Standardizer:
    """Per-column mean and scale (sklearn's StandardScaler semantics, zero scale → 1)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, a: np.ndarray) -> "Standardizer":
        a = np.asarray(a, dtype=np.float64)
        mean = a.mean(axis=0)
        scale = a.std(axis=0)
        scale = np.where(scale == 0.0, 1.0, scale)
        return cls(np.atleast_1d(mean), np.atleast_1d(scale))

    def transform(self, a: np.ndarray) -> np.ndarray:
        return (np.asarray(a, dtype=np.float64) - self.mean) / self.scale

    def inverse(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float64) * self.scale + self.mean


@dataclass
class Split:
    """Scaled train/test arrays and the scalers fit on the training part."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    x_scaler: Standardizer
    y_scaler: Standardizer | None  # None for classification


def scale_split(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                y_test: np.ndarray, task: str) -> Split:
    xs = Standardizer.fit(X_train)
    ys = Standardizer.fit(y_train.reshape(-1, 1)) if task == "regression" else None
    if ys is not None:
        y_train = ys.transform(y_train.reshape(-1, 1))[:, 0]
        y_test = ys.transform(y_test.reshape(-1, 1))[:, 0]
    return Split(xs.transform(X_train), y_train, xs.transform(X_test), y_test, xs, ys)


def split_and_scale(ds: Dataset, seed: int, test_size: float = 0.1) -> Split:
    """Hold out ``test_size`` with ``random_state=seed``; fit scalers on the training part."""
    if ds.n_samples < 4:
        raise DataError(f"{ds.name}: {ds.n_samples} rows are too few to split into train and test")
    X_tr, X_te, y_tr, y_te = train_test_split(ds.X, ds.y, test_size=test_size, random_state=seed)
    return scale_split(X_tr, y_tr, X_te, y_te, ds.task)
