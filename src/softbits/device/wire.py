"""The wire format: a 16-byte versioned header followed by packed samples.

Layout (all integers little-endian; see docs/wire-format.md)::

    offset size field
         0    2 magic        b"SB"
         2    1 version      1
         3    1 bits         bits per feature (1..16)
         4    2 n_features   u16
         6    8 model_id     first 8 bytes of SHA-256 of the encoder spec
        14    2 n_samples    u16, >= 1
        16    … samples      n_samples × ⌈n_features·bits/8⌉ bytes, LSB-first (see encode.py)

The first 14 bytes are constant for a model, so a device keeps them as a table and writes only
the sample count. :func:`parse_payload` checks every field against the server's spec, the exact
length and the zero padding bits, and raises :class:`PayloadError` naming the first problem.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from softbits.device.encode import EncodeBackend, encode_packed, unpack
from softbits.device.spec import EncoderSpec
from softbits.errors import DataError

__all__ = [
    "HEADER",
    "HEADER_BYTES",
    "MAGIC",
    "MAX_SAMPLES",
    "WIRE_VERSION",
    "Header",
    "PayloadError",
    "PayloadTooLarge",
    "build_payload",
    "encode_payload",
    "header_prefix",
    "parse_payload",
    "read_header",
]

MAGIC = b"SB"
WIRE_VERSION = 1
HEADER = struct.Struct("<2sBBH8sH")
HEADER_BYTES = HEADER.size
MAX_SAMPLES = 0xFFFF


class PayloadError(DataError):
    """A payload the server must refuse (HTTP 400, CoAP 4.00); the message names the problem."""


class PayloadTooLarge(PayloadError):
    """A payload over the size limit (HTTP 413, CoAP 4.13)."""

    def __init__(self, n_bytes: int, limit: int) -> None:
        super().__init__(f"payload of {n_bytes} bytes exceeds the limit of {limit} bytes")


class Header(NamedTuple):
    magic: bytes
    version: int
    bits: int
    n_features: int
    model_id: bytes
    n_samples: int


def header_prefix(spec: EncoderSpec) -> bytes:
    """The 14 bytes before the sample count: constant for a model."""
    return HEADER.pack(MAGIC, WIRE_VERSION, spec.bits, spec.n_features, spec.model_id_bytes, 0)[:14]


def build_payload(spec: EncoderSpec, packed: np.ndarray) -> bytes:
    """Header + packed samples [N, ⌈F·bits/8⌉] → one payload."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    if packed.ndim != 2 or packed.shape[1] != spec.sample_bytes:
        raise DataError(f"packed samples must be [N, {spec.sample_bytes}] bytes, got {packed.shape}")
    n = packed.shape[0]
    if not 1 <= n <= MAX_SAMPLES:
        raise DataError(f"a payload holds 1..{MAX_SAMPLES} samples, got {n}; split the input")
    return header_prefix(spec) + struct.pack("<H", n) + packed.tobytes()


def encode_payload(spec: EncoderSpec, X: np.ndarray, backend: EncodeBackend = "auto") -> bytes:
    """Raw features [N, F] → a complete payload."""
    return build_payload(spec, encode_packed(spec, X, backend))


def read_header(data: bytes) -> Header:
    """The header fields, checking only that 16 bytes are there."""
    if len(data) < HEADER_BYTES:
        raise PayloadError(f"truncated header: payload has {len(data)} bytes, "
                           f"a payload starts with a {HEADER_BYTES}-byte header")
    return Header(*HEADER.unpack_from(data))


def parse_payload(spec: EncoderSpec, data: bytes, max_bytes: int | None = None) -> np.ndarray:
    """Validate a payload against ``spec`` and return its codes [n_samples, F]."""
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(len(data), max_bytes)
    h = read_header(data)
    if h.magic != MAGIC:
        raise PayloadError(f"bad magic {h.magic!r}: not a softbits payload (expected {MAGIC!r})")
    if h.version != WIRE_VERSION:
        raise PayloadError(f"unsupported wire format version {h.version} (this server reads {WIRE_VERSION})")
    if (h.n_features, h.bits) != (spec.n_features, spec.bits):
        raise PayloadError(f"payload is for {h.n_features} features × {h.bits} bits, "
                           f"model {spec.model_id} expects {spec.n_features} × {spec.bits}")
    if h.model_id != spec.model_id_bytes:
        raise PayloadError(f"model id mismatch: payload is for {h.model_id.hex()}, "
                           f"this server has {spec.model_id}")
    if h.n_samples == 0:
        raise PayloadError("sample count is 0: a payload carries at least one sample")
    body = len(data) - HEADER_BYTES
    expected = h.n_samples * spec.sample_bytes
    if body < expected:
        raise PayloadError(f"truncated body: header says {h.n_samples} samples = {expected} bytes, "
                           f"got {body}")
    if body > expected:
        raise PayloadError(f"length mismatch: header says {h.n_samples} samples = {expected} bytes, "
                           f"got {body} ({body - expected} extra)")
    packed = np.frombuffer(data, dtype=np.uint8, offset=HEADER_BYTES).reshape(h.n_samples, spec.sample_bytes)
    used = (spec.n_features * spec.bits) % 8
    if used:
        bad = np.flatnonzero(packed[:, -1] >> used)
        if bad.size:
            raise PayloadError(f"nonzero padding bits in sample {int(bad[0])}: "
                               f"the last byte of a sample uses only its low {used} bits")
    return unpack(packed, spec.n_features, spec.bits)
