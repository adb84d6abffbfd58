"""What the command modules share: the consoles, JSON output and the data-directory option
(the output checks live in :mod:`softbits.paths`, so that library code can use them without
loading typer). A module of its own, so that :mod:`softbits.cli` can import the command modules
that use these without an import cycle."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from softbits.paths import check_output_dir, check_output_file, writing

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
