"""Feature names: what a model file, an encoder spec and the generated C can carry.

A name travels into the model id (a 16-bit length field), JSON headers and C comments; an empty,
repeated, overlong or unencodable name would give a model that cannot be exported or that reads
the wrong columns, so every way in (user tables, model files, encoder specs) checks here.
"""

from __future__ import annotations

from collections.abc import Sequence

from softbits.errors import DataError

__all__ = ["MAX_NAME_BYTES", "check_feature_names"]

#: the longest feature name, in UTF-8 bytes (the model id's field allows 65,535)
MAX_NAME_BYTES = 1024


def check_feature_names(names: Sequence[object], where: str = "the data", *, allow_empty: bool = False) -> list[str]:
    """``names`` as a list of text, or a one-line :class:`DataError` naming the first bad one:
    not text, empty (unless ``allow_empty``: an encoder spec only labels its C with names), not
    encodable as UTF-8, longer than :data:`MAX_NAME_BYTES` bytes, or repeated."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise DataError(f"feature name {i + 1} of {where} is not text ({type(name).__name__})")
        if not name.strip() and not allow_empty:
            raise DataError(f"feature name {i + 1} of {where} is empty")
        try:
            size = len(name.encode("utf-8"))
        except UnicodeEncodeError:
            raise DataError(f"feature name {i + 1} of {where} is not valid Unicode text") from None
        if size > MAX_NAME_BYTES:
            raise DataError(f"feature name {i + 1} of {where} is {size} bytes long; "
                            f"names are at most {MAX_NAME_BYTES} bytes")
        if name in seen:
            raise DataError(f"feature name {name[:80]!r} appears twice in {where}; names must be unique")
        seen.add(name)
    return [str(n) for n in names]
