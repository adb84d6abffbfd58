"""The paper's protocol: settings search, repeated final tests, a resumable store, reports.

Experiments are pure functions ``run(task) -> result`` (:mod:`~softbits.experiments.tasks`);
the runner calls them in local processes or on a Dask cluster and is the only writer of the
SQLite store (:mod:`~softbits.experiments.store`); :mod:`~softbits.experiments.report` turns
the store into the paper's Table 2 and Figure 4.
"""

from softbits.experiments.protocol import Protocol, choose_settings, final_tasks, search_tasks
from softbits.experiments.report import ReportPaths, summarize, write_report
from softbits.experiments.runner import execute
from softbits.experiments.settings import (
    PAPER_GRID,
    QUICK_GRID,
    SETTING_COLUMNS,
    Setting,
    draw_settings,
    load_grid,
    read_settings_table,
)
from softbits.experiments.store import SCHEMA_VERSION, ResultStore
from softbits.experiments.tasks import Evaluation, ResultKey, Task, run

__all__ = [
    "PAPER_GRID",
    "QUICK_GRID",
    "SCHEMA_VERSION",
    "SETTING_COLUMNS",
    "Evaluation",
    "Protocol",
    "ReportPaths",
    "ResultKey",
    "ResultStore",
    "Setting",
    "Task",
    "choose_settings",
    "draw_settings",
    "execute",
    "final_tasks",
    "load_grid",
    "read_settings_table",
    "run",
    "search_tasks",
    "summarize",
    "write_report",
]
