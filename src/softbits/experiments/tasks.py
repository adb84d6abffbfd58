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

from softbits.config import TrainConfig
from softbits.data import Dataset, Split, load_dataset, scale_split, split_and_scale
from softbits.engine import target_tensor, to_tensor
from softbits.experiments.settings import Setting
from softbits.runtime import runtime_info
from softbits.train import FittedModule, TestMetrics, evaluate_as, fit_module, score

__all__ = ["Evaluation", "ResultKey", "ResultRow", "RunMetrics", "Task", "TaskResult", "run",
           "evaluate", "load_cached", "prepare", "TEST_PHASE", "cv_phase"]

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
class RunMetrics:
    """What one evaluation of one training measured (the store's ``metrics`` JSON)."""

    test: TestMetrics
    train_seconds: float
    final_train_loss: float
    n_train: int
    n_test: int
    threads: int
    stacked: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {**self.test.to_dict(), "train_seconds": self.train_seconds,
                "final_train_loss": self.final_train_loss, "n_train": self.n_train,
                "n_test": self.n_test, "threads": self.threads, "stacked": self.stacked}


@dataclass(frozen=True)
class ResultRow:
    """One finished (training, evaluation): the store's row under ``key``.

    ``seconds`` is the whole task's wall time (loading, training and every evaluation).
    """

    key: ResultKey
    metrics: RunMetrics
    seconds: float
    device: str
    versions: dict[str, str]

    @property
    def test_mse(self) -> float:
        """The hard test MSE; NaN where there is none (a diverged or classification run)."""
        mse = self.metrics.test.test_mse
        return float(mse) if mse is not None else float("nan")


@dataclass(frozen=True)
class TaskResult:
    """The rows one task produced, ready for the store."""

    task: Task
    rows: tuple[ResultRow, ...]


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


def prepare(task: Task) -> tuple[Dataset, Split, TrainConfig]:
    """The task's data split (scalers fit on its training part) and its training config."""
    if task.threads is not None:
        torch.set_num_threads(task.threads)
    ds = load_cached(task.dataset, task.data_dir)
    split = _split(ds, task)
    return ds, split, task.setting.train_config(task.train_method, task.train_bits, task.seed, task.device)


def evaluate(task: Task, ds: Dataset, split: Split, fitted: FittedModule, start: float,
             stacked: int = 1) -> TaskResult:
    """Every evaluation the task asks of its trained module, as store rows.

    ``start`` is when the task (or the stack it trained in) began; ``stacked`` the number of
    trainings that shared its training step (1 alone), kept in the rows' metrics.
    """
    device = fitted.X_train.device
    X_te, y_te = to_tensor(split.X_test, device), target_tensor(split.y_test, device, ds.task)
    trained = score(fitted.module, X_te, y_te, ds.task)
    tested = [evaluate_as(fitted, ev.method, ev.bits, X_te, y_te, task=ds.task, trained=trained)[1]
              for ev in task.evaluations]
    seconds = time.perf_counter() - start
    runtime = runtime_info(device)
    versions = {k: v for k, v in runtime.items() if k != "device"}
    rows = tuple(
        ResultRow(key=key, seconds=seconds, device=runtime.get("device", ""), versions=versions,
                  metrics=RunMetrics(test=metrics, train_seconds=float(fitted.fit.train_seconds),
                                     final_train_loss=fitted.fit.final_train_loss,
                                     n_train=int(len(split.y_train)), n_test=int(len(split.y_test)),
                                     threads=torch.get_num_threads(), stacked=stacked))
        for key, metrics in zip(task.keys(), tested, strict=True))
    return TaskResult(task=task, rows=rows)


def run(task: Task) -> TaskResult:
    """Train once and evaluate every requested (method, bits); pure apart from the clock."""
    start = time.perf_counter()
    ds, split, config = prepare(task)
    fitted = fit_module(split.X_train, split.y_train, config, task=ds.task)
    return evaluate(task, ds, split, fitted, start)
