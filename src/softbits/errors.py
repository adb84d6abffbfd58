"""Errors that reach the user as one line.

Everything the user can get wrong raises a :class:`SoftbitsError`; the CLI prints its message
on one line and exits with code 2. Anything else is a bug and keeps its traceback. Which class:

- :class:`ConfigError`: a setting, option or argument the user chose (method, bits, schedule,
  an address, a URL, a backend, an output path that cannot be written).
- :class:`DataError`: a file, table, payload, encoder spec or model file that cannot be used as
  given (missing, unreadable, malformed, or not fit for the command).
- :class:`SoftbitsError` itself only when neither the user's choices nor their files are at
  fault: the environment or a remote peer (a server that cannot be reached or answers an error,
  an address that cannot be bound).

Both subclasses are also :class:`ValueError`, so callers that catch ``ValueError`` keep working;
code that catches ``ValueError`` around its own checks must let them through unchanged.
"""

from __future__ import annotations

__all__ = ["SoftbitsError", "ConfigError", "DataError"]


class SoftbitsError(Exception):
    """A problem the user can act on, stated so that they know what to change."""


class ConfigError(SoftbitsError, ValueError):
    """A setting, option or argument the user chose that cannot be used."""


class DataError(SoftbitsError, ValueError):
    """A file, table, payload or model file that cannot be used as given."""
