"""One training of the protocol as a pure, picklable function: ``run(task) -> TaskResult``.

A :class:`Task` names a dataset, the method that trains, a setting, the phase (``cv<K>`` fold
of the search or ``test`` repeat) and the evaluations that one training serves: a full-precision
training is evaluated as FP and, behind fixed quantizers, as Po-MQ/Po-QQ at every bit width.
A task with a ``budget`` instead lets the allocator choose per-feature widths for that many code
bits per sample (``softbits frontier``). Local processes and Dask workers call :func:`run` alike;
it never touches the store.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from sklearn.model_selection import KFold, train_test_split

from softbits.data import Dataset, Split, load_dataset, load_table, scale_split, split_and_scale
from softbits.errors import ConfigError
from softbits.experiments.settings import Setting
from softbits.provenance import runtime_info
from softbits.training.config import TrainConfig
from softbits.training.engine import target_tensor, to_tensor
from softbits.training.train import FittedModule, TestMetrics, evaluate_as, fit_module, score

__all__ = ["Evaluation", "ResultKey", "ResultRow", "RunMetrics", "Task", "TaskResult", "run",
           "evaluate", "file_dataset", "load_cached", "FILE_PREFIX", "predictor_method", "prepare", "TEST_PHASE", "BUDGET_SUFFIX", "cv_phase"]

TEST_PHASE = "test"
#: what a budget task's keys add to its phase, so that an allocated result never shares a key
#: with the uniform training at the same bits
BUDGET_SUFFIX = "-budget"


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

    ``budget``: code bits per sample for :func:`softbits.training.allocation.train_allocated`, which
    chooses the widths on the training part alone; the task then has the one evaluation
    ``(train_method, budget)``, and its keys hold the budget as ``bits`` and the phase with
    :data:`BUDGET_SUFFIX`. None (the protocol's tasks): every feature gets ``train_bits``.

    ``predictor``: the server model (:mod:`softbits.training.predictors`); another than ``mlp``
    gives one evaluation, and its keys name the method as ``method+predictor`` (``bw-qq+gbdt``),
    so that its rows never share a key with the MLP's and the store keeps its columns.
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
    budget: int | None = None
    predictor: str = "mlp"

    def __post_init__(self) -> None:
        if self.budget is not None and self.evaluations != (Evaluation(self.train_method, self.budget),):
            raise ConfigError(f"a task with a budget has one evaluation, ({self.train_method}, "
                              f"{self.budget}), got {self.evaluations}")
        if self.predictor != "mlp" and len(self.evaluations) != 1:
            raise ConfigError(f"a task with predictor {self.predictor} has one evaluation, got {self.evaluations}")

    def keys(self) -> list[ResultKey]:
        phase = self.phase if self.budget is None else self.phase + BUDGET_SUFFIX
        return [ResultKey(self.dataset, predictor_method(e.method, self.predictor), e.bits, self.setting.id,
                          phase, self.index, self.seed) for e in self.evaluations]


def predictor_method(method: str, predictor: str) -> str:
    """The store's method name of ``method`` served by ``predictor`` (the method alone for ``mlp``)."""
    return method if predictor == "mlp" else f"{method}+{predictor}"


@dataclass(frozen=True)
class RunMetrics:
    """What one evaluation of one training measured (the store's ``metrics`` JSON)."""

    test: TestMetrics
    train_seconds: float
    #: None where no network trained (trees on fixed codes)
    final_train_loss: float | None
    n_train: int
    n_test: int
    threads: int
    stacked: int = 1
    #: a budget task's allocation record (:meth:`softbits.training.allocation.Allocation.to_dict`)
    allocation: dict[str, Any] | None = None
    #: a tree or auto predictor's record: the predictor that served, each candidate's validation
    #: loss, the test MSE of the network behind the same codes
    predictor: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {**self.test.to_dict(), "train_seconds": self.train_seconds,
               "final_train_loss": self.final_train_loss, "n_train": self.n_train,
               "n_test": self.n_test, "threads": self.threads, "stacked": self.stacked}
        if self.allocation is not None:  # only then, so uniform rows keep their form
            out["allocation"] = self.allocation
        if self.predictor is not None:
            out.update(self.predictor)
        return out


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


#: how a user's file is named where a dataset name goes: ``file:<absolute path>::<target>``
FILE_PREFIX = "file:"
_TARGET_SEPARATOR = "::"


def file_dataset(path: str | Path, target: str | None = None) -> str:
    """The dataset name of a user's table (``--data PATH --target COL``) in tasks and stores."""
    return f"{FILE_PREFIX}{Path(path).resolve()}{_TARGET_SEPARATOR}{target or ''}"


@lru_cache(maxsize=8)
def load_cached(name: str, data_dir: str | None) -> Dataset:
    """A worker loads each dataset once per process: a registered name, or a user's file
    (:func:`file_dataset`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name.startswith(FILE_PREFIX):
            path, _, target = name[len(FILE_PREFIX):].rpartition(_TARGET_SEPARATOR)
            return load_table(path, target or None)
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
    config = task.setting.train_config(task.train_method, task.train_bits, task.seed, task.device)
    return ds, split, config if task.predictor == "mlp" else replace(config, predictor=task.predictor)


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


def _run_model(task: Task, ds: Dataset, split: Split, config: TrainConfig, start: float) -> TaskResult:
    """A whole :class:`~softbits.training.trained_model.TrainedModel` and its one test row: with a
    budget, widths allocated on the training part and a training at them; with a predictor other
    than ``mlp``, the network and then the predictor behind its codes."""
    from softbits.training.allocation import train_allocated
    from softbits.training.train import predictor_record, train_on_split

    names: dict[str, Any] = dict(task=ds.task, feature_names=ds.feature_names, target_name=ds.target_name,
                                 classes=ds.classes, dataset=ds.name)
    model = (train_allocated(split, config, task.budget, **names) if task.budget is not None
             else train_on_split(split, config, **names))
    m = model.metrics
    fp = m.get("test_mse_fp")  # Po-*: the model keeps only its FP network's test MSE, all a row stores of it
    tested = TestMetrics(test_mse=m["test_mse"], test_mse_soft=m["test_mse_soft"],
                         test_accuracy=m["test_accuracy"], test_loss=m["test_loss"],
                         fp=None if fp is None else TestMetrics(fp, None, None, float("nan")))
    versions = {k: v for k, v in model.runtime.items() if k != "device"}
    row = ResultRow(key=task.keys()[0], seconds=time.perf_counter() - start,
                    device=model.runtime.get("device", ""), versions=versions,
                    metrics=RunMetrics(test=tested, train_seconds=float(m["train_seconds"]),
                                       final_train_loss=m["final_train_loss"],
                                       n_train=int(len(split.y_train)), n_test=int(len(split.y_test)),
                                       threads=torch.get_num_threads(), allocation=model.allocation,
                                       predictor=predictor_record(m, config.predictor) if config.predictor != "mlp" else None))
    return TaskResult(task=task, rows=(row,))


def run(task: Task) -> TaskResult:
    """Train once and evaluate every requested (method, bits), or, with a budget, allocate and
    train at the chosen widths (with a predictor, fit it behind the codes); pure apart from the clock."""
    start = time.perf_counter()
    ds, split, config = prepare(task)
    if task.budget is not None or task.predictor != "mlp":
        return _run_model(task, ds, split, config, start)
    fitted = fit_module(split.X_train, split.y_train, config, task=ds.task)
    return evaluate(task, ds, split, fitted, start)
