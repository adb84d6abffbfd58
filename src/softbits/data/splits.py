"""The paper's split and scaling: 90/10 with ``random_state=seed``, StandardScaler on X and y."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from softbits.data.loading import Dataset
from softbits.errors import DataError

__all__ = ["FLOAT32_MAX", "Standardizer", "Split", "scale_split", "split_and_scale"]


#: the largest float32: features and scaled values travel and train as float32
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _column_name(names: Sequence[str] | None, j: int) -> str:
    return repr(str(names[j])) if names is not None and j < len(names) else f"column {j}"


@dataclass(frozen=True)
class Standardizer:
    """Per-column mean and scale (sklearn's StandardScaler semantics, zero scale → 1)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, a: np.ndarray, names: Sequence[str] | None = None) -> Standardizer:
        """Fit on ``a`` [N, F]; ``names`` label the columns in errors.

        Finite values can still overflow float64 in the sum or the squares (a column near 1e308, a
        target near 1e200); the mean or scale is then inf/NaN and every scaled value NaN, so such
        data is refused here rather than trained into a NaN model.
        """
        a = np.asarray(a, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            mean = np.atleast_1d(a.mean(axis=0))
            scale = np.atleast_1d(a.std(axis=0))
        bad = ~(np.isfinite(mean) & np.isfinite(scale))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise DataError(f"{_column_name(names, j)} is too large to standardize (its mean {mean[j]:.3g} "
                            f"and standard deviation {scale[j]:.3g} overflow float64); rescale that column")
        return cls(mean, np.where(scale == 0.0, 1.0, scale))

    def transform(self, a: np.ndarray) -> np.ndarray:
        return (np.asarray(a, dtype=np.float64) - self.mean) / self.scale

    def inverse(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float64) * self.scale + self.mean


def _check_float32(a: np.ndarray, names: Sequence[str] | None, what: str) -> None:
    """Refuse values whose magnitude has no float32 (they would become ±inf in training)."""
    a = np.asarray(a, dtype=np.float64)
    a = a[:, None] if a.ndim == 1 else a
    over = ~(np.abs(a) <= FLOAT32_MAX)
    if over.any():
        i, j = (int(k[0]) for k in np.nonzero(over))
        raise DataError(f"{_column_name(names, j)} {what} {a[i, j]:.3g}, beyond float32 "
                        f"(|x| <= {FLOAT32_MAX:.3g}); rescale or drop that column")


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
                y_test: np.ndarray, task: str, *, feature_names: Sequence[str] | None = None,
                target_name: str | None = None) -> Split:
    """Fit the scalers on the training part and scale both parts.

    Raw features must fit float32 (what a device holds and the encoder compares), and every
    scaled value must too: a test value far outside a nearly constant training column would
    otherwise reach the network as inf. The names only label the errors.
    """
    _check_float32(X_train, feature_names, "holds")
    _check_float32(X_test, feature_names, "holds")
    xs = Standardizer.fit(X_train, feature_names)
    X_train, X_test = xs.transform(X_train), xs.transform(X_test)
    _check_float32(X_train, feature_names, "scales to")
    _check_float32(X_test, feature_names, "scales to")
    ys = None
    if task == "regression":
        target = ["target" if target_name is None else target_name]
        ys = Standardizer.fit(y_train.reshape(-1, 1), target)
        y_train = ys.transform(y_train.reshape(-1, 1))[:, 0]
        y_test = ys.transform(y_test.reshape(-1, 1))[:, 0]
        _check_float32(y_train, target, "scales to")
        _check_float32(y_test, target, "scales to")
    return Split(X_train, y_train, X_test, y_test, xs, ys)


def split_and_scale(ds: Dataset, seed: int, test_size: float = 0.1) -> Split:
    """Hold out ``test_size`` with ``random_state=seed``; fit scalers on the training part."""
    if ds.n_samples < 4:
        raise DataError(f"{ds.name}: {ds.n_samples} rows are too few to split into train and test")
    X_tr, X_te, y_tr, y_te = train_test_split(ds.X, ds.y, test_size=test_size, random_state=seed)
    return scale_split(X_tr, y_tr, X_te, y_te, ds.task, feature_names=ds.feature_names,
                       target_name=ds.target_name)
