"""Batch encoder and bit packer: raw float32 features → codes → LSB-first packed bytes.

Codes: k = #{j : x > t_j} over the spec's sorted raw-unit float32 thresholds. The generated C
finds k by a binary search of ``bits`` comparisons; the batch kernels count SIMD comparisons up
to 8 bits and search above. Every variant evaluates the same float32 ``x > t``, so all agree.
Inputs are first cast to float32 (round to nearest), the precision a device holds. NaN compares
false everywhere, so NaN → 0; −inf → 0 and +inf → 2^w − 1 because active thresholds are finite.
A mixed-width spec pads each feature's unused slots with +inf, which no x exceeds, so the same
kernels give feature f codes in 0..2^w_f − 1 (a 0-width feature: always 0).

Packing: within a sample, feature f's code occupies stream bits [Σ_{g<f} w_g, Σ_{g≤f} w_g)
([f·bits, (f+1)·bits) when uniform), code LSB first; stream bit b is bit (b mod 8) of byte
⌊b/8⌋ (bit 0 = least significant). A 0-width feature occupies nothing. Each sample starts on a
byte boundary and its padding bits are zero; a sample is ⌈Σ w_f / 8⌉ bytes.

Two backends compute identical results: numba kernels (compiled once, cached on disk) for large
batches, and a pure-numpy path (``np.searchsorted`` / ``np.packbits``) used for small batches,
where compiling does not pay, and whenever numba is not installed. Small batches never touch numba.
Where numba finds no writable cache directory (a read-only install, an unwritable ``HOME``) the
kernels are compiled in memory for each process instead: slower to start, same codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from softbits.codes import check_widths, max_code, widths_payload_bytes
from softbits.device.spec import EncoderSpec
from softbits.errors import ConfigError, DataError

__all__ = [
    "EncodeBackend",
    "NUMBA_MIN_VALUES",
    "Widths",
    "code_dtype",
    "encode",
    "encode_packed",
    "has_numba",
    "pack",
    "unpack",
]

EncodeBackend = Literal["auto", "numba", "numpy"]
#: one width for every feature, or one width per feature (0 = not sent)
Widths = int | Sequence[int]
#: below this many values per call the numpy path is used under ``backend="auto"``
NUMBA_MIN_VALUES = 1 << 16
#: samples per block of the counting kernel (a column buffer that stays in L1)
_BLOCK = 256


def code_dtype(bits: int) -> np.dtype:
    """uint8 codes up to 8 bits, uint16 above."""
    return np.dtype(np.uint8 if bits <= 8 else np.uint16)


@lru_cache(maxsize=1)
def _kernels() -> dict[str, Callable[..., Any]] | None:
    """The kernels, cached on disk where numba can write; ``None`` without numba.

    ``njit(cache=True)`` raises RuntimeError at decoration when none of numba's cache locators
    has a writable directory; a server on a read-only host must still encode, so the kernels
    are then defined without an on-disk cache.
    """
    try:
        import numba
    except ImportError:
        return None
    try:
        return _define_kernels(numba, cache=True)
    except RuntimeError:
        return _define_kernels(numba, cache=False)


def _define_kernels(numba: Any, cache: bool) -> dict[str, Callable[..., Any]]:
    """The four kernels (compiled lazily on first call)."""

    @numba.njit(cache=cache, nogil=True)
    def count_kernel(x, table, counts, out):  # pragma: no cover - compiled
        # blocks of samples, one feature at a time: the inner loop over a contiguous column
        # buffer vectorizes (SIMD compares), which beats a search's dependent loads up to 8 bits;
        # feature j compares only its own counts[j] thresholds (the +inf padding would add 0)
        n, f = x.shape
        col = np.empty(_BLOCK, np.float32)
        cnt = np.empty(_BLOCK, np.int32)
        for i0 in range(0, n, _BLOCK):
            nb = min(_BLOCK, n - i0)
            for j in range(f):
                for i in range(nb):
                    col[i] = x[i0 + i, j]
                    cnt[i] = 0
                for k in range(counts[j]):
                    t = table[j, k]
                    for i in range(nb):
                        cnt[i] += col[i] > t
                for i in range(nb):
                    out[i0 + i, j] = cnt[i]

    @numba.njit(cache=cache, nogil=True)
    def search_kernel(x, table, widths, out):  # pragma: no cover - compiled
        # the C encoder's binary search: widths[j] comparisons per value, for wide codes
        n, f = x.shape
        for j in range(f):
            row = table[j]
            for i in range(n):
                v = x[i, j]
                c = 0
                for b in range(widths[j] - 1, -1, -1):
                    s = 1 << b
                    if v > row[c + s - 1]:
                        c += s
                out[i, j] = c

    @numba.njit(cache=cache, nogil=True)
    def pack_kernel(codes, widths, out):  # pragma: no cover - compiled
        n, f = codes.shape
        for i in range(n):
            acc = np.uint64(0)
            filled = 0
            o = 0
            for j in range(f):
                acc |= np.uint64(codes[i, j]) << np.uint64(filled)
                filled += widths[j]
                while filled >= 8:
                    out[i, o] = np.uint8(acc & np.uint64(0xFF))
                    acc >>= np.uint64(8)
                    filled -= 8
                    o += 1
            if filled > 0:
                out[i, o] = np.uint8(acc & np.uint64(0xFF))

    @numba.njit(cache=cache, nogil=True)
    def unpack_kernel(data, widths, out):  # pragma: no cover - compiled
        n, f = out.shape
        for i in range(n):
            acc = np.uint64(0)
            filled = 0
            o = 0
            for j in range(f):
                w = widths[j]
                while filled < w:
                    acc |= np.uint64(data[i, o]) << np.uint64(filled)
                    filled += 8
                    o += 1
                out[i, j] = acc & ((np.uint64(1) << np.uint64(w)) - np.uint64(1))
                acc >>= np.uint64(w)
                filled -= w

    return {"count": count_kernel, "search": search_kernel, "pack": pack_kernel, "unpack": unpack_kernel}


def has_numba() -> bool:
    return _kernels() is not None


def _use_numba(backend: EncodeBackend, n_values: int) -> bool:
    """Whether this call runs the kernels; small ``auto`` batches do not even import numba."""
    if backend == "numpy":
        return False
    if backend == "numba":
        if _kernels() is None:
            raise ConfigError("backend 'numba' requested but numba is not installed")
        return True
    return n_values >= NUMBA_MIN_VALUES and _kernels() is not None


def _as_features(X: np.ndarray, n_features: int) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != n_features:
        got = X.shape[1] if X.ndim == 2 else f"an array of shape {X.shape}"
        raise DataError(f"expected {n_features} features per sample, got {got}")
    return np.ascontiguousarray(X, dtype=np.float32)


def encode(spec: EncoderSpec, X: np.ndarray, backend: EncodeBackend = "auto") -> np.ndarray:
    """Codes [N, F] (uint8, or uint16 above 8 bits) for raw features [N, F]."""
    x = _as_features(X, spec.n_features)
    out = np.empty(x.shape, dtype=code_dtype(spec.bits))
    if _use_numba(backend, x.size):
        kernels = _kernels()
        widths = np.array(spec.feature_bits, dtype=np.int64)
        if spec.bits <= 8:
            kernels["count"](x, spec.thresholds, (1 << widths) - 1, out)  # type: ignore[index]
        else:
            kernels["search"](x, spec.thresholds, widths, out)  # type: ignore[index]
        return out
    for j in range(spec.n_features):
        col = x[:, j]
        out[:, j] = np.searchsorted(spec.thresholds[j], col, side="left")
        out[np.isnan(col), j] = 0
    return out


def _widths(bits: Widths, n_features: int) -> tuple[int, ...]:
    """Per-feature widths from ``bits`` (an int means every feature), checked against F."""
    if isinstance(bits, (int, np.integer)):
        return (int(bits),) * n_features
    widths = tuple(int(w) for w in bits)
    if len(widths) != n_features:
        raise DataError(f"{len(widths)} bit widths for {n_features} features")
    try:
        return check_widths(widths)
    except ConfigError as exc:
        raise DataError(str(exc)) from None


@lru_cache(maxsize=64)
def _stream_layout(widths: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """For each bit of a sample's code stream: its feature and its bit within that code
    (cached: a server unpacks every request with its one model's widths)."""
    feature = np.repeat(np.arange(len(widths)), widths)
    starts = np.cumsum((0,) + widths[:-1])
    shift = np.arange(feature.size) - np.repeat(starts, widths)
    feature.setflags(write=False)
    shift.setflags(write=False)
    return feature, shift


def pack(codes: np.ndarray, bits: Widths, backend: EncodeBackend = "auto") -> np.ndarray:
    """Packed samples [N, ⌈Σ w_f / 8⌉] uint8 from codes [N, F] (LSB-first, see module doc).

    ``bits``: one width for all features, or a width per feature (0: the feature is left out,
    its code must be 0).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise DataError(f"codes must be [N, F], got shape {codes.shape}")
    n, f = codes.shape
    widths = _widths(bits, f)
    top = max(widths)
    if codes.size:
        bad = (codes.min(axis=0) < 0) | (codes.max(axis=0) > np.array([max_code(w) for w in widths]))
        if bad.any() and min(widths) == top:
            raise DataError(f"codes must lie in 0..{max_code(top)} for {top} bits")
        if bad.any():
            j = int(np.argmax(bad))
            raise DataError(f"codes of feature {j} must lie in 0..{max_code(widths[j])} for {widths[j]} bits")
    width = widths_payload_bytes(widths)
    codes = np.ascontiguousarray(codes, dtype=code_dtype(top))
    if set(widths) == {8}:  # one code per byte: the codes are the bytes
        return codes.copy()
    if _use_numba(backend, codes.size):
        out = np.empty((n, width), dtype=np.uint8)
        _kernels()["pack"](codes, np.array(widths, dtype=np.int64), out)  # type: ignore[index]
        return out
    feature, shift = _stream_layout(widths)
    stream = ((codes[:, feature] >> shift.astype(codes.dtype)) & 1).astype(np.uint8)
    return np.packbits(stream, axis=1, bitorder="little").reshape(n, width)


def unpack(data: np.ndarray, n_features: int, bits: Widths, backend: EncodeBackend = "auto") -> np.ndarray:
    """Codes [N, F] from packed samples [N, ⌈Σ w_f / 8⌉] (padding bits are ignored here);
    a 0-width feature's code is 0."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    widths = _widths(bits, n_features)
    width = widths_payload_bytes(widths)
    if data.ndim != 2 or data.shape[1] != width:
        raise DataError(f"packed samples must be [N, {width}] bytes, got shape {data.shape}")
    n = data.shape[0]
    dtype = code_dtype(max(widths))
    if set(widths) == {8}:
        return data.copy()
    if _use_numba(backend, n * n_features):
        out = np.empty((n, n_features), dtype=dtype)
        _kernels()["unpack"](data, np.array(widths, dtype=np.int64), out)  # type: ignore[index]
        return out
    stream = np.unpackbits(data, axis=1, bitorder="little")[:, : sum(widths)]
    if len(set(widths)) == 1:  # uniform: every code is one row of a [F, bits] bit matrix
        bits = widths[0]
        weights = (1 << np.arange(bits, dtype=np.uint32)).astype(np.uint32)
        return (stream.reshape(n, n_features, bits).astype(np.uint32) @ weights).astype(dtype)
    feature, shift = _stream_layout(widths)
    stream = stream.astype(np.uint32)
    sent = np.flatnonzero(widths)
    codes = np.zeros((n, n_features), dtype=dtype)
    if n:  # each sent feature's code is the sum of its weighted stream bits
        starts = np.searchsorted(feature, sent)
        codes[:, sent] = np.add.reduceat(stream << shift.astype(np.uint32), starts, axis=1)
    return codes


def encode_packed(spec: EncoderSpec, X: np.ndarray, backend: EncodeBackend = "auto") -> np.ndarray:
    """Raw features [N, F] → packed samples [N, ⌈Σ w_f / 8⌉], the bytes ``softbits_encode`` writes."""
    return pack(encode(spec, X, backend), spec.feature_bits, backend)
