"""One training of the protocol as a pure, picklable function: ``run(task) -> TaskResult``.

A :class:`Task` names a dataset, the method that trains, a setting, the phase (``cv<K>`` fold
of the search or ``test`` repeat) and the evaluations that one training serves: a full-precision
training is evaluated as FP and, behind fixed quantizers, as Po-MQ/Po-QQ at every bit width.
Local processes and Dask workers call :func:`run` alike; it never touches the store.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from sklearn.model_selection import KFold, train_test_split

from softbits.data import Dataset, Split, load_dataset, scale_split, split_and_scale
from softbits.experiments.settings import Setting
from softbits.methods import get_method
from softbits.pipeline import attach_post_quantizer, train_on_split
from softbits.training import evaluate, target_tensor, to_tensor

__all__ = ["Evaluation", "ResultKey", "Task", "TaskResult", "run", "load_cached", "TEST_PHASE",
           "cv_phase"]

TEST_PHASE = "test"


def cv_phase(n_folds: int) -> str:
    """Phase name of a K-fold search: folds of different K never share keys."""
    return f"cv{n_folds}"


@dataclass(frozen=True)
class Evaluation:
    """A (method, bits) cell that a training is evaluated for."""

    method: str
    bits: int


@dataclass(frozen=True)
class ResultKey:
    """The store's unique key of one result row."""

    dataset: str
    method: str
    bits: int
    setting_id: str
    phase: str
    index: int
    seed: int


@dataclass(frozen=True)
class Task:
    """One training and the evaluations it serves.

    ``index`` is the fold (search) or the repeat (test); ``seed`` drives the split and the
    training. ``threads`` pins torch's intra-op threads (1 when several trainings share a
    machine), so that local and Dask runs compute the same numbers.
    """

    dataset: str
    train_method: str
    train_bits: int
    setting: Setting
    phase: str
    index: int
    seed: int
    evaluations: tuple[Evaluation, ...]
    data_dir: str | None = None
    n_folds: int = 4
    split_seed: int = 42
    test_size: float = 0.1
    device: str = "auto"
    threads: int | None = None

    def keys(self) -> list[ResultKey]:
        return [ResultKey(self.dataset, e.method, e.bits, self.setting.id, self.phase, self.index,
                          self.seed) for e in self.evaluations]


@dataclass(frozen=True)
class TaskResult:
    """The rows one task produced, ready for the store."""

    task: Task
    rows: tuple[dict[str, Any], ...]


@lru_cache(maxsize=8)
def load_cached(name: str, data_dir: str | None) -> Dataset:
    """A worker loads each dataset once per process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(name, data_dir=Path(data_dir) if data_dir else None)


def _split(ds: Dataset, task: Task) -> Split:
    """Search: fold ``index`` of a shuffled K-fold on the 90% part (seed ``split_seed``).
    Test: a fresh 90/10 split with ``seed``. Scalers are refit on each training part."""
    if task.phase == TEST_PHASE:
        return split_and_scale(ds, seed=task.seed, test_size=task.test_size)
    X, _, y, _ = train_test_split(ds.X, ds.y, test_size=task.test_size, random_state=task.split_seed)
    folds = KFold(n_splits=task.n_folds, shuffle=True, random_state=task.split_seed)
    train_idx, val_idx = list(folds.split(X))[task.index]
    return scale_split(X[train_idx], y[train_idx], X[val_idx], y[val_idx], ds.task)


def run(task: Task) -> TaskResult:
    """Train once and evaluate every requested (method, bits); pure apart from the clock."""
    if task.threads is not None:
        torch.set_num_threads(task.threads)
    start = time.perf_counter()
    ds = load_cached(task.dataset, task.data_dir)
    split = _split(ds, task)
    config = task.setting.train_config(task.train_method, task.train_bits, task.seed, task.device)
    model = train_on_split(split, config, task=ds.task, feature_names=ds.feature_names,
                           target_name=ds.target_name, dataset=ds.name)
    device = next(model.module.parameters()).device
    X_tr = to_tensor(split.X_train, device)
    X_te, y_te = to_tensor(split.X_test, device), target_tensor(split.y_test, device, ds.task)
    metrics_by_eval: list[dict[str, Any]] = []
    for ev in task.evaluations:
        if get_method(ev.method).post_quantizer is not None:
            module = attach_post_quantizer(model.module, ev.method, ev.bits, X_tr)
            mse = evaluate(module, X_te, y_te, task=ds.task).mse
            metrics_by_eval.append({"test_mse": mse, "test_mse_soft": None,
                                    "test_mse_fp": model.metrics["test_mse"]})
        else:
            metrics_by_eval.append({"test_mse": model.metrics["test_mse"],
                                    "test_mse_soft": model.metrics.get("test_mse_soft")})
    seconds = time.perf_counter() - start
    common = {
        "train_seconds": model.metrics["train_seconds"],
        "final_train_loss": model.metrics["final_train_loss"],
        "n_train": int(len(split.y_train)),
        "n_test": int(len(split.y_test)),
        "threads": torch.get_num_threads(),
    }
    rows = []
    for key, metrics in zip(task.keys(), metrics_by_eval):
        rows.append({
            "key": key,
            "test_mse": float(metrics["test_mse"]) if metrics["test_mse"] is not None else float("nan"),
            "metrics": {**metrics, **common},
            "train_seconds": float(model.metrics["train_seconds"]),
            "seconds": seconds,
            "device": model.runtime.get("device", ""),
            "versions": {k: v for k, v in model.runtime.items() if k != "device"},
        })
    return TaskResult(task=task, rows=tuple(rows))

