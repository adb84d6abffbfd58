"""The results store: one SQLite file, one row per finished (training, evaluation) key.

Only the executor in the main process writes. Each finished task lands in one transaction with
``INSERT OR IGNORE`` under a unique key, so a SIGKILL at any moment loses at most the tasks in
flight and never leaves a duplicate or a half-written task; re-running skips finished keys.
A ``meta`` table holds the schema version; a store of another version is refused with one line.

Every SQLite failure (a damaged file, a store that may not be written, a full disk) leaves this
module as a one-line :class:`~softbits.errors.DataError` naming the store. Readers open the file
with SQLite's ``mode=ro``, so reading a store can never change it.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from softbits.errors import DataError
from softbits.experiments.settings import Setting
from softbits.experiments.tasks import ResultKey, ResultRow
from softbits.paths import FILE_NOT_WRITABLE, directory_problem

__all__ = ["SCHEMA_VERSION", "ResultStore", "check_store", "claim_owner"]

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
#: which runner trains which unit, until when: concurrent runners on one store share the work
#: (created on first use, so stores written before it open as they are)
_CLAIMS = "CREATE TABLE IF NOT EXISTS claims (unit TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL)"
_FINISHED = f"SELECT 1 FROM results WHERE {' AND '.join(f'{c} = ?' for c in _KEY_COLUMNS)}"


_F = TypeVar("_F", bound=Callable[..., Any])


@contextmanager
def _sqlite_errors(path: Path) -> Iterator[None]:
    """SQLite's own errors (also when pandas wraps them) as one line naming the store."""
    try:
        yield
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
        message = str(cause).splitlines()[0]
        if "malformed" in message or "not a database" in message:
            raise DataError(_damaged(path, message)) from None
        raise DataError(f"store {path}: {message}") from None


def claim_owner() -> str:
    """A runner's name in the claims table: ``host:pid:tag`` (:func:`_dead_here` reads it back)."""
    import socket
    import uuid

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_here(owner: str) -> bool:
    """Whether claim owner ``host:pid:tag`` is a process of this machine that no longer runs."""
    import socket

    parts = owner.split(":")
    if len(parts) < 3 or not parts[-2].isdigit() or ":".join(parts[:-2]) != socket.gethostname():
        return False
    try:
        os.kill(int(parts[-2]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but is not ours to signal
        return False
    return False


def _damaged(path: Path, detail: str) -> str:
    """What to do about a damaged store file."""
    return (f"store {path} is damaged ({detail}): restore a copy, or give another --store path to "
            "start a new store; the rows finished so far are in the file, and `softbits report` may "
            "still read them (it opens stores read-only)")


def _guarded(method: _F) -> _F:
    """SQLite errors as one line; one call at a time (a runner claims units from joblib's
    dispatch thread while its main thread writes results)."""
    @functools.wraps(method)
    def wrapper(self: ResultStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock, _sqlite_errors(self.path):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    if read_only:
        # a URI from as_uri() keeps '?' and '#' in file names literal
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0,
                               check_same_thread=False)
    conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)  # calls serialized by _guarded
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _schema_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The store's schema version, None for an empty database; one-line errors otherwise."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        if "file is not a database" not in str(exc):  # SQLITE_NOTADB; damage and I/O errors differ
            raise
        raise DataError(f"store {path} is not an SQLite database; give another --store path") from None
    if not tables:
        return None
    if "meta" not in tables:
        raise DataError(f"store {path} is an SQLite file but not a softbits store; give another --store path")
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    try:
        return int(row[0]) if row else -1
    except ValueError:
        return -1


def _check_intact(conn: sqlite3.Connection, path: Path) -> None:
    """SQLite's quick check over every page: a damaged store is refused before anything is
    trained for it or read from it (a damaged page may lie where only a later query looks)."""
    problems = [r[0] for r in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        detail = " ".join(problems[0].replace("*** in database main ***", "").split())
        raise DataError(_damaged(path, f"database disk image is malformed: {detail}"))


def _check_writable(path: Path) -> None:
    """Refuse a store that SQLite could open but not write: it would only fail at the first
    write ("attempt to write a readonly database"). SQLite writes its journal next to the file,
    so the directory counts too. ``os.access`` also sees read-only mounts, even for root."""
    if os.path.exists(path) and not os.access(path, os.W_OK):
        problem: str | None = FILE_NOT_WRITABLE
    else:
        problem = directory_problem(path.parent)
    if problem is not None:
        raise DataError(f"store {path}: {problem}; give another --store path")


def check_store(path: Path, read_only: bool = False) -> None:
    """Refuse an unusable store without creating or changing anything.

    For writing, a missing or empty file is a new store; for reading it is an error.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"store {path} is a directory; give a file path")
    if read_only and not path.is_file():
        raise DataError(f"store {path} does not exist")
    if not read_only:
        _check_writable(path)
    if not path.exists() or path.stat().st_size == 0:
        if read_only:
            raise DataError(f"store {path} is empty; it holds no results")
        return
    with _sqlite_errors(path):
        conn = _connect(path, read_only=True)
        try:
            version = _schema_version(conn, path)
            if version == SCHEMA_VERSION:
                _check_intact(conn, path)
        finally:
            conn.close()
    if version is None and read_only:
        raise DataError(f"store {path} is an empty SQLite database; it holds no results")
    if version is not None and version != SCHEMA_VERSION:
        raise DataError(f"store {path} has schema version {version}, this softbits reads "
                            f"version {SCHEMA_VERSION}; use a new --store path")


class ResultStore:
    """Append-only results with resumable keys; safe against a killed writer."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        check_store(self.path, read_only)
        with _sqlite_errors(self.path):
            if not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = _connect(self.path, read_only)
            if not read_only and _schema_version(self._conn, self.path) is None:
                from softbits import __version__

                self._conn.executescript(
                    "BEGIN;" + _SCHEMA
                    + f"INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
                    + f"INSERT OR IGNORE INTO meta VALUES ('created_by', 'softbits {__version__}');"
                    + "COMMIT;")

    @classmethod
    def open_existing(cls, path: Path) -> ResultStore:
        """For reading: opened read-only, so a missing or empty file is a user error rather than
        a new store, and the file stays byte for byte as it was."""
        return cls(path, read_only=True)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_guarded
    def finished_keys(self) -> set[ResultKey]:
        rows = self._conn.execute(f"SELECT {', '.join(_KEY_COLUMNS)} FROM results")
        return {ResultKey(*r) for r in rows}

    @_guarded
    def claim(self, unit: str, keys: Iterable[ResultKey], owner: str, lease_s: float) -> bool:
        """Take ``unit`` (whose results are ``keys``) for ``owner`` until ``lease_s`` from now.

        False when its results are all stored already, or another runner holds a claim that has
        not expired; one transaction, so two runners never both get a unit.
        """
        now = time.time()
        with self._conn:
            self._conn.execute(_CLAIMS)
            if all(self._conn.execute(_FINISHED, astuple(k)).fetchone() for k in keys):
                return False
            held = self._conn.execute("SELECT owner FROM claims WHERE unit = ?", (unit,)).fetchone()
            # a claim of a process that has died on this machine ends now, not when its lease
            # runs out: rerunning a killed command resumes at once
            expired = now + lease_s if held is not None and _dead_here(held[0]) else now
            cursor = self._conn.execute(
                "INSERT INTO claims VALUES (?, ?, ?) ON CONFLICT(unit) DO UPDATE SET owner = excluded.owner, "
                "expires = excluded.expires WHERE claims.expires < ? OR claims.owner = excluded.owner",
                (unit, owner, now + lease_s, expired))
            return cursor.rowcount > 0

    @_guarded
    def renew_claims(self, owner: str, lease_s: float) -> None:
        """Extend every claim of ``owner`` to ``lease_s`` from now (the runner is alive)."""
        with self._conn:
            self._conn.execute(_CLAIMS)
            self._conn.execute("UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + lease_s, owner))

    @_guarded
    def release_claims(self, owner: str) -> None:
        """Drop every claim of ``owner`` (its units are finished or given up)."""
        with self._conn:
            self._conn.execute(_CLAIMS)
            self._conn.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    @_guarded
    def add_settings(self, settings: Iterable[Setting]) -> None:
        with self._conn:
            self._conn.executemany("INSERT OR IGNORE INTO settings VALUES (?, ?)",
                                   [(s.id, json.dumps(s.to_dict())) for s in settings])

    @_guarded
    def add_rows(self, rows: Iterable[ResultRow]) -> int:
        """Insert one finished task's rows in one transaction; returns rows newly added."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        values = []
        for r in rows:
            k = r.key
            values.append((k.dataset, k.method, k.bits, k.setting_id, k.phase, k.index, k.seed,
                           r.test_mse, json.dumps(r.metrics.to_dict()), r.metrics.train_seconds,
                           r.seconds, r.device, json.dumps(r.versions), now))
        with self._conn:
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO results (dataset, method, bits, setting_id, phase, idx, "
                "seed, test_mse, metrics, train_seconds, seconds, device, versions, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            return self._conn.total_changes - before

    @_guarded
    def set_choices(self, choices: Iterable[tuple[str, str, int, Setting, str, float | None]]) -> None:
        """Record the chosen setting per (dataset, method, bits) (replacing earlier choices)."""
        choices = list(choices)
        self.add_settings(c[3] for c in choices)
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO choices VALUES (?, ?, ?, ?, ?, ?)",
                [(d, m, b, s.id, src, val) for d, m, b, s, src, val in choices])

    @_guarded
    def results(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM results ORDER BY id", self._conn)

    @_guarded
    def choices(self) -> pd.DataFrame:
        """Choices joined with their setting values (one column per paper setting name)."""
        df = pd.read_sql_query(
            "SELECT c.*, s.params FROM choices c JOIN settings s USING (setting_id)", self._conn)
        params = pd.DataFrame([json.loads(p) for p in df.pop("params")], index=df.index)
        return pd.concat([df, params], axis=1)

    @_guarded
    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
