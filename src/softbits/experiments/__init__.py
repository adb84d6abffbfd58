"""The paper's protocol: settings search, repeated final tests, a resumable store, reports.

:func:`run_protocol` runs the whole protocol (search, choice, final tests, report) from Python;
``softbits reproduce`` only parses options for it and prints its outcome. Experiments are pure
functions ``run(task) -> result`` (:mod:`~softbits.experiments.tasks`);
the runner calls them in local processes or on a Dask cluster and is the only writer of the
SQLite store (:mod:`~softbits.experiments.store`); :mod:`~softbits.experiments.report` turns
the store into the paper's Table 2 and Figure 4.

The names below load lazily so that ``softbits --help`` stays fast.
"""

from __future__ import annotations

from softbits.lazy import lazy_exports

_EXPORTS = {
    "Protocol": "protocol", "choose_settings": "protocol", "final_tasks": "protocol",
    "search_tasks": "protocol",
    "ReportPaths": "report", "summarize": "report", "write_report": "report",
    "execute": "executor",
    "FULL_PRESET": "reproduce", "QUICK_PRESET": "reproduce", "Preset": "reproduce", "ProgressSink": "session", "RunSession": "session",
    "ProtocolOutcome": "reproduce", "run_protocol": "reproduce",
    "PAPER_GRID": "settings", "QUICK_GRID": "settings", "SETTING_COLUMNS": "settings",
    "Setting": "settings", "draw_settings": "settings", "load_grid": "settings",
    "read_settings_table": "settings",
    "SCHEMA_VERSION": "store", "ResultStore": "store",
    "Evaluation": "tasks", "ResultKey": "tasks", "ResultRow": "tasks", "RunMetrics": "tasks",
    "Task": "tasks", "run": "tasks",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS, __all__)
