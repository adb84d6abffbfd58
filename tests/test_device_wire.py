"""Wire format: golden payloads (bytes + sha256), header layout, and every refusal message."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from softbits.device.spec import EncoderSpec
from softbits.device.wire import (
    HEADER_BYTES,
    PayloadError,
    PayloadTooLarge,
    build_payload,
    encode_payload,
    header_prefix,
    parse_payload,
    read_header,
)
from softbits.errors import SoftbitsError

GOLDEN = Path(__file__).parent / "expected" / "payloads"


def _grid(n: int, f: int, step: float) -> np.ndarray:
    """Deterministic inputs without an RNG (RNG streams may change between numpy versions)."""
    return ((np.arange(n * f, dtype=np.float64) * step) % 4.0 - 2.0).reshape(n, f)


def golden_cases() -> dict[str, tuple[EncoderSpec, np.ndarray]]:
    """Name → (spec, raw inputs); the payload files in tests/expected/payloads/ are their encodings."""
    f3b2 = EncoderSpec(("a", "b", "c"), 2, np.array(
        [[-1.0, 0.0, 1.0], [0.5, 1.5, 2.5], [-0.25, 0.0, 1e-3]], dtype=np.float32))
    x3 = np.array([[-2.0, 0.5, 0.0], [0.0, 1.5, 1e-3], [1.0000001, 3.0, np.nan],
                   [np.inf, -np.inf, 5.0]])
    f5b3 = EncoderSpec(tuple(f"f{i}" for i in range(5)), 3,
                       np.tile(np.linspace(-1.5, 1.5, 7, dtype=np.float32), (5, 1)))
    f10b4 = EncoderSpec(tuple(f"X{i}" for i in range(1, 11)), 4,
                        np.tile(np.linspace(-1.75, 1.75, 15, dtype=np.float32), (10, 1)))
    f2b12 = EncoderSpec(("p", "q"), 12, np.tile(np.linspace(-2, 2, 4095, dtype=np.float32), (2, 1)))
    return {
        "f3b2": (f3b2, x3),
        "f5b3": (f5b3, _grid(6, 5, 0.37)),
        "f10b4": (f10b4, _grid(8, 10, 0.731)),
        "f2b12": (f2b12, _grid(5, 2, 0.913)),
    }


def _sums() -> dict[str, str]:
    lines = (GOLDEN / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


@pytest.mark.parametrize("name", sorted(golden_cases()))
def test_golden_payloads(name):
    spec, X = golden_cases()[name]
    data = encode_payload(spec, X)
    path = GOLDEN / f"{name}.bin"
    assert data == path.read_bytes(), f"{name}: encoding changed; the wire format is a contract"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == _sums()[path.name]
    codes = parse_payload(spec, data)
    np.testing.assert_array_equal(codes, (X.astype(np.float32)[:, :, None] > spec.thresholds).sum(-1))


def test_golden_f3b2_bytes_by_hand():
    """Header fields and the packed bytes, spelled out as in docs/wire-format.md."""
    spec, X = golden_cases()["f3b2"]
    data = encode_payload(spec, X)
    assert data[:2] == b"SB" and data[2] == 1 and data[3] == 2
    assert struct.unpack_from("<H", data, 4)[0] == 3
    assert data[6:14] == spec.model_id_bytes
    assert struct.unpack_from("<H", data, 14)[0] == 4
    # codes per row: [0,0,1] (0.5 is not > 0.5), [1,1,2] (1e-3 is not > float32(1e-3)),
    # [3,3,0] (NaN → 0), [3,0,3] (±inf); code f sits at bits 2f..2f+1 of the sample's byte
    assert data[HEADER_BYTES:] == bytes([0b01_00_00, 0b10_01_01, 0b00_11_11, 0b11_00_11])
    assert len(data) == HEADER_BYTES + 4


def test_header_prefix_is_the_constant_part():
    spec, X = golden_cases()["f10b4"]
    data = encode_payload(spec, X)
    assert data[:14] == header_prefix(spec)
    assert read_header(data).n_samples == 8


@pytest.fixture
def case():
    spec, X = golden_cases()["f5b3"]
    return spec, encode_payload(spec, X)


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d[:10], "truncated header: payload has 10 bytes"),
    (lambda d: b"", "truncated header: payload has 0 bytes"),
    (lambda d: _patch(d, 0, b"XB"), "bad magic b'XB'"),
    (lambda d: _patch(d, 2, b"\x02"), "unsupported wire format version 2"),
    (lambda d: _patch(d, 3, b"\x04"), "payload is for 5 features × 4 bits"),
    (lambda d: _patch(d, 4, b"\x06\x00"), "payload is for 6 features × 3 bits"),
    (lambda d: _patch(d, 6, b"\x00" * 8), "model id mismatch: payload is for 0000000000000000"),
    (lambda d: _patch(d, 14, b"\x00\x00"), "sample count is 0"),
    (lambda d: d[:-1], "truncated body: header says 6 samples = 12 bytes, got 11"),
    (lambda d: d + b"\x00\x00", "length mismatch: header says 6 samples = 12 bytes, got 14 (2 extra)"),
    (lambda d: _patch(d, 14, b"\x07\x00"), "truncated body: header says 7 samples"),
    (lambda d: _patch(d, 14, b"\x05\x00"), "length mismatch: header says 5 samples"),
    (lambda d: _patch(d, HEADER_BYTES + 1, b"\x80"), "nonzero padding bits in sample 0"),
])
def test_refusals_name_the_problem(case, mutate, message):
    spec, data = case
    with pytest.raises(PayloadError) as info:
        parse_payload(spec, mutate(data))
    assert message in str(info.value)
    assert not isinstance(info.value, PayloadTooLarge)


def test_size_limit(case):
    spec, data = case
    assert parse_payload(spec, data, max_bytes=len(data)).shape == (6, 5)
    with pytest.raises(PayloadTooLarge, match=f"payload of {len(data)} bytes exceeds the limit of 20 bytes"):
        parse_payload(spec, data, max_bytes=20)


def test_build_payload_limits():
    spec, _ = golden_cases()["f3b2"]
    with pytest.raises(SoftbitsError, match="1..65535 samples, got 0"):
        build_payload(spec, np.zeros((0, 1), np.uint8))
    with pytest.raises(SoftbitsError, match=r"\[N, 1\] bytes"):
        build_payload(spec, np.zeros((2, 2), np.uint8))
