"""Per-feature bit widths for a payload budget: the user's widths by name, budgets in bits or in
the bytes of a compact single-sample frame, and the allocator that chooses widths from training
data (docs/payload-budget.md).
"""

from __future__ import annotations

import csv
import json
import numbers
from collections.abc import Sequence
from pathlib import Path

from softbits.codes import MAX_BITS, check_widths
from softbits.errors import ConfigError, DataError

__all__ = ["budget_bits", "parse_widths"]


def parse_widths(text: str, feature_names: Sequence[str], default_bits: int) -> tuple[int, ...]:
    """``--bits-per-feature``: ``name=n,name=n,…``, or a ``.json`` file ({name: n}) or ``.csv``
    file (rows ``name,bits``, a header row allowed) → one width per feature, in the data's order.

    Features not named get ``default_bits``. Unknown or repeated names, widths outside
    0..MAX_BITS and every feature at 0 bits are one-line errors.
    """
    pairs: list[tuple[str, object]] = []
    if text.lower().endswith((".json", ".csv")):
        pairs = _read_widths_file(Path(text))
    else:
        for item in (part.strip() for part in text.split(",")):
            key, sep, given = item.rpartition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--bits-per-feature wants name=bits items separated by commas, got {item!r}")
            pairs.append((key.strip(), given.strip()))
    known = {name: f for f, name in enumerate(feature_names)}
    widths = [default_bits] * len(feature_names)
    seen: set[str] = set()
    for name, value in pairs:
        if name not in known:
            raise ConfigError(f"--bits-per-feature names {name!r}, which is not a feature of the data "
                              f"(features: {', '.join(feature_names)})")
        if name in seen:
            raise ConfigError(f"--bits-per-feature names {name!r} twice")
        seen.add(name)
        widths[known[name]] = _width(value, name)
    return check_widths(widths, len(feature_names))


def _width(value: object, name: str) -> int:
    """One width from text or a JSON number, in 0..MAX_BITS."""
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= int(value) <= MAX_BITS:
        raise ConfigError(f"--bits-per-feature: bits of {name!r} must be an integer in 0..{MAX_BITS}, got {value!r}")
    return int(value)


def _read_widths_file(path: Path) -> list[tuple[str, object]]:
    """(name, width) pairs of a widths file; a missing or malformed file is a :class:`DataError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read --bits-per-feature file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"cannot read --bits-per-feature file {path}: not UTF-8 text") from None
    if path.suffix.lower() == ".json":
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"--bits-per-feature file {path} is not JSON ({exc})") from None
        if not isinstance(mapping, dict):
            raise DataError(f"--bits-per-feature file {path} must hold one JSON object {{name: bits}}")
        return list(mapping.items())
    rows = [row for row in csv.reader(text.splitlines()) if any(cell.strip() for cell in row)]
    if rows and [cell.strip().lower() for cell in rows[0]] == ["name", "bits"]:
        rows = rows[1:]
    for number, row in enumerate(rows, 1):
        if len(row) != 2:
            raise DataError(f"--bits-per-feature file {path}: row {number} must be name,bits, got {row!r}")
    return [(row[0].strip(), row[1].strip()) for row in rows]


def budget_bits(bits: int | None, payload_bytes: int | None, n_features: int) -> int | None:
    """The code bits per sample that ``--budget-bits`` or ``--budget-bytes`` allow (None: no budget).

    ``--budget-bytes`` is the whole single-sample payload in the compact profile, so its framing
    comes off first: 8·(N − framing) bits. A budget must leave at least 1 bit and at most
    MAX_BITS per feature.
    """
    if bits is not None and payload_bytes is not None:
        raise ConfigError("give --budget-bits or --budget-bytes, not both")
    if payload_bytes is not None:
        from softbits.device.wire import COMPACT_FRAMING

        if payload_bytes <= COMPACT_FRAMING:
            raise ConfigError(f"--budget-bytes {payload_bytes} leaves no room for codes: a compact frame "
                              f"spends {COMPACT_FRAMING} bytes on framing")
        bits = 8 * (payload_bytes - COMPACT_FRAMING)
    if bits is None:
        return None
    if not 1 <= bits <= MAX_BITS * n_features:
        raise ConfigError(f"a budget must be 1..{MAX_BITS * n_features} code bits for {n_features} features "
                          f"({MAX_BITS} bits each at most), got {bits}")
    return bits
