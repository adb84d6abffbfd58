"""The paper's protocol as task lists: K-fold search, choice by mean validation MSE, repeats.

One full-precision training serves FP, Po-MQ and Po-QQ (they differ only in the quantizer put
in front of the trained network at test time), so those methods share tasks: per (dataset,
setting, fold) in the search and per (dataset, chosen setting, repeat) in the final test.

Every task trains a :class:`~softbits.experiments.settings.TrainedSetting`: the drawn or given
setting under the protocol's recipe and, for ensemble methods, its member count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from softbits.experiments.settings import Setting, TrainedSetting
from softbits.experiments.tasks import TEST_PHASE, Evaluation, Task, cv_phase, predictor_method
from softbits.training.methods import get_method

__all__ = ["Protocol", "Cell", "choose_settings", "search_tasks", "final_tasks", "shares_fp_training"]

#: (dataset, method name, bits)
Cell = tuple[str, str, int]


def shares_fp_training(method: str) -> bool:
    """FP and the post-training quantized methods evaluate one full-precision training."""
    m = get_method(method)
    return m.train_quantizer is None


@dataclass(frozen=True)
class Protocol:
    """What to run: datasets × methods × bits, and how (folds, repeats, seeds, device, threads,
    the training recipe, and the members of ensemble methods: None takes their default)."""

    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    bits: tuple[int, ...]
    n_folds: int = 4
    repeats: int = 10
    seed: int = 42
    test_size: float = 0.1
    data_dir: str | None = None
    device: str = "auto"
    threads: int | None = None
    recipe: str = "paper"
    members: int | None = None
    #: the server model of every training (:mod:`softbits.training.predictors`); another than
    #: ``mlp`` stores its rows as ``method+predictor`` and trains every cell alone
    predictor: str = "mlp"

    def cells(self) -> list[Cell]:
        return [(d, m, b) for d in self.datasets for m in self.methods for b in self.bits]

    def trained(self, setting: Setting, method: str) -> TrainedSetting:
        """``setting`` as ``method`` trains it under this protocol's recipe and members."""
        return setting.trained_as(method, self.recipe, self.members)

    def _task(self, dataset: str, train_method: str, train_bits: int, setting: Setting,
              phase: str, index: int, seed: int, evaluations: list[Evaluation]) -> Task:
        return Task(dataset=dataset, train_method=train_method, train_bits=train_bits,
                    setting=setting, phase=phase, index=index, seed=seed,
                    evaluations=tuple(evaluations), data_dir=self.data_dir, n_folds=self.n_folds,
                    split_seed=self.seed, test_size=self.test_size, device=self.device,
                    threads=self.threads, predictor=self.predictor)


def _groups(protocol: Protocol, cells: list[Cell], setting_of: Mapping[Cell, Setting]
            ) -> list[tuple[str, str, int, Setting, list[Evaluation]]]:
    """Cells → trainings: FP-sharing cells with the same setting merge into one training."""
    shared: dict[tuple[str, str], list[Evaluation]] = defaultdict(list)
    out: list[tuple[str, str, int, Setting, list[Evaluation]]] = []
    settings: dict[str, Setting] = {}
    for cell in cells:
        dataset, method, bits = cell
        setting = protocol.trained(setting_of[cell], method)
        if shares_fp_training(method) and protocol.predictor == "mlp":
            shared[(dataset, setting.id)].append(Evaluation(method, bits))
            settings[setting.id] = setting
        else:
            out.append((dataset, method, bits, setting, [Evaluation(method, bits)]))
    for (dataset, sid), evaluations in shared.items():
        out.append((dataset, "fp", min(e.bits for e in evaluations), settings[sid], evaluations))
    return out


def search_tasks(protocol: Protocol, settings: list[Setting]) -> list[Task]:
    """Every setting on every fold of every cell (the same settings for all datasets and bits).

    Two drawn settings that train alike (a grid searching weight decay 0 and the recipe's value)
    train once.
    """
    tasks: list[Task] = []
    cells = protocol.cells()
    seen: set[tuple[str, str, int, str]] = set()
    for setting in settings:
        for dataset, method, bits, s, evaluations in _groups(
                protocol, cells, {c: setting for c in cells}):
            if (dataset, method, bits, s.id) in seen:
                continue
            seen.add((dataset, method, bits, s.id))
            for fold in range(protocol.n_folds):
                tasks.append(protocol._task(dataset, method, bits, s, cv_phase(protocol.n_folds),
                                            fold, protocol.seed, evaluations))
    return tasks


def final_tasks(protocol: Protocol, chosen: Mapping[Cell, Setting]) -> list[Task]:
    """Repeat r trains the chosen setting on a fresh 90/10 split with seed ``seed + r``."""
    tasks: list[Task] = []
    for dataset, method, bits, setting, evaluations in _groups(protocol, protocol.cells(), chosen):
        for r in range(protocol.repeats):
            tasks.append(protocol._task(dataset, method, bits, setting, TEST_PHASE, r,
                                        protocol.seed + r, evaluations))
    return tasks


def choose_settings(protocol: Protocol, settings: list[Setting], results: pd.DataFrame
                    ) -> dict[Cell, tuple[Setting, float]]:
    """Per cell, the setting of ``settings`` with the lowest mean validation MSE over all folds.

    Diverged runs (NaN) rank last; ties keep the earlier setting of the draw. Only rows of this
    protocol's recipe and members count (the ids of :meth:`Protocol.trained`): a store may also
    hold runs of other ones.
    """
    phase = cv_phase(protocol.n_folds)
    rows = results[results["phase"] == phase]
    mse = rows["test_mse"].astype(float).where(np.isfinite(rows["test_mse"].astype(float)), np.inf)
    means = mse.groupby([rows["dataset"], rows["method"], rows["bits"], rows["setting_id"]]).mean()
    trained: dict[str, dict[str, tuple[int, Setting]]] = {}
    for method in protocol.methods:
        trained[method] = {}
        for i, s in enumerate(settings):
            trained[method].setdefault(protocol.trained(s, method).id, (i, s))
    chosen: dict[Cell, tuple[Setting, float]] = {}
    for cell in protocol.cells():
        mine = trained[cell[1]]
        try:
            cell_means = means.loc[(cell[0], predictor_method(cell[1], protocol.predictor), cell[2])]
        except KeyError:
            continue
        ids = [sid for sid in cell_means.index if sid in mine]
        if not ids:
            continue
        best = min(ids, key=lambda sid: (cell_means[sid], mine[sid][0]))
        chosen[cell] = (mine[best][1], float(cell_means[best]))
    return chosen
