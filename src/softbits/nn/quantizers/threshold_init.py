"""Threshold initialisations and the midpoint decoder, computed on the standardized training split."""

from __future__ import annotations

import numpy as np

from softbits.codes import n_levels, n_thresholds
from softbits.errors import ConfigError

__all__ = ["n_thresholds", "minmax_thresholds", "quantile_thresholds", "bin_thresholds", "split_thresholds",
           "midpoint_levels", "init_thresholds", "SplitPoints", "THRESHOLD_INITS"]

THRESHOLD_INITS = ("quantile", "minmax", "bins", "splits")

#: per feature, the distinct split values of a tree model and the gain summed over each
#: value's splits (both [S_f]); ``softbits.training.predictors.split_points`` makes them
SplitPoints = list[tuple[np.ndarray, np.ndarray]]


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


def _column_bins(column: np.ndarray, m: int) -> np.ndarray:
    """Up to ``m`` boundaries of one feature, equal-frequency over its distinct values.

    Walking the sorted distinct values, a bin closes at its share of the rows not yet binned
    (rows left / bins left), so a value repeated in more rows than a share fills one bin and the
    other bins re-spread the rest. Boundaries lie halfway between neighbouring distinct
    values: no training value sits on one.
    """
    values, counts = np.unique(column[np.isfinite(column)], return_counts=True)
    if values.size < 2:
        return np.full(m, values[0] if values.size else 0.0)
    bounds: list[float] = []
    left, held = int(counts.sum()), 0
    for i in range(values.size - 1):
        held += int(counts[i])
        share = left / (m + 1 - len(bounds))
        # close at the share, or when the next value would overshoot it more than stopping
        # short does, or when every distinct value left can have a bin of its own
        if (held >= share or held + counts[i + 1] - share > share - held
                or values.size - 1 - i <= m - len(bounds)):
            bounds.append((values[i] + values[i + 1]) / 2)
            left, held = left - held, 0
            if len(bounds) == m:
                break
    out = np.asarray(bounds)
    return np.concatenate([out, np.full(m - out.size, out[-1] if out.size else values[-1])])


def bin_thresholds(x: np.ndarray, bits: int) -> np.ndarray:
    """Tie-aware equal-frequency boundaries per feature → [F, M] (the codes trees split on).

    Quantiles of a feature with many repeated values coincide, and a code spends thresholds on
    nothing; here every bin holds at least one distinct value, a frequent value gets a bin of
    its own, and a feature with fewer distinct values than 2^n bins gets one bin per value (its
    unused thresholds repeat the last one, so their codes never occur).
    """
    x = np.asarray(x, dtype=np.float64)
    m = n_thresholds(bits)
    return np.stack([_column_bins(x[:, f], m) for f in range(x.shape[1])]) if x.shape[1] else np.zeros((0, m))


def split_thresholds(x: np.ndarray, bits: int, splits: SplitPoints) -> np.ndarray:
    """Gain-weighted quantiles of float32 trees' split values per feature → [F, M].

    Threshold k sits where the split gain summed from below first reaches (k − ½)/M of the
    feature's total: the codes resolve the values where the trees' splits gained most. Nested
    like quantiles (every 2nd threshold at n bits is about the n − 1-bit set), so the allocator
    can coarsen them. A value carrying more than 1/M of the gain takes several thresholds (codes
    that never occur); a feature the trees never split on gets :func:`bin_thresholds`.
    """
    x = np.asarray(x, dtype=np.float64)
    m = n_thresholds(bits)
    if len(splits) != x.shape[1]:
        raise ConfigError(f"split points for {len(splits)} features, but the data has {x.shape[1]}")
    out = np.empty((x.shape[1], m))
    for f, (values, gains) in enumerate(splits):
        values, gains = np.asarray(values, dtype=np.float64), np.asarray(gains, dtype=np.float64)
        keep = np.isfinite(values) & np.isfinite(gains) & (gains > 0)
        values, gains = values[keep], gains[keep]
        if values.size == 0:
            out[f] = bin_thresholds(x[:, f:f + 1], bits)[0]
            continue
        order = np.argsort(values)
        values, share = values[order], np.cumsum(gains[order]) / gains.sum()
        at = np.searchsorted(share, (np.arange(m) + 0.5) / m)
        out[f] = values[np.minimum(at, values.size - 1)]
    return out


def init_thresholds(x: np.ndarray, bits: int, init: str, splits: SplitPoints | None = None) -> np.ndarray:
    """Thresholds [F, M] of init ``init`` on standardized rows ``x``; ``splits`` only for ``splits``."""
    if init == "splits":
        if splits is None:
            raise ConfigError("threshold init 'splits' needs the split points of trees fitted on the training rows "
                              "(softbits.training.predictors.split_points)")
        return split_thresholds(x, bits, splits)
    if init == "quantile":
        return quantile_thresholds(x, bits)
    if init == "bins":
        return bin_thresholds(x, bits)
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
