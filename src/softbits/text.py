"""Reading numbers and JSON that users type or files carry, strictly.

Python's ``str.isdigit`` and ``int`` accept other scripts' digits (``'٣'`` is 3, ``'²'`` passes
``isdigit`` and then fails ``int``); ``json.loads`` keeps the last of repeated keys and recurses
into any depth. Options and files that name widths, budgets or model headers read through
here: ASCII digits only, repeated keys refused, deep nesting a one-line error.
"""

from __future__ import annotations

import json
import re
from typing import Any

from softbits.errors import DataError

__all__ = ["ascii_int", "strict_json"]

_ASCII_INT = re.compile(r"\+?[0-9]+")


def ascii_int(text: str) -> int | None:
    """``text`` (surrounding spaces allowed, a leading ``+``) as an int when it is ASCII digits; else None."""
    stripped = text.strip()
    return int(stripped) if _ASCII_INT.fullmatch(stripped) else None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DataError(f"key {key[:80]!r} appears twice")
        out[key] = value
    return out


def strict_json(text: str, what: str) -> Any:
    """``text`` parsed as JSON, or a one-line :class:`DataError` saying ``what`` is not valid
    JSON: malformed, nested too deeply, or an object with a repeated key. A leading byte-order
    mark is ignored."""
    try:
        return json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} is not valid JSON ({exc})") from None
    except RecursionError:
        raise DataError(f"{what} is not valid JSON (nested too deeply)") from None
    except DataError as exc:
        raise DataError(f"{what} is not valid JSON ({exc})") from None
