"""The run setup that ``reproduce`` (:func:`~softbits.experiments.reproduce.run_protocol`) and
``frontier`` (:func:`~softbits.experiments.frontier.run_frontier`) share: the checks of their
common options, the backend (local processes or a Dask cluster), the results store, progress
reporting and the execution of each phase's pending units.

A :class:`RunSession` is opened after every input has been checked; closing it shuts the
backend down and closes the store, also when a phase fails or the run is interrupted, so the
trainings that finished stay stored.

Several runners may work on one store at once (two ``reproduce`` commands, on one machine or on
machines sharing the file): each unit is claimed in the store before it trains, so every unit
trains once. A claim is a lease of :data:`LEASE_S` seconds that a live runner renews every
:data:`RENEW_S`; a killed runner's claims expire and the others take its units over. A phase
ends when every unit's results are stored, whoever trained them; a runner with nothing left to
claim waits for the others (polling every :data:`POLL_S` seconds). Local runs claim a unit just
before a worker starts it; a Dask run claims all of a phase's units when it submits them.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from typing import Protocol as Interface

from softbits.errors import ConfigError, DataError, SoftbitsError

if TYPE_CHECKING:  # both import torch, which `softbits --help` must not load
    from softbits.experiments.executor import DaskBackend, LocalBackend
    from softbits.experiments.stacking import Unit
    from softbits.experiments.store import ResultStore

__all__ = ["LEASE_S", "POLL_S", "RENEW_S", "NoProgress", "ProgressSink", "RunSession", "at_least",
           "default_out_dir", "regression_dataset", "unit_id", "worker_count"]

#: how long a claim holds without renewal: a killed runner's units are free again after this
LEASE_S = 120.0
#: how often a live runner renews its claims
RENEW_S = 30.0
#: how often a runner with nothing to claim looks whether the others have finished
POLL_S = 2.0


class ProgressSink(Interface):
    """Where a run reports completed trainings: a rich ``Progress`` or anything with its
    ``add_task``/``advance`` (``softbits.experiments.commands.LineProgress`` writes log lines)."""

    def add_task(self, description: str, *, total: int) -> Any: ...

    def advance(self, task_id: Any) -> None: ...


class NoProgress:
    """The sink of a caller that passes none: it drops every report."""

    def add_task(self, description: str, *, total: int) -> int:
        return 0

    def advance(self, task_id: Any) -> None:
        return None


def at_least(value: int, what: str, minimum: int = 1) -> int:
    """``value`` as an int, or a one-line error naming option ``--what``: a count (settings,
    repeats, folds, jobs, seeds) must be an integer, not a bool, and at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"--{what} must be >= {minimum}, got {value!r}")
    return int(value)


def worker_count(jobs: int) -> int:
    """``--jobs``: 0 means one worker per CPU core."""
    return at_least(jobs if jobs != 0 else (os.cpu_count() or 1), "jobs")


def default_out_dir(store: Path, out_dir: str | os.PathLike[str] | None) -> Path:
    """``out_dir``, or ``<store>_report`` next to the store."""
    return Path(out_dir) if out_dir is not None else store.parent / f"{store.stem}_report"


def regression_dataset(name: str, data_dir: Path | None, reporter: str = "the protocol") -> int:
    """Dataset ``name`` is known, a regression task (``reporter`` reports MSE) and loadable now,
    so a missing file fails before any training: its number of features."""
    from softbits.data import get_dataset_info
    from softbits.experiments.tasks import FILE_PREFIX, load_cached

    if not name.startswith(FILE_PREFIX):
        info = get_dataset_info(name)
        if info.task != "regression":
            raise DataError(f"dataset {name} is a {info.task} task; {reporter} reports regression MSE")
    ds = load_cached(name, str(data_dir) if data_dir else None)
    if ds.task != "regression":
        raise DataError(f"{ds.source} is a {ds.task} task; {reporter} reports regression MSE")
    return int(ds.X.shape[1])


def _keys(unit: Unit) -> list[Any]:
    from softbits.experiments.stacking import StackTask

    tasks = unit.tasks if isinstance(unit, StackTask) else [unit]
    return [key for task in tasks for key in task.keys()]


def unit_id(unit: Unit) -> str:
    """A unit's name in the store's claims: a digest of the result keys it produces."""
    text = "\n".join(sorted(repr(k) for k in _keys(unit)))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _trainings(units: Sequence[Unit]) -> int:
    """Trainings in ``units`` (a stack counts its members): what progress counts."""
    from softbits.experiments.stacking import StackTask

    return sum(len(u.tasks) if isinstance(u, StackTask) else 1 for u in units)


class RunSession:
    """A backend, a results store and a progress sink for one run; use it as a context manager.

    Parameters
    ----------
    store
        The SQLite results store (checked by the caller with ``check_store``).
    jobs, scheduler, connect_timeout
        Local worker processes, or the Dask scheduler to run on instead (connected here, so an
        unreachable one fails before the store is opened).
    progress
        Receives one ``add_task`` per phase and one ``advance`` per finished training.
    """

    def __init__(self, store: Path, *, jobs: int, scheduler: str | None, connect_timeout: float,
                 progress: ProgressSink | None) -> None:
        from softbits.experiments.executor import DaskBackend, LocalBackend, connect_dask
        from softbits.experiments.store import ResultStore, claim_owner

        self.sink: ProgressSink = progress if progress is not None else NoProgress()
        self.backend: DaskBackend | LocalBackend = (DaskBackend(connect_dask(scheduler, connect_timeout))
                                                    if scheduler else LocalBackend(jobs))
        try:
            self.store: ResultStore = ResultStore(store)
        except BaseException:
            self.backend.close()
            raise
        self.runs = 0
        self.added = 0
        self.owner = claim_owner()
        self._lazy = scheduler is None  # joblib pulls units one by one; Dask takes a phase at once
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, daemon=True, name="softbits-claims")
        self._renewer.start()

    def _renew(self) -> None:
        """Renew this runner's claims until the session closes (the store serializes its calls)."""
        while not self._stop.wait(RENEW_S):
            try:
                self.store.renew_claims(self.owner, LEASE_S)
            except DataError:
                continue  # the store is busy: the next round renews

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._renewer.join(timeout=5)  # not renewing while the store closes
        try:
            self.backend.close()
        finally:
            try:
                self.store.release_claims(self.owner)
            finally:
                self.store.close()

    @contextmanager
    def training(self) -> Iterator[None]:
        """The span in which trainings run: a rich ``Progress`` is live only inside it."""
        sink = self.sink
        with sink if isinstance(sink, AbstractContextManager) else nullcontext():
            yield

    def execute(self, label: str, units: Sequence[Unit]) -> int:
        """Train ``units`` on the backend, storing each result as it arrives, until every unit's
        results are stored (by this runner or another one); the rows this runner added."""
        from softbits.experiments.executor import execute

        bar = self.sink.add_task(f"{label} · {self.backend.name}", total=_trainings(units))

        def advance(_: Any) -> None:
            self.runs += 1
            self.sink.advance(bar)

        added = 0
        remaining = [(unit_id(u), u) for u in units]
        tried: set[str] = set()
        while remaining:
            claimed = self._claimed([(name, u) for name, u in remaining if name not in tried], tried)
            started = self.runs
            added += execute(claimed if self._lazy else list(claimed), self.store, self.backend, advance)
            done = self.store.finished_keys()
            remaining = [(name, u) for name, u in remaining if not all(k in done for k in _keys(u))]
            if remaining and all(name in tried for name, _ in remaining):
                raise SoftbitsError(f"{len(remaining)} trainings ran but their results are not in the store")
            if remaining and self.runs == started:
                time.sleep(POLL_S)  # the others train what is left; their expired claims come back
        self.added += added
        return added

    def _claimed(self, units: Sequence[tuple[str, Unit]], tried: set[str]) -> Iterable[Unit]:
        """The units (with their :func:`unit_id`) this runner gets, claimed one by one as they
        are taken (noted in ``tried``)."""
        for name, unit in units:
            if self.store.claim(name, _keys(unit), self.owner, LEASE_S):
                tried.add(name)
                yield unit
