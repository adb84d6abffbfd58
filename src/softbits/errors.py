"""Errors that reach the user as one line.

Everything the user can get wrong raises :class:`SoftbitsError` (or a subclass); the CLI
prints its message on one line and exits with code 2. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

__all__ = ["SoftbitsError", "ConfigError", "DataError"]


class SoftbitsError(Exception):
    """A problem with the user's input, stated so that the user knows what to change."""


class ConfigError(SoftbitsError, ValueError):
    """An invalid setting (method, bits, schedule, …)."""


class DataError(SoftbitsError, ValueError):
    """A dataset or file that cannot be used as given."""
