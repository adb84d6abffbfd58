"""Whether an output can be written, asked before any work so that nothing computed is lost.

``os.access`` also reports read-only mounts, for root too (whom permission bits do not stop).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FILE_NOT_WRITABLE", "directory_problem"]

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
