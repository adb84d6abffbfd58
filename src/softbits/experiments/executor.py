"""Execution backends for the protocol's tasks; the executor in the main process is the store's only writer.

Local: the main process (``jobs=1``) or joblib worker processes (``jobs>1``). Dask: the same
units submitted to a running ``distributed`` scheduler. A unit is one task or a stack of tasks
(:mod:`softbits.experiments.stacking`); either way results come back to the main process in
completion order and each task is written in its own transaction as it finishes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from softbits.errors import ConfigError, SoftbitsError
from softbits.experiments.stacking import Unit, run_unit
from softbits.experiments.store import ResultStore
from softbits.experiments.tasks import Task, TaskResult

__all__ = ["Backend", "LocalBackend", "DaskBackend", "connect_dask", "execute", "pending"]


class Backend(ABC):
    """Turns tasks into results, in any order."""

    name: str = ""

    @abstractmethod
    def results(self, units: Iterable[Unit]) -> Iterator[TaskResult]:
        """Run ``units`` (taken from the iterable as workers become free); yield each task's
        result as its unit finishes."""

    def close(self) -> None:  # noqa: B027 (a hook: most backends hold nothing to release)
        """Release workers or connections."""


class LocalBackend(Backend):
    """``jobs`` local processes via joblib (in-process when ``jobs == 1``)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = int(jobs)
        self.name = f"local ({self.jobs} process{'es' if self.jobs > 1 else ''})"

    def results(self, units: Iterable[Unit]) -> Iterator[TaskResult]:
        if self.jobs == 1 or (isinstance(units, list) and len(units) <= 1):
            for unit in units:
                yield from run_unit(unit)
            return
        from joblib import Parallel, delayed

        # joblib draws from the generator only as workers free up (pre_dispatch), so a lazy
        # iterable (claims, in softbits.experiments.session) is claimed unit by unit
        parallel = Parallel(n_jobs=self.jobs, return_as="generator_unordered", backend="loky",
                            pre_dispatch="n_jobs")
        for results in parallel(delayed(run_unit)(u) for u in units):
            yield from results


class DaskBackend(Backend):
    """A running Dask distributed cluster; workers need softbits and the data directory."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.name = f"dask ({client.scheduler.address})"

    def results(self, units: Iterable[Unit]) -> Iterator[TaskResult]:
        from distributed import as_completed

        units = list(units)
        if not units:
            return
        futures = self.client.map(run_unit, units, pure=False)
        try:
            for future in as_completed(futures, loop=self.client.loop):
                yield from future.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        self.client.close()


def connect_dask(address: str, timeout: float = 5.0) -> Any:
    """A client for ``tcp://HOST:PORT``; an unreachable scheduler is a one-line error."""
    try:
        from distributed import Client
    except ImportError:
        raise SoftbitsError("--scheduler needs dask.distributed: pip install 'softbits[dask]'") from None
    if "://" not in address:
        raise ConfigError(f"scheduler address {address!r} must look like tcp://HOST:PORT")
    try:
        return Client(address, timeout=f"{timeout}s", set_as_default=False)
    except Exception as exc:  # distributed raises OSError, TimeoutError or ValueError
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SoftbitsError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s: "
                            f"{reason}") from None


def pending(tasks: list[Task], store: ResultStore) -> list[Task]:
    """Tasks with at least one key not yet in the store."""
    done = store.finished_keys()
    return [t for t in tasks if not all(k in done for k in t.keys())]


def execute(units: Iterable[Unit], store: ResultStore, backend: Backend,
            on_result: Callable[[TaskResult], None] | None = None) -> int:
    """Run ``units`` on ``backend``, writing each task's result as it arrives; returns rows added."""
    added = 0
    for result in backend.results(units):
        added += store.add_rows(result.rows)
        if on_result is not None:
            on_result(result)
    return added
