"""Whether an output can be written, asked before any work so that nothing computed is lost.

``os.access`` also reports read-only mounts, for root too (whom permission bits do not stop).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from softbits.errors import ConfigError, DataError

__all__ = ["FILE_NOT_WRITABLE", "check_output_dir", "check_output_file", "directory_problem", "writing"]

#: why an existing file cannot be written
FILE_NOT_WRITABLE = "cannot write this file (no permission or a read-only file system)"


def directory_problem(target: Path) -> str | None:
    """Why files cannot be created in ``target`` (a directory to use or to create), or None.

    The nearest existing ancestor (``target`` itself when it exists) must be a directory this
    process can write in.
    """
    existing = target
    while not os.path.exists(existing):
        existing = existing.parent
    if not os.path.isdir(existing):
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write in {existing} (no permission or a read-only file system)"
    return None


def _check_creatable(target: Path, option: str, shown: Path) -> None:
    """``target`` (a directory to create or use) must lie below a writable directory."""
    problem = directory_problem(target)
    if problem is not None:
        raise ConfigError(f"{option} {shown}: {problem}")


def check_output_file(path: Path, option: str) -> None:
    """Refuse now, before any work, an output file that could not be written at the end.

    ``os.access`` also reports read-only mounts, for root too; a later failure (a full disk)
    still surfaces as one line through :func:`writing`.
    """
    if os.path.isdir(path):
        raise ConfigError(f"{option} {path} is a directory; give a file path")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{option} {path}: {FILE_NOT_WRITABLE}")
        return
    _check_creatable(path.parent, option, path)


def check_output_dir(path: Path, option: str) -> None:
    """Refuse now, before any work, an output directory that could not be created or written."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{option} {path} exists and is not a directory")
    _check_creatable(path, option, path)


@contextmanager
def writing(option: str) -> Iterator[None]:
    """An OS error while writing an output becomes one line naming the option and the file."""
    try:
        yield
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise DataError(f"{option}: cannot write{where} ({exc.strerror or exc})") from None
