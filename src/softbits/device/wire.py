"""The wire format: framed payloads of packed samples, in three profiles.

- ``full``: a 16-byte versioned header and 1..65535 samples (batches and files, below);
- ``compact``: one sample after 2 bytes of framing, a tag byte (profile and version,
  :data:`COMPACT_TAG`) and the model tag (the first byte of the model id), for links where every
  byte counts (a LoRaWAN DR0 uplink carries 51);
- ``none``: the bytes of one sample alone, for a route that names the model id
  (CoAP ``/predict/<model-id>``, HTTP ``/v1/predict/<model-id>``).

:func:`parse_payload` tells ``full`` and ``compact`` apart by the first byte: ``0xC_`` (high
nibble 0xC) is a compact frame, anything else is read as a full header, whose magic starts with
``"S"`` (0x53). A ``none`` body has no marker; only its route says what it is.

Full header layout (all integers little-endian; see docs/wire-format.md)::

    offset size field
         0    2 magic        b"SB"
         2    1 version      1
         3    1 bits         bits per feature (1..16); 0 for a mixed-width model
         4    2 n_features   u16, all features (0-width ones included)
         6    8 model_id     first 8 bytes of SHA-256 of the encoder spec
        14    2 n_samples    u16, >= 1
        16    … samples      n_samples × ⌈Σ w_f / 8⌉ bytes, LSB-first (see encode.py)

A mixed-width model's widths are part of its spec, so its model id names them; no frame carries
them. The compact frame and the bare sample carry no widths either: the model tag or the route
names the model, and the exact length and zero padding bits of its sample are checked.

The first 14 bytes are constant for a model, so a device keeps them as a table and writes only
the sample count. :func:`parse_payload` checks every field against the server's spec, the exact
length and the zero padding bits, and raises :class:`PayloadError` naming the first problem.
"""

from __future__ import annotations

import struct
from typing import Literal, NamedTuple

import numpy as np

from softbits.codes import COMPACT_FRAMING
from softbits.device.encode import EncodeBackend, encode_packed, unpack
from softbits.device.spec import EncoderSpec
from softbits.errors import DataError

__all__ = [
    "COMPACT_FRAMING",
    "COMPACT_TAG",
    "FRAMES",
    "HEADER",
    "HEADER_BYTES",
    "MAGIC",
    "MAX_SAMPLES",
    "WIRE_VERSION",
    "Frame",
    "Header",
    "PayloadError",
    "PayloadTooLarge",
    "build_compact",
    "build_frame",
    "build_payload",
    "encode_payload",
    "header_bits",
    "header_prefix",
    "model_tag",
    "parse_payload",
    "read_header",
]

MAGIC = b"SB"
WIRE_VERSION = 1
HEADER = struct.Struct("<2sBBH8sH")
HEADER_BYTES = HEADER.size
MAX_SAMPLES = 0xFFFF
#: first byte of a compact frame: high nibble 0xC names the profile, low nibble its version (1)
COMPACT_TAG = 0xC1
_COMPACT_PROFILE = 0xC0

Frame = Literal["full", "compact", "none"]
#: the framing profiles a device, ``encode`` and ``send`` can write
FRAMES: tuple[Frame, ...] = ("full", "compact", "none")


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


def header_bits(spec: EncoderSpec) -> int:
    """The header's bits byte: the shared width, or 0 when the widths are mixed."""
    return 0 if spec.widths else spec.bits


def _shape(n_features: int, bits: int) -> str:
    return f"{n_features} features of mixed widths" if bits == 0 else f"{n_features} × {bits}"


def header_prefix(spec: EncoderSpec) -> bytes:
    """The 14 bytes before the sample count: constant for a model."""
    return HEADER.pack(MAGIC, WIRE_VERSION, header_bits(spec), spec.n_features, spec.model_id_bytes, 0)[:14]


def model_tag(spec: EncoderSpec) -> int:
    """The compact frame's model tag: the first byte of the model id.

    One byte tells 1 model in 256 apart; the fixed frame length (the model's sample bytes + 2)
    catches most of the rest. A device that must be told apart from every other model posts
    the ``full`` header, or a bare sample to the route naming the whole model id.
    """
    return spec.model_id_bytes[0]


def build_compact(spec: EncoderSpec, sample: np.ndarray) -> bytes:
    """One packed sample [⌈F·bits/8⌉] (or [1, ⌈F·bits/8⌉]) → a compact frame."""
    return bytes((COMPACT_TAG, model_tag(spec))) + _one_sample(spec, sample, "compact")


def build_frame(spec: EncoderSpec, packed: np.ndarray, frame: Frame) -> bytes:
    """Packed samples [N, ⌈F·bits/8⌉] in the given profile; compact and none take one sample."""
    if frame == "full":
        return build_payload(spec, packed)
    if frame == "compact":
        return build_compact(spec, packed)
    if frame == "none":
        return _one_sample(spec, packed, "none")
    raise ValueError(f"unknown frame {frame!r}")


def _one_sample(spec: EncoderSpec, packed: np.ndarray, frame: str) -> bytes:
    packed = np.atleast_2d(np.ascontiguousarray(packed, dtype=np.uint8))
    if packed.ndim != 2 or packed.shape[1] != spec.sample_bytes:
        raise DataError(f"packed samples must be [N, {spec.sample_bytes}] bytes, got {packed.shape}")
    if packed.shape[0] != 1:
        raise DataError(f"--frame {frame} carries exactly one sample, got {packed.shape[0]} rows; "
                        "use --frame full for batches and files")
    return packed.tobytes()


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


def parse_payload(spec: EncoderSpec, data: bytes, max_bytes: int | None = None,
                  frame: Frame | Literal["auto"] = "auto") -> np.ndarray:
    """Validate a payload against ``spec`` and return its codes [n_samples, F].

    ``auto`` reads a compact frame when the first byte's high nibble is 0xC, else a full
    payload; ``none`` reads one bare sample (the route named the model).
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(len(data), max_bytes)
    if frame == "auto":
        frame = "compact" if data[:1] and data[0] & 0xF0 == _COMPACT_PROFILE else "full"
    if frame == "compact":
        return _parse_compact(spec, data)
    if frame == "none":
        if len(data) != spec.sample_bytes:
            raise PayloadError(f"length mismatch: a bare sample of model {spec.model_id} is "
                               f"{spec.sample_bytes} bytes, got {len(data)}")
        return _codes(spec, data, 0, 1)
    return _parse_full(spec, data)


def _parse_compact(spec: EncoderSpec, data: bytes) -> np.ndarray:
    if not data or data[0] & 0xF0 != _COMPACT_PROFILE:
        first = f"0x{data[0]:02x}" if data else "nothing"
        raise PayloadError(f"not a compact frame: it starts with {first}, expected 0x{COMPACT_TAG:02x}")
    if data[0] != COMPACT_TAG:
        raise PayloadError(f"unsupported compact frame version {data[0] & 0x0F} "
                           f"(this server reads {COMPACT_TAG & 0x0F})")
    expected = COMPACT_FRAMING + spec.sample_bytes
    if len(data) < COMPACT_FRAMING:
        raise PayloadError(f"truncated compact frame: {len(data)} bytes, model {spec.model_id} "
                           f"takes {expected}")
    if data[1] != model_tag(spec):
        raise PayloadError(f"model tag mismatch: compact frame is for a model with tag 0x{data[1]:02x}, "
                           f"this server has {spec.model_id} (tag 0x{model_tag(spec):02x})")
    if len(data) != expected:
        raise PayloadError(f"length mismatch: a compact frame of model {spec.model_id} is "
                           f"{COMPACT_FRAMING} + {spec.sample_bytes} = {expected} bytes, got {len(data)}")
    return _codes(spec, data, COMPACT_FRAMING, 1)


def _parse_full(spec: EncoderSpec, data: bytes) -> np.ndarray:
    h = read_header(data)
    if h.magic != MAGIC:
        raise PayloadError(f"bad magic {h.magic!r}: not a softbits payload (expected {MAGIC!r})")
    if h.version != WIRE_VERSION:
        raise PayloadError(f"unsupported wire format version {h.version} (this server reads {WIRE_VERSION})")
    if (h.n_features, h.bits) != (spec.n_features, header_bits(spec)):
        stated = (f"{h.n_features} features of mixed widths" if h.bits == 0
                  else f"{h.n_features} features × {h.bits} bits")
        raise PayloadError(f"payload is for {stated}, model {spec.model_id} expects "
                           f"{_shape(spec.n_features, header_bits(spec))}")
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
    return _codes(spec, data, HEADER_BYTES, h.n_samples)


def _codes(spec: EncoderSpec, data: bytes, offset: int, n_samples: int) -> np.ndarray:
    """Codes [n_samples, F] of the samples from ``offset``, whose padding bits must be zero."""
    packed = np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(n_samples, spec.sample_bytes)
    used = spec.code_bits % 8
    if used:
        bad = np.flatnonzero(packed[:, -1] >> used)
        if bad.size:
            raise PayloadError(f"nonzero padding bits in sample {int(bad[0])}: "
                               f"the last byte of a sample uses only its low {used} bits")
    return unpack(packed, spec.n_features, spec.feature_bits)
