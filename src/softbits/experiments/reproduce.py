"""The paper's protocol as one call: search (or given settings), choice, final tests, report.

:func:`run_protocol` is what ``softbits reproduce`` runs after parsing its options; a Python or
Dask user calls it directly. All input is validated before the first training (names, bit
widths, settings and grid files, store, output directory, reference table, scheduler); problems
are one-line :class:`~softbits.errors.SoftbitsError`\\ s and leave the store untouched. The
library prints nothing: progress goes to the ``progress`` object the caller passes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from softbits.codes import check_bits
from softbits.errors import ConfigError, SoftbitsError
from softbits.experiments.report import ReportPaths
from softbits.experiments.session import ProgressSink, at_least
from softbits.training.config import MAX_MEMBERS, TrainConfig

if TYPE_CHECKING:  # both import torch, which `softbits --help` must not load
    from softbits.experiments.stacking import Unit
    from softbits.experiments.tasks import Task

__all__ = ["FULL_PRESET", "QUICK_PRESET", "Preset", "ProtocolOutcome", "run_protocol"]


@dataclass(frozen=True)
class Preset:
    """What the protocol runs for the options a caller leaves out."""

    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    bits: tuple[int, ...]
    n_settings: int
    repeats: int
    grid: Mapping[str, Sequence[float]]


def _full_preset() -> Preset:
    """The paper's Table 2: its six regression datasets and every single-network method of the
    registry (ensembles are softbits' own additions), bits 2..8, 100 settings, 10 repeats."""
    from softbits.data import PAPER_DATASETS
    from softbits.experiments.settings import PAPER_GRID
    from softbits.training.methods import METHODS

    return Preset(datasets=tuple(PAPER_DATASETS),
                  methods=tuple(name for name, m in METHODS.items() if m.paper and not m.ensemble),
                  bits=tuple(range(2, 9)), n_settings=100, repeats=10, grid=PAPER_GRID)


def _quick_preset() -> Preset:
    """Minutes on a laptop CPU: the synthetic (always available) fried set, FP and one method
    of each family of Table 2, two bit widths, three small settings, three repeats."""
    from softbits.experiments.settings import QUICK_GRID
    from softbits.training.methods import get_method

    return Preset(datasets=("fried",),
                  methods=tuple(get_method(n).name for n in ("fp", "po-qq", "pr-qq", "bw-sq", "lsq")),
                  bits=(2, 4), n_settings=3, repeats=3, grid=QUICK_GRID)


FULL_PRESET = _full_preset()
QUICK_PRESET = _quick_preset()


@dataclass(frozen=True)
class ProtocolOutcome:
    """What one protocol run did: the store and report it wrote, and how much it trained."""

    store: Path
    report: ReportPaths
    rows_added: int
    runs: int
    seconds: float
    backend: str
    recipe: str
    members: dict[str, int]


def _names(names: Sequence[str], what: str) -> list[str]:
    if isinstance(names, str):
        raise ConfigError(f"{what} must be a list of names, got the string {names!r}")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ConfigError(f"--{what} is empty")
    return list(dict.fromkeys(names))


def _bits(bits: Sequence[int]) -> list[int]:
    if not bits:
        raise ConfigError("--bits is empty")
    return sorted({check_bits(b) for b in bits})


def _methods(names: Sequence[str], bits: list[int]) -> list[str]:
    from softbits.training.methods import get_method

    methods = [get_method(n) for n in _names(names, "methods")]
    for method in methods:
        for b in bits:
            method.check_bits(b)
    return list(dict.fromkeys(m.name for m in methods))


def _members(members: int | None) -> int | None:
    if members is not None and (isinstance(members, bool) or not isinstance(members, int)
                                or not 1 <= members <= MAX_MEMBERS):
        raise ConfigError(f"--members must be an integer in 1..{MAX_MEMBERS}, got {members!r}")
    return members


def _check_ensemble_memory(configs: Sequence[tuple[TrainConfig, int]], device: str) -> None:
    """Refuse, before anything trains, an ensemble whose members cannot fit the device's memory
    (:func:`softbits.training.train.check_training_memory` on each distinct shape; the networks are built
    on torch's meta device, so nothing is allocated). ``configs`` pairs a config with the data's
    feature count."""
    import torch

    from softbits.training.engine import resolve_device
    from softbits.training.train import build_model

    target = resolve_device(device)
    shapes = {(c.method, c.bits, c.layers, c.neurons, c.members, c.batch_size, n): (c, n)
              for c, n in configs}
    for config, n_features in shapes.values():
        with torch.device("meta"):
            build_model(config, n_features, 1, device=target)


def _datasets(names: Sequence[str], data_dir: Path | None) -> list[str]:
    from softbits.experiments.session import regression_dataset

    names = _names(names, "datasets")
    for name in names:
        regression_dataset(name, data_dir)
    return names


def run_protocol(
    *,
    store: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    datasets: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    bits: Sequence[int] | None = None,
    settings: str | os.PathLike[str] = "search",
    n_settings: int | None = None,
    grid: Mapping[str, Sequence[float]] | str | os.PathLike[str] | None = None,
    folds: int = 4,
    repeats: int | None = None,
    seed: int = 42,
    quick: bool = False,
    compare: str | os.PathLike[str] | None = None,
    jobs: int = 0,
    scheduler: str | None = None,
    connect_timeout: float = 5.0,
    device: str = "auto",
    stack: int | str = "auto",
    recipe: str = "paper",
    members: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    progress: ProgressSink | None = None,
    notes: Callable[[str], None] | None = None,
    predictor: str = "mlp",
) -> ProtocolOutcome:
    """Reproduce Table 2 / Figure 4: search (or given settings), repeated final tests, report.

    Parameters
    ----------
    store
        SQLite results store; a re-run skips the runs it already holds.
    predictor
        The server model of every training (docs/predictors.md): ``mlp`` (the paper's, the
        default: method names and stores unchanged), ``ensemble`` (each method's ensemble form),
        ``gbdt`` or ``auto``; their rows and choices are stored as ``method+predictor``
        (``bw-sq+gbdt``) beside the MLP's, and every cell trains alone (no shared FP training).
    out_dir
        Report directory (default: ``<store>_report`` next to the store).
    datasets, methods, bits, n_settings, repeats, grid
        What to run; None takes :data:`FULL_PRESET`'s value, or :data:`QUICK_PRESET`'s with
        ``quick``. ``grid`` is a search grid or a JSON file holding one.
    settings
        ``"search"`` (random search + K-fold CV over ``folds``) or a CSV with the chosen setting
        per (dataset, method, bits), such as the paper's table.
    compare
        Reference table: the report adds ours/reference and inside-CI per cell.
    jobs, scheduler, connect_timeout
        Local worker processes (0: one per CPU core), or a Dask scheduler ``tcp://HOST:PORT``.
    stack
        Trainings per stacked model (:mod:`softbits.experiments.stacking`): ``"auto"`` (the
        default) sizes stacks by device and network width where stacking was measured to help,
        K stacks up to K compatible trainings (refused before training when K cannot fit the
        device's memory), 1 trains one at a time.
    recipe
        Training recipe of every method (:data:`softbits.training.config.RECIPES`); values of the grid or
        settings table win over its defaults, except a weight decay of 0 (see
        :meth:`~softbits.experiments.settings.Setting.trained_as`).
    members
        MLPs of each ensemble method (None: :data:`softbits.training.methods.DEFAULT_MEMBERS`); other
        methods ignore it. An ensemble that cannot fit the device's memory is refused up front.
        Runs of another recipe or member count than ``paper`` and 4 get their own setting ids,
        so one store can hold both without mixing them.
    progress
        Receives one ``add_task`` per phase and one ``advance`` per finished training; a context
        manager (a rich ``Progress``) is entered for the trainings only, after all validation.
    notes
        Receives one line per thing the caller should know before the trainings start (e.g.
        methods that cannot stack and run one at a time).
    """
    from softbits.experiments.executor import pending
    from softbits.experiments.protocol import (
        Protocol,
        choose_settings,
        final_tasks,
        search_tasks,
    )
    from softbits.experiments.report import read_reference, write_report
    from softbits.experiments.session import RunSession, default_out_dir, worker_count
    from softbits.experiments.settings import (
        draw_settings,
        load_grid,
        read_settings_table,
    )
    from softbits.experiments.stacking import check_stack, plan
    from softbits.experiments.store import ResultStore, check_store
    from softbits.experiments.tasks import load_cached, predictor_method
    from softbits.paths import check_output_dir, writing
    from softbits.training.config import check_recipe, check_seeds
    from softbits.training.engine import resolve_device
    from softbits.training.methods import DEFAULT_MEMBERS, ensemble_form, get_method
    from softbits.training.predictors import check_gbdt_installed, check_predictor, needs_gbdt

    started = time.perf_counter()
    preset = QUICK_PRESET if quick else FULL_PRESET
    store = Path(store)
    bit_list = _bits(bits if bits is not None else preset.bits)
    method_list = _methods(methods if methods is not None else preset.methods, bit_list)
    check_predictor(predictor)
    if predictor == "ensemble":  # the alias: each method's ensemble form, its members predicting
        method_list, predictor = list(dict.fromkeys(ensemble_form(m) for m in method_list)), "mlp"
    n_settings = at_least(n_settings if n_settings is not None else preset.n_settings, "n-settings")
    repeats = at_least(repeats if repeats is not None else preset.repeats, "repeats")
    check_seeds(seed, repeats)  # repeat r trains with seed + r
    at_least(folds, "folds", 2)
    jobs = worker_count(jobs)
    check_recipe(recipe)
    members = _members(members)
    ensembles = [m for m in method_list if get_method(m).ensemble]
    resolve_device(device)
    stack_size = check_stack(stack)
    check_store(store)
    out_dir = default_out_dir(store, out_dir)
    check_output_dir(out_dir, "--out-dir")
    compare = Path(compare) if compare is not None else None
    if compare is not None:
        read_reference(compare)
    data_dir = Path(data_dir) if data_dir is not None else None
    dataset_list = _datasets(datasets if datasets is not None else preset.datasets, data_dir)
    parallel = scheduler is not None or jobs > 1
    protocol = Protocol(datasets=tuple(dataset_list), methods=tuple(method_list),
                        bits=tuple(bit_list), n_folds=folds, repeats=repeats, seed=seed,
                        data_dir=str(data_dir) if data_dir else None, device=device,
                        threads=1 if parallel else None, recipe=recipe, members=members,
                        predictor=predictor)
    if members is not None and not ensembles and notes is not None:
        notes(f"--members {members} is ignored: none of the methods is an ensemble")
    n_features = {d: load_cached(d, str(data_dir) if data_dir else None).X.shape[1] for d in dataset_list}

    search = str(settings).strip().lower() == "search"
    candidates = []
    chosen_from_file = {}
    if search:
        if grid is None:
            search_grid = preset.grid
        elif isinstance(grid, Mapping):
            search_grid = grid
        else:
            search_grid = load_grid(Path(grid))
        candidates = draw_settings(n_settings, seed=seed, grid=search_grid)
        trained = [(m, protocol.trained(s, m)) for s in candidates for m in method_list]
        # every config is validated here; the widest bit width bounds an ensemble's memory
        configs = [t.train_config(m, max(bit_list), seed, device) for m, t in trained]
        sized = [(c, n_features[d]) for c in configs for d in dataset_list if c.method in ensembles]
    else:
        needed = [(d, get_method(m).display, b) for d, m, b in protocol.cells()]
        table = read_settings_table(Path(settings), needed)
        chosen_from_file = {(d, m, b): protocol.trained(table[(d, get_method(m).display, b)], m)
                            for d, m, b in protocol.cells()}
        configs_of = {cell: s.train_config(cell[1], cell[2], seed, device)
                      for cell, s in chosen_from_file.items()}
        sized = [(c, n_features[d]) for (d, m, _), c in configs_of.items() if m in ensembles]
    _check_ensemble_memory(sized, device)
    if predictor != "mlp":  # each config takes the predictor (an ensemble takes none), before any work
        for config in (configs if search else configs_of.values()):
            replace(config, predictor=predictor)
    if any(needs_gbdt(m, predictor) for m in method_list):
        check_gbdt_installed()

    def units(tasks: list[Task]) -> tuple[list[Unit], list[str]]:
        return plan(tasks, stack_size, n_features=n_features.__getitem__)

    # the search's settings are the final test's too, so planning the first phase checks every
    # stack against the device's memory before anything trains or the store is touched
    first_tasks = search_tasks(protocol, candidates) if search else final_tasks(protocol, chosen_from_file)
    first_units, planned_notes = units(first_tasks)

    def first_phase(store: ResultStore) -> list[Unit]:
        """The first phase's pending units; a fresh store keeps the plan made above."""
        todo = pending(first_tasks, store)
        return first_units if len(todo) == len(first_tasks) else units(todo)[0]

    session = RunSession(store, jobs=jobs, scheduler=scheduler, connect_timeout=connect_timeout,
                         progress=progress)
    if notes is not None:  # after the last check that can fail, so an error stays one line
        for line in planned_notes:
            notes(line)
    with session:
        result_store = session.store
        with session.training():
            if search:
                result_store.add_settings(t for _, t in trained)
            else:
                result_store.set_choices((d, predictor_method(m, predictor), b, s, f"file:{Path(settings).name}", None)
                                         for (d, m, b), s in chosen_from_file.items())
            session.execute("search" if search else "test", first_phase(result_store))
            if search:
                choices = choose_settings(protocol, candidates, result_store.results())
                missing = [c for c in protocol.cells() if c not in choices]
                if missing:
                    raise SoftbitsError(f"search left no result for {len(missing)} cells, e.g. {missing[0]}")
                result_store.set_choices((d, predictor_method(m, predictor), b, protocol.trained(s, m), "search", val)
                                         for (d, m, b), (s, val) in choices.items())
                session.execute("test", units(pending(final_tasks(protocol, {c: s for c, (s, _) in choices.items()}),
                                                      result_store))[0])
        with writing("--out-dir"):
            paths = write_report(result_store, out_dir, compare)
    return ProtocolOutcome(store=store, report=paths, rows_added=session.added, runs=session.runs,
                           seconds=time.perf_counter() - started, backend=session.backend.name,
                           recipe=recipe, members={m: members or DEFAULT_MEMBERS for m in ensembles})
