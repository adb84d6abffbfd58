"""What the command modules share: the consoles, JSON output, the data-directory option and
the output checks. A module of its own, so that :mod:`softbits.cli` can import the command
modules that use these without an import cycle."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from softbits.errors import ConfigError, DataError
from softbits.paths import FILE_NOT_WRITABLE, directory_problem

__all__ = ["console", "err_console", "print_json", "DataDirOpt", "check_output_file",
           "check_output_dir", "writing"]

console = Console()
err_console = Console(stderr=True)

def print_json(obj: Any) -> None:
    """Exactly one JSON object on stdout (NaN/inf become null)."""
    sys.stdout.write(json.dumps(_json_safe(obj)) + "\n")
    sys.stdout.flush()


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", envvar="SOFTBITS_DATA_DIR",
                       help="Directory with <name>.csv.gz copies of the datasets.")]


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
