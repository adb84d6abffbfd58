"""Predictors: the server model behind the codes, chosen apart from how thresholds are made.

The device contract is the thresholds; the server may run any model on the codes they give.
``mlp`` is the paper's network, trained jointly with the quantizer (today's behaviour, bit for
bit). ``gbdt`` fits gradient-boosted trees (LightGBM, the ``gbdt`` extra, imported lazily) on
the hard integer codes of the training part (for ``fp`` on the standardized float features),
early-stopped on a validation share carved from the training part, never from the test split.
``auto`` fits both and keeps the one with the lower validation loss, recording each candidate's.

A tree model is kept as LightGBM's text model: loading it parses text and executes no code from
the file; :meth:`GBDTPredictor.from_text` bounds its size and checks it against the model it
belongs to (features, outputs, and the code range of each feature's width).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from softbits.errors import ConfigError
from softbits.training.methods import get_method

if TYPE_CHECKING:  # the quantizers import torch; this module loads without it
    from softbits.nn.quantizers.threshold_init import SplitPoints

__all__ = ["GBDT_PARAMS", "GBDT_VAL_FRACTION", "MAX_GBDT_BYTES", "PREDICTORS", "GBDTParams",
           "GBDTPredictor", "check_gbdt_installed", "check_predictor", "needs_gbdt", "split_points"]

PREDICTORS = ("mlp", "ensemble", "gbdt", "auto")
#: the share of the training part that early-stops the trees and chooses ``auto``'s predictor,
#: when the config holds no validation share of its own
GBDT_VAL_FRACTION = 0.15
#: the largest tree text a model file may hold (a 2000-tree, 63-leaf model is about 10 MB)
MAX_GBDT_BYTES = 256 * 2**20
#: predictions of this many rows or more use every thread: the tree-scored allocation search
#: predicts a few hundred changed rows per step, 0.75x its time on cpu_act from 128 rather than
#: 1,024 (benchmarks/search_threads.py); a one-sample server request stays on one thread
PREDICT_THREADS_FROM_ROWS = 128


@dataclass(frozen=True)
class GBDTParams:
    """LightGBM settings of the ``gbdt`` predictor (see benchmarks/gbdt_cv.py for how they were
    chosen: K-fold CV on training parts only)."""

    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    max_rounds: int = 3000
    early_stopping_rounds: int = 100
    feature_fraction: float = 1.0
    lambda_l2: float = 0.0

    def lightgbm(self, task: str, n_classes: int, seed: int, threads: int, max_bin: int) -> dict[str, Any]:
        objective: dict[str, Any] = ({"objective": "regression", "metric": "l2"} if task == "regression"
                                     else {"objective": "binary", "metric": "binary_logloss"} if n_classes == 2
                                     else {"objective": "multiclass", "num_class": n_classes,
                                           "metric": "multi_logloss"})
        return {**objective, "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                "min_data_in_leaf": self.min_data_in_leaf, "feature_fraction": self.feature_fraction,
                "lambda_l2": self.lambda_l2, "max_bin": max_bin, "seed": seed, "deterministic": True,
                "force_row_wise": True, "num_threads": threads, "verbosity": -1}


GBDT_PARAMS = GBDTParams()


def check_predictor(name: Any) -> str:
    """``name`` when it is a predictor; a one-line :class:`ConfigError` otherwise."""
    if not isinstance(name, str) or name not in PREDICTORS:
        raise ConfigError(f"unknown predictor {name!r}; choose one of: {', '.join(PREDICTORS)}")
    return name


def check_gbdt_installed() -> None:
    """Refuse, before any training, a tree predictor without LightGBM."""
    if importlib.util.find_spec("lightgbm") is None:
        raise ConfigError("predictor gbdt needs the gbdt extra (missing lightgbm): "
                          "pip install 'softbits[gbdt]'")


def needs_gbdt(method: str, predictor: str, init: str | None = None) -> bool:
    """Whether a training of ``method`` served by ``predictor`` (with threshold ``init``) needs
    the GBDT extra: trees serve, or trees place the thresholds (``bw-tq``, init ``splits``)."""
    return predictor != "mlp" or get_method(method).needs_gbdt or init == "splits"


def _threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


class GBDTPredictor:
    """Gradient-boosted trees on a model's inputs: integer codes [N, F] (``inputs="codes"``) or
    standardized features (``inputs="features"``, the float32 reference).

    :meth:`raw` gives what the MLP's output means: the standardized target [N, 1] for
    regression, class probabilities [N, C] for classification.
    """

    kind = "gbdt"

    def __init__(self, booster: Any, *, task: str, n_outputs: int, inputs: str) -> None:
        self.booster, self.task, self.n_outputs, self.inputs = booster, task, n_outputs, inputs

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *, task: str,
            n_outputs: int, inputs: str, seed: int, max_code: int | None = None,
            params: GBDTParams = GBDT_PARAMS) -> GBDTPredictor:
        """Fit on ``X, y`` (codes or standardized features), early-stopped on ``X_val, y_val``.

        ``max_code``: the largest code any feature can take, so that every code value gets its
        own histogram bin (up to 1024) and the trees can split between any two codes.
        """
        check_gbdt_installed()
        import lightgbm as lgb

        max_bin = 255 if max_code is None else int(min(max(255, max_code + 1), 1024))
        n_classes = n_outputs if task == "classification" else 1
        settings = params.lightgbm(task, n_classes, seed, _threads(), max_bin)
        train = lgb.Dataset(np.asarray(X, dtype=np.float64), label=np.asarray(y, dtype=np.float64),
                            params={"max_bin": max_bin, "verbosity": -1}, free_raw_data=True)
        valid = lgb.Dataset(np.asarray(X_val, dtype=np.float64), label=np.asarray(y_val, dtype=np.float64),
                            reference=train)
        booster = lgb.train(settings, train, num_boost_round=params.max_rounds, valid_sets=[valid],
                            callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)])
        return cls(booster, task=task, n_outputs=n_outputs, inputs=inputs)

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Outputs [N, d_out] in the MLP's units (standardized target, or class probabilities)."""
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] == 0:
            return np.zeros((0, self.n_outputs))
        out = np.asarray(self.booster.predict(X, num_iteration=self.booster.best_iteration or None,
                                              num_threads=1 if X.shape[0] < PREDICT_THREADS_FROM_ROWS else _threads()))
        if self.task == "classification" and self.n_outputs == 2:
            return np.stack([1 - out, out], axis=1)
        return out.reshape(X.shape[0], -1)

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        """MSE (regression, standardized target) or cross-entropy, as the MLP's validation loss."""
        return self.loss_of(self.raw(X), y)

    def loss_of(self, out: np.ndarray, y: np.ndarray) -> float:
        """:meth:`loss` from outputs of :meth:`raw`."""
        if self.task == "classification":
            p = np.clip(out[np.arange(len(y)), np.asarray(y, dtype=np.int64)], 1e-15, 1.0)
            return float(-np.log(p).mean())
        return float(np.mean((out[:, 0] - np.asarray(y, dtype=np.float64)) ** 2))

    @property
    def rounds(self) -> int:
        """Boosting rounds kept (the best iteration of early stopping)."""
        return int(self.booster.best_iteration or self.booster.current_iteration())

    def versions(self) -> dict[str, str]:
        """The tree library's version, recorded with every result the trees produce."""
        import lightgbm

        return {"lightgbm": str(lightgbm.__version__)}

    def header(self) -> dict[str, Any]:
        return {"kind": self.kind, "inputs": self.inputs, "rounds": self.rounds}

    def split_points(self, n_features: int) -> SplitPoints:
        """Per feature, the distinct values the trees split at (x ≤ value goes left, sorted) and
        the gain summed over each value's splits, read from the text model (split values at full
        precision, gains as the text keeps them): a fifth of the time of walking the JSON dump."""
        text = self.to_text()
        features, values, gains = (np.array(" ".join(re.findall(rf"^{key}=(.*)$", text, flags=re.MULTILINE)).split(),
                                            dtype=dtype)
                                   for key, dtype in (("split_feature", np.int64), ("threshold", np.float64),
                                                      ("split_gain", np.float64)))
        points: SplitPoints = []
        for f in range(n_features):
            mine = features == f
            distinct, at = np.unique(values[mine], return_inverse=True)
            points.append((distinct, np.bincount(at, weights=gains[mine], minlength=distinct.size)))
        return points

    def to_text(self) -> str:
        return str(self.booster.model_to_string(num_iteration=self.booster.best_iteration or None))

    @classmethod
    def from_text(cls, text: bytes, header: dict[str, Any], *, task: str, n_features: int,
                  n_outputs: int, max_codes: list[int] | None) -> GBDTPredictor:
        """A tree model read back from a model file; ``ValueError`` says what is wrong with it.

        ``max_codes``: each feature's largest code (None for float inputs). A tree that splits a
        feature above its largest code was fitted on codes of another width.
        """
        if len(text) > MAX_GBDT_BYTES:
            raise ValueError(f"the tree model holds {len(text)} bytes, more than {MAX_GBDT_BYTES}")
        inputs = header.get("inputs")
        if inputs not in ("codes", "features") or (inputs == "codes") != (max_codes is not None):
            raise ValueError(f"predictor.inputs {inputs!r} does not fit a model "
                             f"{'with' if max_codes is not None else 'without'} codes")
        try:
            model = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the tree model is not UTF-8 text") from None
        if not model.startswith("tree\n"):
            raise ValueError("the tree model is not a LightGBM text model")
        check_gbdt_installed()
        import lightgbm as lgb

        try:
            booster = lgb.Booster(model_str=model)
        except Exception as exc:  # LightGBM raises its own LightGBMError for any parse failure
            raise ValueError(f"the tree model does not parse ({str(exc).splitlines()[0][:200]})") from None
        if booster.num_feature() != n_features:
            raise ValueError(f"the trees read {booster.num_feature()} features, the model has {n_features}")
        per_round = booster.num_model_per_iteration()
        expected = n_outputs if task == "classification" and n_outputs > 2 else 1
        if per_round != expected:
            raise ValueError(f"the trees give {per_round} outputs per round, a {task} model with "
                             f"{n_outputs} outputs needs {expected}")
        if max_codes is not None:
            _check_code_ranges(model, max_codes)
        return cls(booster, task=task, n_outputs=n_outputs, inputs=inputs)


def _check_code_ranges(model: str, max_codes: list[int]) -> None:
    """Every split of feature f lies below its largest code (LightGBM's ``feature_infos`` line
    gives each feature's range as seen in training: ``[lo:hi]``, or ``none`` for a constant)."""
    match = re.search(r"^feature_infos=(.*)$", model, flags=re.MULTILINE)
    if match is None:
        raise ValueError("the tree model has no feature_infos line")
    infos = match.group(1).split()
    if len(infos) != len(max_codes):
        raise ValueError(f"feature_infos names {len(infos)} features, the model has {len(max_codes)}")
    for f, (info, top) in enumerate(zip(infos, max_codes, strict=True)):
        if info == "none":
            continue
        bounds = re.fullmatch(r"\[(-?[0-9.e+]+):(-?[0-9.e+]+)\]", info)
        if bounds is None:
            raise ValueError(f"feature {f} of the tree model is not numeric ({info[:40]})")
        lo, hi = float(bounds.group(1)), float(bounds.group(2))
        if lo < 0 or hi > top:
            raise ValueError(f"the trees saw codes {lo:g}..{hi:g} for feature {f}, whose width allows 0..{top}")


#: split points of recent fits, by a digest of their rows and settings (see :func:`split_points`)
_SPLITS: OrderedDict[bytes, SplitPoints] = OrderedDict()
_SPLITS_KEPT = 4


def split_points(X: np.ndarray, y: np.ndarray, *, task: str, n_outputs: int, seed: int) -> SplitPoints:
    """Where float32 trees fitted on rows ``X, y`` of the training part split each feature
    (:meth:`GBDTPredictor.split_points`): the trees early-stop on :data:`GBDT_VAL_FRACTION` of
    those rows (seeded), so no row outside them is read. Init ``splits`` places thresholds there.

    The fit is deterministic, and ``auto`` builds a ``bw-tq`` quantizer on the same rows twice
    (screening, then training): the last few results are kept by a digest of the rows, targets
    and settings. The arrays returned are shared; do not modify them."""
    X, y = np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y)
    digest = hashlib.blake2b(repr((X.shape, y.shape, y.dtype.str, task, n_outputs, seed)).encode(), digest_size=16)
    digest.update(X.data)
    digest.update(y.data)
    key = digest.digest()
    if key in _SPLITS:
        _SPLITS.move_to_end(key)
        return _SPLITS[key]
    n_val = max(1, int(round(GBDT_VAL_FRACTION * X.shape[0])))
    if X.shape[0] - n_val < 2:
        raise ConfigError(f"split-point thresholds need more training rows than {X.shape[0]}")
    order = np.random.default_rng(seed).permutation(X.shape[0])
    val, fit = order[:n_val], order[n_val:]
    trees = GBDTPredictor.fit(X[fit], y[fit], X[val], y[val], task=task, n_outputs=n_outputs,
                              inputs="features", seed=seed)
    _SPLITS[key] = points = trees.split_points(X.shape[1])
    while len(_SPLITS) > _SPLITS_KEPT:
        _SPLITS.popitem(last=False)
    return points
