"""Threshold initialisations and the midpoint decoder, computed on the standardized training split."""

from __future__ import annotations

import numpy as np

from softbits.codes import n_levels, n_thresholds
from softbits.errors import ConfigError

__all__ = ["n_thresholds", "minmax_thresholds", "quantile_thresholds", "midpoint_levels",
           "init_thresholds", "THRESHOLD_INITS"]

THRESHOLD_INITS = ("quantile", "minmax")


def minmax_thresholds(x: np.ndarray, bits: int) -> np.ndarray:
    """a_k = min + (k − ½)·s with s = (max − min)/M, k = 1..M, per feature → [F, M]."""
    x = np.asarray(x, dtype=np.float64)
    m = n_thresholds(bits)
    lo, hi = x.min(axis=0), x.max(axis=0)
    step = (hi - lo) / m
    k = np.arange(1, m + 1, dtype=np.float64)
    return lo[:, None] + (k[None, :] - 0.5) * step[:, None]


def quantile_thresholds(x: np.ndarray, bits: int) -> np.ndarray:
    """The k/2^n quantiles (linear interpolation), k = 1..M, per feature → [F, M]."""
    x = np.asarray(x, dtype=np.float64)
    levels = np.arange(1, n_thresholds(bits) + 1, dtype=np.float64) / n_levels(bits)
    return np.quantile(x, levels, axis=0, method="linear").T


def init_thresholds(x: np.ndarray, bits: int, init: str) -> np.ndarray:
    if init == "quantile":
        return quantile_thresholds(x, bits)
    if init == "minmax":
        return minmax_thresholds(x, bits)
    raise ConfigError(f"unknown threshold init {init!r}; choose one of: {', '.join(THRESHOLD_INITS)}")


def midpoint_levels(thresholds: np.ndarray) -> np.ndarray:
    """Decoded value per code for sorted thresholds [F, M] → levels [F, M + 1] (needs M ≥ 2).

    q_0 = a_1 − (a_2 − a_1)/2, q_j = (a_j + a_{j+1})/2, q_M = a_M + (a_M − a_{M−1})/2.
    """
    a = np.sort(np.asarray(thresholds, dtype=np.float64), axis=-1)
    if a.shape[-1] < 2:
        raise ConfigError("the midpoint decoder needs at least 2 thresholds (bits >= 2)")
    inner = (a[..., :-1] + a[..., 1:]) / 2
    first = a[..., :1] - (a[..., 1:2] - a[..., :1]) / 2
    last = a[..., -1:] + (a[..., -1:] - a[..., -2:-1]) / 2
    return np.concatenate([first, inner, last], axis=-1)
