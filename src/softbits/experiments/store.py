"""The results store: one SQLite file, one row per finished (training, evaluation) key.

Only the runner in the main process writes. Each finished task lands in one transaction with
``INSERT OR IGNORE`` under a unique key, so a SIGKILL at any moment loses at most the tasks in
flight and never leaves a duplicate or a half-written task; re-running skips finished keys.
A ``meta`` table holds the schema version; a store of another version is refused with one line.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from softbits.errors import SoftbitsError
from softbits.experiments.settings import Setting
from softbits.experiments.tasks import ResultKey

__all__ = ["SCHEMA_VERSION", "ResultStore", "check_store"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (setting_id TEXT PRIMARY KEY, params TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    dataset TEXT NOT NULL, method TEXT NOT NULL, bits INTEGER NOT NULL,
    setting_id TEXT NOT NULL REFERENCES settings(setting_id),
    phase TEXT NOT NULL, idx INTEGER NOT NULL, seed INTEGER NOT NULL,
    test_mse REAL, metrics TEXT NOT NULL, train_seconds REAL, seconds REAL,
    device TEXT NOT NULL, versions TEXT NOT NULL, finished_at TEXT NOT NULL,
    UNIQUE (dataset, method, bits, setting_id, phase, idx, seed)
);
CREATE TABLE IF NOT EXISTS choices (
    dataset TEXT NOT NULL, method TEXT NOT NULL, bits INTEGER NOT NULL,
    setting_id TEXT NOT NULL REFERENCES settings(setting_id),
    source TEXT NOT NULL, val_mse REAL,
    PRIMARY KEY (dataset, method, bits)
);
"""

_KEY_COLUMNS = ("dataset", "method", "bits", "setting_id", "phase", "idx", "seed")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30.0)
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _schema_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The store's schema version, None for an empty database; one-line errors otherwise."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError:
        raise SoftbitsError(f"store {path} is not an SQLite database; give another --store path") from None
    if not tables:
        return None
    if "meta" not in tables:
        raise SoftbitsError(f"store {path} is an SQLite file but not a softbits store; give another --store path")
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    try:
        return int(row[0]) if row else -1
    except ValueError:
        return -1


def check_store(path: Path) -> None:
    """Refuse an incompatible store without creating or changing anything."""
    path = Path(path)
    if path.is_dir():
        raise SoftbitsError(f"store {path} is a directory; give a file path")
    if not path.exists() or path.stat().st_size == 0:
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = _schema_version(conn, path)
    finally:
        conn.close()
    if version is not None and version != SCHEMA_VERSION:
        raise SoftbitsError(f"store {path} has schema version {version}, this softbits reads "
                            f"version {SCHEMA_VERSION}; use a new --store path")


class ResultStore:
    """Append-only results with resumable keys; safe against a killed writer."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        check_store(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = _connect(self.path)
        if _schema_version(self._conn, self.path) is None:
            from softbits import __version__

            self._conn.executescript(
                "BEGIN;" + _SCHEMA
                + f"INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
                + f"INSERT OR IGNORE INTO meta VALUES ('created_by', 'softbits {__version__}');"
                + "COMMIT;")

    @classmethod
    def open_existing(cls, path: Path) -> "ResultStore":
        """For reading: a missing store is a user error, not a new empty one."""
        if not Path(path).is_file():
            raise SoftbitsError(f"store {path} does not exist")
        return cls(path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def finished_keys(self) -> set[ResultKey]:
        rows = self._conn.execute(f"SELECT {', '.join(_KEY_COLUMNS)} FROM results")
        return {ResultKey(*r) for r in rows}

    def add_settings(self, settings: Iterable[Setting]) -> None:
        with self._conn:
            self._conn.executemany("INSERT OR IGNORE INTO settings VALUES (?, ?)",
                                   [(s.id, json.dumps(s.to_dict())) for s in settings])

    def add_rows(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert one finished task's rows in one transaction; returns rows newly added."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        values = []
        for r in rows:
            k: ResultKey = r["key"]
            values.append((k.dataset, k.method, k.bits, k.setting_id, k.phase, k.index, k.seed,
                           r["test_mse"], json.dumps(r["metrics"]), r["train_seconds"],
                           r["seconds"], r["device"], json.dumps(r["versions"]), now))
        with self._conn:
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO results (dataset, method, bits, setting_id, phase, idx, "
                "seed, test_mse, metrics, train_seconds, seconds, device, versions, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            return self._conn.total_changes - before

    def set_choices(self, choices: Iterable[tuple[str, str, int, Setting, str, float | None]]) -> None:
        """Record the chosen setting per (dataset, method, bits) (replacing earlier choices)."""
        choices = list(choices)
        self.add_settings(c[3] for c in choices)
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO choices VALUES (?, ?, ?, ?, ?, ?)",
                [(d, m, b, s.id, src, val) for d, m, b, s, src, val in choices])

    def results(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM results ORDER BY id", self._conn)

    def choices(self) -> pd.DataFrame:
        """Choices joined with their setting values (one column per paper setting name)."""
        df = pd.read_sql_query(
            "SELECT c.*, s.params FROM choices c JOIN settings s USING (setting_id)", self._conn)
        params = pd.DataFrame([json.loads(p) for p in df.pop("params")], index=df.index)
        return pd.concat([df, params], axis=1)

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
