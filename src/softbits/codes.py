"""The arithmetic of n-bit codes, in one place: the bit range, thresholds per code width, bytes
per packed sample.

Trainer, model file, device encoder, wire format and C generator all size tables and payloads
from these functions, so they cannot disagree. Widths are one per model today; the functions
take the width as their own argument (not folded into a feature count); per-feature widths
(0 = the feature is not sent) go through :func:`check_widths` and :func:`widths_payload_bytes`,
which sum the widths instead of multiplying.
"""

from __future__ import annotations

import numbers

from softbits.errors import ConfigError

__all__ = ["COMPACT_FRAMING", "MAX_BITS", "check_bits", "check_widths", "max_code", "n_levels", "n_thresholds", "payload_bytes",
           "widths_payload_bytes"]

#: bytes of framing in front of a compact frame's sample (the wire format's tag and model tag);
#: here so that a payload budget can be turned into code bits without the wire module
COMPACT_FRAMING = 2

#: codes travel as at most 16-bit integers (uint16 on the server side)
MAX_BITS = 16


def check_bits(bits: object) -> int:
    """``bits`` as a Python int in 1..MAX_BITS, or a one-line :class:`ConfigError`.

    bool is refused although it is an int: ``True`` bits is a typo, not a width.
    """
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 1 <= int(bits) <= MAX_BITS:
        raise ConfigError(f"bits must be an integer in 1..{MAX_BITS}, got {bits!r}")
    return int(bits)


def n_levels(bits: int) -> int:
    """2^n codes of n bits."""
    return 1 << bits


def n_thresholds(bits: int) -> int:
    """M = 2^n − 1 sorted thresholds separate the 2^n codes."""
    return n_levels(bits) - 1


def max_code(bits: int) -> int:
    """The largest code, every threshold exceeded (equal to the number of thresholds)."""
    return n_thresholds(bits)


def payload_bytes(n_features: int, bits: int) -> int:
    """Bytes of one sample's codes packed LSB-first without gaps: ⌈F·n / 8⌉."""
    return (n_features * bits + 7) // 8


def check_widths(widths: object, n_features: int | None = None) -> tuple[int, ...]:
    """Per-feature widths as a tuple of ints in 0..MAX_BITS, or a one-line :class:`ConfigError`.

    A width of 0 drops the feature from the payload; at least one feature must be sent. With
    ``n_features`` the count must match.
    """
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise ConfigError(f"bits per feature must be a list of integers, got {widths!r}")
    values = list(widths)
    for w in values:
        if isinstance(w, bool) or not isinstance(w, numbers.Integral) or not 0 <= int(w) <= MAX_BITS:
            raise ConfigError(f"bits per feature must be integers in 0..{MAX_BITS}, got {w!r}")
    if n_features is not None and len(values) != n_features:
        raise ConfigError(f"{len(values)} bit widths given for {n_features} features")
    if not values or not any(values):
        raise ConfigError("every feature has 0 bits: at least one feature must be sent")
    return tuple(int(w) for w in values)


def widths_payload_bytes(widths: tuple[int, ...]) -> int:
    """Bytes of one sample's codes with per-feature widths, packed LSB-first: ⌈Σ w_f / 8⌉."""
    return (sum(widths) + 7) // 8
