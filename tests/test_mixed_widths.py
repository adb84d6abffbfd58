"""Per-feature bit widths on the device side (issue 12 item 1): the version-2 encoder spec, mixed
packing (0-width features absent), the wire format's checks and the generated C's contract.

Uniform widths keep version 1 byte for byte (golden files in tests/expected/ are unchanged); the
mixed-width golden spec, C and payload live in tests/expected/mixed/.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softbits.device.cgen import C_HEADER_NAME, C_SOURCE_NAME, generate_c
from softbits.device.encode import encode, encode_packed, has_numba, pack, unpack
from softbits.device.spec import EncoderSpec, raw_thresholds
from softbits.device.wire import (
    HEADER_BYTES,
    PayloadError,
    build_compact,
    build_frame,
    encode_payload,
    header_prefix,
    parse_payload,
)
from softbits.errors import DataError, SoftbitsError
from test_cgen import STRICT, _compile, _inputs, _run
from test_emulated_device import softbits

from conftest import start_server, stop_server

GOLDEN = Path(__file__).parent / "expected" / "mixed"
BACKENDS = ["numpy"] + (["numba"] if has_numba() else [])
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def mixed_table(widths: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Dense [F, 2^max − 1] table: each feature's sorted active thresholds, then +inf."""
    m = (1 << max(widths)) - 1
    table = np.full((len(widths), m), np.inf, dtype=np.float32)
    for f, w in enumerate(widths):
        k = (1 << w) - 1
        table[f, :k] = np.sort(rng.standard_normal(k).astype(np.float32))
    return table


def mixed_spec(widths: tuple[int, ...], seed: int = 0) -> EncoderSpec:
    table = mixed_table(widths, np.random.default_rng(seed))
    return EncoderSpec(tuple(f"f{i}" for i in range(len(widths))), max(widths), table, widths=widths)


def golden_spec() -> EncoderSpec:
    """Five features of widths 2, 0, 3, 1, 0: 6 code bits, one byte per sample."""
    inf = np.inf
    table = np.array([
        [-1.0, 0.0, 1.0, inf, inf, inf, inf],
        [inf] * 7,
        [-2.5, -1e-40, 0.0, 1e-45, 0.5, 0.5, 3.25],
        [0.125, inf, inf, inf, inf, inf, inf],
        [inf] * 7,
    ], dtype=np.float32)
    return EncoderSpec(("temp °C", "unused */", "x", "y", "z"), 3, table, widths=(2, 0, 3, 1, 0))


def golden_rows() -> np.ndarray:
    return np.array([[-2.0, 7.0, 0.0, 0.125, np.nan],
                     [0.5, np.nan, 1e-45, 0.2, -3.0],
                     [np.inf, -np.inf, 4.0, np.inf, 1.0],
                     [np.nan, 0.0, -0.0, -np.inf, np.inf],
                     [1.0000001, 1e30, 0.5, 0.13, 0.0]])


# ---- the spec ------------------------------------------------------------------------------------

def test_uniform_widths_are_the_version_1_spec():
    table = np.sort(np.random.default_rng(1).standard_normal((4, 7)).astype(np.float32), axis=1)
    plain = EncoderSpec(("a", "b", "c", "d"), 3, table)
    same = EncoderSpec(("a", "b", "c", "d"), 3, table, widths=(3, 3, 3, 3))
    assert same.widths is None and same.format_version == 1
    assert same == plain and same.model_id == plain.model_id
    assert same.to_json() == plain.to_json()
    assert plain.feature_bits == (3, 3, 3, 3)


def test_mixed_spec_is_version_2_with_its_canonical_bytes():
    spec = golden_spec()
    assert spec.format_version == 2 and spec.widths == (2, 0, 3, 1, 0) and spec.bits == 3
    assert spec.feature_bits == spec.widths and spec.code_bits == 6 and spec.sample_bytes == 1
    parts = [b"softbits-encoder\x00", struct.pack("<BBH", 2, 0, 5)]
    for name, w, row in zip(spec.feature_names, spec.widths, spec.thresholds, strict=True):
        encoded = name.encode()
        parts += [struct.pack("<H", len(encoded)), encoded, struct.pack("<B", w),
                  row[:(1 << w) - 1].astype("<f4").tobytes()]
    assert spec.canonical() == b"".join(parts)
    assert spec.model_id == hashlib.sha256(b"".join(parts)).digest()[:8].hex()


def test_model_id_depends_on_widths_and_active_thresholds_only():
    spec = mixed_spec((2, 0, 4, 1), seed=3)
    other = mixed_spec((2, 0, 4, 1), seed=4)
    assert spec.model_id != other.model_id
    moved = spec.thresholds.copy()
    moved[3, 0] = np.nextafter(moved[3, 0], np.float32(np.inf))
    assert EncoderSpec(spec.feature_names, 4, moved, widths=spec.widths).model_id != spec.model_id
    # the same active thresholds under another width split is another contract
    table = spec.thresholds.copy()
    table[1, 0] = 0.0
    assert EncoderSpec(spec.feature_names, 4, table, widths=(2, 1, 4, 1)).model_id != spec.model_id


def test_mixed_json_round_trips_and_version_1_still_loads():
    spec = golden_spec()
    obj = json.loads(spec.to_json())
    assert obj["format_version"] == 2 and obj["bits"] is None and obj["sample_bytes"] == 1
    assert [f["bits"] for f in obj["features"]] == [2, 0, 3, 1, 0]
    assert [len(f["thresholds"]) for f in obj["features"]] == [3, 0, 7, 1, 0]
    back = EncoderSpec.from_dict(obj)
    assert back == spec and back.widths == spec.widths
    np.testing.assert_array_equal(back.thresholds.view(np.uint32), spec.thresholds.view(np.uint32))
    uniform = EncoderSpec(("a", "b"), 1, np.array([[0.0], [1.0]], dtype=np.float32))
    assert EncoderSpec.from_dict(json.loads(uniform.to_json())) == uniform


@pytest.mark.parametrize("edit, message", [
    (lambda o: o["features"][0]["thresholds"].pop(), "feature 'temp °C' has 2 thresholds, 2 bits need 3"),
    (lambda o: o["features"][1].update(thresholds=[0.0]), "feature 'unused */' has 1 thresholds, 0 bits need 0"),
    (lambda o: o["features"][0].update(bits=17), "0..16"),
    (lambda o: [f.update(bits=0, thresholds=[]) for f in o["features"]], "every feature has 0 bits"),
    (lambda o: o.update(format_version=3), "unsupported encoder format version 3"),
    (lambda o: o["features"][2]["thresholds"].reverse(), "sorted"),
])
def test_bad_mixed_json_is_one_line(edit, message):
    obj = json.loads(golden_spec().to_json())
    edit(obj)
    with pytest.raises(DataError) as info:
        EncoderSpec.from_dict(obj)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_version_2_json_with_uniform_widths_is_refused():
    obj = json.loads(golden_spec().to_json())
    for f in obj["features"]:
        f.update(bits=1, thresholds=[0.0])
    with pytest.raises(DataError, match="format_version 2 is for mixed widths"):
        EncoderSpec.from_dict(obj)


def test_spec_rejects_bad_mixed_tables():
    inf = np.inf
    with pytest.raises(SoftbitsError, match="inactive threshold slots must be \\+inf"):
        EncoderSpec(("a", "b"), 2, np.array([[0.0, 1.0, 2.0], [0.0, 5.0, inf]]), widths=(2, 1))
    with pytest.raises(SoftbitsError, match="finite"):
        EncoderSpec(("a", "b"), 2, np.array([[0.0, 1.0, inf], [0.0, inf, inf]]), widths=(2, 1))
    with pytest.raises(SoftbitsError, match="sorted"):
        EncoderSpec(("a", "b"), 2, np.array([[0.0, 2.0, 1.0], [0.0, inf, inf]]), widths=(2, 1))
    with pytest.raises(SoftbitsError, match="bits 3 but its widest feature has 2"):
        EncoderSpec(("a", "b"), 3, np.zeros((2, 7)), widths=(2, 1))
    with pytest.raises(SoftbitsError, match="3 bit widths given for 2 features"):
        EncoderSpec(("a", "b"), 2, np.zeros((2, 3)), widths=(2, 1, 1))
    with pytest.raises(SoftbitsError, match="format version 1 .* uniform"):
        EncoderSpec(("a", "b"), 2, np.array([[0.0, 1.0, 2.0], [0.0, inf, inf]]), widths=(2, 1),
                    format_version=1)
    with pytest.raises(SoftbitsError, match="finite"):  # +inf stays refused in uniform tables
        EncoderSpec(("a",), 2, np.array([[0.0, 1.0, inf]]))


def test_raw_thresholds_keep_inactive_slots_infinite():
    std = np.array([[-1.0, 0.5, np.inf], [0.25, np.inf, np.inf], [np.inf] * 3], dtype=np.float32)
    mean, scale = np.array([10.0, -3.0, 1.0]), np.array([2.0, 0.5, 4.0])
    raw = raw_thresholds(std, mean, scale)
    assert np.isposinf(raw[0, 2]) and np.isposinf(raw[1, 1:]).all() and np.isposinf(raw[2]).all()
    finite = raw_thresholds(np.array([[-1.0, 0.5], [0.25, 0.25]], dtype=np.float32), mean[:2], scale[:2])
    np.testing.assert_array_equal(raw[0, :2], finite[0])
    np.testing.assert_array_equal(raw[1, 0], finite[1, 0])


# ---- encode, pack, unpack ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("widths", [(2, 0, 3, 1, 0), (0, 10, 1), (5, 0, 0, 9, 2, 7, 0, 1), (8, 0, 8)])
def test_codes_stay_within_each_features_width(backend, widths):
    spec = mixed_spec(widths, seed=len(widths))
    X = _inputs(np.random.default_rng(9), spec, 20_000)
    codes = encode(spec, X, backend).astype(np.int64)
    brute = (X[:, :, None] > spec.thresholds[None]).sum(-1)
    np.testing.assert_array_equal(codes, brute)
    limits = np.array([(1 << w) - 1 for w in widths])
    assert (codes <= limits).all() and (codes[:, limits == 0] == 0).all()
    assert (codes[np.isposinf(X[:, 0]), 0] == limits[0]).all()


def test_mixed_bit_order_by_hand():
    """widths (2, 0, 3, 1): code 1 in bits 0–1, feature 1 absent, code 5 in bits 2–4, code 1 in bit 5."""
    widths = (2, 0, 3, 1)
    for backend in BACKENDS:
        assert pack(np.array([[1, 0, 5, 1]]), widths, backend).tobytes() == bytes([0b1_101_01])
        assert pack(np.array([[3, 0, 7, 1], [0, 0, 0, 0]]), widths, backend).tobytes() == b"\x3f\x00"
        assert pack(np.array([[0x1234, 1]]), (13, 1), backend).tobytes() == bytes([0x34, 0x32])
        np.testing.assert_array_equal(unpack(np.array([[0b1_101_01]], np.uint8), 4, widths, backend),
                                      [[1, 0, 5, 1]])


def test_pack_refuses_codes_over_a_features_width():
    with pytest.raises(SoftbitsError, match="feature 1 .*0 bits"):
        pack(np.array([[1, 1, 5]]), (2, 0, 3))
    with pytest.raises(SoftbitsError, match="feature 2 .*0..7"):
        pack(np.array([[1, 0, 8]]), (2, 0, 3))
    with pytest.raises(SoftbitsError, match="2 bit widths for 3 features"):
        pack(np.array([[1, 0, 5]]), (2, 0))


@settings(max_examples=200, deadline=None, database=None)
@given(widths=st.lists(st.integers(0, 16), min_size=1, max_size=30).filter(any),
       n=st.integers(0, 9), seed=st.integers(0, 2**32 - 1))
def test_mixed_pack_unpack_round_trip_on_both_backends(widths, n, seed):
    widths = tuple(widths)
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, 1 << w, n) for w in widths], axis=1) if n else np.zeros((0, len(widths)))
    packed = pack(codes, widths, "numpy")
    total = sum(widths)
    assert packed.shape == (n, (total + 7) // 8)
    for backend in BACKENDS:
        np.testing.assert_array_equal(pack(codes, widths, backend), packed)
        np.testing.assert_array_equal(unpack(packed, len(widths), widths, backend), codes)
    if total % 8 and n:
        assert (packed[:, -1] >> (total % 8) == 0).all()


@pytest.mark.skipif(not has_numba(), reason="numba is not installed")
def test_mixed_encode_packed_backends_agree():
    spec = mixed_spec((3, 0, 1, 6, 0, 2, 11), seed=5)
    X = _inputs(np.random.default_rng(2), spec, 100_000)
    np.testing.assert_array_equal(encode_packed(spec, X, "numba"), encode_packed(spec, X, "numpy"))


# ---- wire ----------------------------------------------------------------------------------------

def test_mixed_header_bits_byte_is_zero():
    spec = golden_spec()
    data = encode_payload(spec, golden_rows())
    assert data[:14] == header_prefix(spec)
    assert data[2] == 1 and data[3] == 0 and struct.unpack_from("<H", data, 4)[0] == 5
    assert data[6:14] == spec.model_id_bytes and len(data) == HEADER_BYTES + 5
    np.testing.assert_array_equal(parse_payload(spec, data), encode(spec, golden_rows()))


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: _patch(d, 3, b"\x03"), "payload is for 5 features × 3 bits, model "),
    (lambda d: _patch(d, 6, b"\x00" * 8), "model id mismatch"),
    (lambda d: d[:-1], "truncated body: header says 5 samples = 5 bytes, got 4"),
    (lambda d: d + b"\x00", "length mismatch: header says 5 samples = 5 bytes, got 6"),
    (lambda d: _patch(d, HEADER_BYTES + 2, b"\x40"), "nonzero padding bits in sample 2: the last byte "
                                                     "of a sample uses only its low 6 bits"),
])
def test_mixed_payload_refusals(mutate, message):
    spec = golden_spec()
    with pytest.raises(PayloadError) as info:
        parse_payload(spec, mutate(encode_payload(spec, golden_rows())))
    assert message in str(info.value)


def test_uniform_payload_is_refused_by_a_mixed_model_and_back():
    mixed = golden_spec()
    uniform = EncoderSpec(mixed.feature_names, 2, np.tile(np.array([-1, 0, 1], np.float32), (5, 1)))
    with pytest.raises(PayloadError, match="payload is for 5 features × 2 bits, model .* mixed widths"):
        parse_payload(mixed, encode_payload(uniform, golden_rows()))
    with pytest.raises(PayloadError, match="payload is for 5 features of mixed widths, model .* 5 × 2"):
        parse_payload(uniform, encode_payload(mixed, golden_rows()))


def test_mixed_compact_and_bare_frames():
    spec = golden_spec()
    codes = encode(spec, golden_rows())
    for i, row in enumerate(golden_rows()):
        packed = encode_packed(spec, row[None])
        compact = build_compact(spec, packed)
        assert len(compact) == 3 and compact[1] == spec.model_id_bytes[0]
        np.testing.assert_array_equal(parse_payload(spec, compact), codes[i:i + 1])
        np.testing.assert_array_equal(parse_payload(spec, build_frame(spec, packed, "none"), frame="none"),
                                      codes[i:i + 1])
    with pytest.raises(PayloadError, match="length mismatch: a compact frame of model .* 2 \\+ 1 = 3 bytes, got 4"):
        parse_payload(spec, build_compact(spec, encode_packed(spec, golden_rows()[:1])) + b"\x00")
    with pytest.raises(PayloadError, match="nonzero padding bits"):
        parse_payload(spec, b"\xc0", frame="none")


# ---- golden files --------------------------------------------------------------------------------

def _sums() -> dict[str, str]:
    lines = (GOLDEN / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def test_golden_mixed_files():
    spec = golden_spec()
    files = {"encoder.json": spec.to_json().encode(), "payload.bin": encode_payload(spec, golden_rows()),
             "compact.bin": build_compact(spec, encode_packed(spec, golden_rows()[:1])),
             **{name: text.encode() for name, text in generate_c(spec).items()}}
    sums = _sums()
    assert sorted(sums) == sorted(files)
    for name, data in files.items():
        assert data == (GOLDEN / name).read_bytes(), f"{name} changed: the mixed-width contract is golden"
        assert hashlib.sha256(data).hexdigest() == sums[name]
    assert EncoderSpec.from_dict(json.loads((GOLDEN / "encoder.json").read_text())) == spec


def test_golden_mixed_payload_by_hand():
    """Codes per row (widths 2, 0, 3, 1, 0; features 1 and 4 absent), each sample one byte with
    feature 0 in bits 0–1, feature 2 in bits 2–4, feature 3 in bit 5, bits 6–7 zero."""
    spec = golden_spec()
    np.testing.assert_array_equal(encode(spec, golden_rows()),
                                  [[0, 0, 2, 0, 0], [2, 0, 3, 1, 0], [3, 0, 7, 1, 0], [0, 0, 2, 0, 0],
                                   [3, 0, 4, 1, 0]])
    body = encode_payload(spec, golden_rows())[HEADER_BYTES:]
    assert body == bytes([0b0_010_00, 0b1_011_10, 0b1_111_11, 0b0_010_00, 0b1_100_11])


# ---- generated C ---------------------------------------------------------------------------------

def test_generated_c_states_the_mixed_contract():
    spec = golden_spec()
    files = generate_c(spec)
    header, source = files[C_HEADER_NAME], files[C_SOURCE_NAME]
    assert "#define SOFTBITS_N_FEATURES 5\n" in header and "#define SOFTBITS_BITS 0\n" in header
    assert "#define SOFTBITS_PAYLOAD_BYTES 1\n" in header
    assert "extern const uint8_t softbits_feature_bits[SOFTBITS_N_FEATURES];" in header
    assert "x[1] (unused *?), x[4] (z)" in header and "NaN included" in header
    assert "void softbits_encode(const float x[SOFTBITS_N_FEATURES], uint8_t out[SOFTBITS_PAYLOAD_BYTES]);" in header
    assert "softbits_feature_bits[SOFTBITS_N_FEATURES] = {2, 0, 3, 1, 0};" in source
    assert source.count("key > t[") == 1
    code = source.split("softbits_key(float v)", 1)[1]
    for banned in ("malloc", "math.h", "/", "%", "double"):
        assert banned not in code.replace("/*", "").replace("*/", ""), banned


@needs_gcc
@pytest.mark.parametrize("widths, n_values, flags", [
    ((2, 0, 3, 1, 0), 100_000, ["-O2"]),
    ((0, 4, 0, 0, 1, 7, 2, 3, 0, 5, 1, 2, 0, 3, 4, 2, 1, 0, 2, 3, 1), 300_000, ["-O2"]),
    ((16, 0, 1), 30_000, ["-Os"]),
    ((1, 2, 3, 4, 5, 6, 7, 8, 0), 200_000, ["-O0", "-ffast-math"]),
])
def test_mixed_c_matches_python_bit_for_bit(tmp_path, widths, n_values, flags):
    """The firmware of today's interface (SOFTBITS_N_FEATURES, SOFTBITS_PAYLOAD_BYTES,
    softbits_encode) compiles unchanged and writes the bytes Python writes."""
    spec = mixed_spec(widths, seed=sum(widths))
    rng = np.random.default_rng(len(widths))
    X = _inputs(rng, spec, n_values)
    X[: len(X) // 2, np.array(widths) == 0] = np.nan  # never read: any value, NaN included
    assert np.isnan(X).any() and np.isinf(X).any()
    c_out = np.frombuffer(_run(_compile(tmp_path, spec, flags), X), dtype=np.uint8)
    for backend in BACKENDS:
        py_out = encode_packed(spec, X, backend).reshape(-1)
        mismatch = np.flatnonzero(c_out != py_out)
        assert mismatch.size == 0, f"{backend}: first mismatch in sample {mismatch[0] // spec.sample_bytes}"


@needs_gcc
def test_mixed_c_compact_frame_and_header_prefix(tmp_path):
    spec = golden_spec()
    harness = r"""
#include <stdio.h>
#include "softbits_encoder.h"
int main(void)
{
    float x[SOFTBITS_N_FEATURES];
    uint8_t out[SOFTBITS_COMPACT_BYTES];
    unsigned f;
    fwrite(softbits_header_prefix, 1, sizeof softbits_header_prefix, stdout);
    for (f = 0; f < SOFTBITS_N_FEATURES; ++f) {
        putchar(softbits_feature_bits[f]);
    }
    while (fread(x, sizeof x[0], SOFTBITS_N_FEATURES, stdin) == SOFTBITS_N_FEATURES) {
        softbits_encode_compact(x, out);
        fwrite(out, 1, sizeof out, stdout);
    }
    return SOFTBITS_BITS;
}
"""
    from softbits.device.cgen import write_c

    write_c(spec, tmp_path)
    (tmp_path / "main.c").write_text(harness)
    r = subprocess.run(["gcc", *STRICT, "-O2", "-I", str(tmp_path), str(tmp_path / "main.c"),
                        str(tmp_path / C_SOURCE_NAME), "-o", str(tmp_path / "enc")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = golden_rows().astype(np.float32)
    out = subprocess.run([str(tmp_path / "enc")], input=rows.tobytes(), capture_output=True, timeout=60)
    assert out.returncode == 0
    frames = b"".join(build_compact(spec, encode_packed(spec, row[None])) for row in rows)
    assert out.stdout == header_prefix(spec) + bytes(spec.widths) + frames


# ---- trained mixed-width models ------------------------------------------------------------------

DIABETES_WIDTHS = (2, 0, 3, 2, 0, 2, 4, 2, 2, 3)  # >= 2 where sent: midpoint decoders need it


@pytest.fixture(scope="module")
def trained():
    """Tiny diabetes models of each threshold family at mixed widths, two features not sent."""
    from softbits.data import load_dataset
    from softbits.training.config import TrainConfig
    from softbits.training.train import train_dataset

    ds = load_dataset("diabetes")
    out = {}
    for method in ("bw-sq", "sq", "pr-qq", "po-mq"):
        cfg = TrainConfig(method=method, bits=4, bits_per_feature=DIABETES_WIDTHS, layers=1, neurons=8,
                          epochs=2, lr=0.05, device="cpu", seed=3)
        out[method] = train_dataset(ds, cfg)
    return out


@pytest.mark.parametrize("method", ["bw-sq", "sq", "pr-qq", "po-mq"])
def test_from_model_folds_only_the_active_thresholds(trained, method):
    """The spec of a mixed-width model: version 2, its widths, +inf exactly in the unused slots,
    and device codes equal to the model's own codes on float32 data and on both sides of every
    active threshold."""
    from softbits.data import load_dataset

    model = trained[method]
    spec = EncoderSpec.from_model(model)
    assert spec.widths == DIABETES_WIDTHS == model.module.quantizer.widths and spec.format_version == 2
    assert spec.sample_bytes == 3 and spec.n_features == 10
    assert np.isposinf(spec.thresholds[~spec.active]).all() and np.isfinite(spec.thresholds[spec.active]).all()
    std = model.module.quantizer.sorted_thresholds()
    naive = (std.astype(np.float64) * model.x_scaler.scale[:, None] + model.x_scaler.mean[:, None]).astype(np.float32)
    active = spec.active
    assert (np.abs(spec.thresholds[active].astype(np.float64) - naive[active])
            <= (np.spacing(np.abs(std)) * model.x_scaler.scale[:, None] + np.spacing(np.abs(naive)))[active]).all()
    X = load_dataset("diabetes").X.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(encode(spec, X).astype(np.int64), model.encode(X))
    finite = np.where(active, spec.thresholds, np.float32(0))
    for side in (finite, np.nextafter(finite, np.float32(np.inf)), np.nextafter(finite, np.float32(-np.inf))):
        rows = side.T.astype(np.float64)
        np.testing.assert_array_equal(encode(spec, rows).astype(np.int64), model.encode(rows))


def test_mixed_model_predicts_the_same_from_payloads_and_ignores_unsent_features(trained):
    from softbits.data import load_dataset
    from softbits.device.predict import predict_payload, predict_rows

    model = trained["bw-sq"]
    spec = EncoderSpec.from_model(model)
    X = load_dataset("diabetes").X[:50].astype(np.float32).astype(np.float64)
    rows = predict_rows(model, X)
    np.testing.assert_array_equal(predict_payload(model, spec, encode_payload(spec, X)), rows)
    np.testing.assert_array_equal(rows, model.predict(X))
    unsent = X.copy()
    unsent[:, [1, 4]] = np.nan
    np.testing.assert_array_equal(encode_packed(spec, unsent), encode_packed(spec, X))
    np.testing.assert_array_equal(predict_rows(model, unsent), rows)


# ---- a served mixed-width model ------------------------------------------------------------------

needs_coap_client = pytest.mark.skipif(shutil.which("coap-client-notls") is None,
                                       reason="coap-client-notls is not installed (Debian package libcoap3-bin)")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@pytest.fixture(scope="module")
def served(tmp_path_factory, trained):
    """The bw-sq mixed-width model saved, exported, encoded by the CLI in every frame and served."""
    import os

    import pandas as pd

    from softbits.data import load_dataset

    d = tmp_path_factory.mktemp("served-mixed")
    model = d / "mixed.safetensors"
    trained["bw-sq"].save(model)
    ds = load_dataset("diabetes")
    frame = pd.DataFrame(ds.X[:12], columns=ds.feature_names)
    frame.iloc[:, [1, 4]] = np.nan  # never measured: the 0-width features
    frame.to_csv(d / "rows.csv", index=False)
    frame.head(1).to_csv(d / "one.csv", index=False)
    softbits("export", model, "--format", "json", "--out-dir", d)
    softbits("encode", model, "--input", d / "rows.csv", "--out", d / "full.bin")
    softbits("encode", model, "--input", d / "one.csv", "--out", d / "compact.bin", "--frame", "compact")
    softbits("encode", model, "--input", d / "one.csv", "--out", d / "bare.bin", "--frame", "none")
    # a row's float32 bits may depend on its batch: predict the rows as each body carries them
    expected = {rows: [float(v) for v in softbits("predict", model, "--input", d / f"{rows}.csv").split()]
                for rows in ("rows", "one")}
    proc, urls = start_server(model, dict(os.environ, NO_COLOR="1", COLUMNS="200"))
    yield {"dir": d, "urls": urls, "proc": proc, "expected": expected["rows"], "expected_one": expected["one"],
           "spec": EncoderSpec.from_dict(json.loads((d / "encoder.json").read_text()))}
    stop_server(proc)


def _curl(url: str, body: Path) -> tuple[int, dict]:
    r = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--data-binary", f"@{body}",
                        "-H", "Content-Type: application/octet-stream", url],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text, status = r.stdout.rsplit("\n", 1)
    return int(status), json.loads(text)


def _coap_client(url: str, body: Path) -> str:
    r = subprocess.run(["coap-client-notls", "-m", "post", "-f", str(body), url],
                       capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


@needs_curl
def test_curl_gets_softbits_predict_from_a_mixed_model(served):
    d, http_url, spec = served["dir"], served["urls"]["http"], served["spec"]
    assert spec.widths == DIABETES_WIDTHS and (d / "full.bin").read_bytes()[3] == 0
    status, body = _curl(http_url, d / "full.bin")
    assert status == 200 and body["predictions"] == served["expected"] and body["model_id"] == spec.model_id
    assert _curl(http_url, d / "compact.bin")[1]["predictions"] == served["expected_one"]
    assert _curl(f"{http_url}/{spec.model_id}", d / "bare.bin")[1]["predictions"] == served["expected_one"]


@needs_coap_client
def test_coap_client_gets_softbits_predict_from_a_mixed_model(served):
    d, coap_url, spec = served["dir"], served["urls"]["coap"], served["spec"]
    assert json.loads(_coap_client(coap_url, d / "full.bin"))["predictions"] == served["expected"]
    assert json.loads(_coap_client(coap_url, d / "compact.bin"))["predictions"] == served["expected_one"]
    named = json.loads(_coap_client(f"{coap_url}/{spec.model_id}", d / "bare.bin"))
    assert named["predictions"] == served["expected_one"]


@needs_curl
@needs_coap_client
def test_mismatched_payloads_get_4xx_and_the_mixed_server_keeps_serving(served, tmp_path):
    d, urls, spec = served["dir"], served["urls"], served["spec"]
    full, compact = (d / "full.bin").read_bytes(), (d / "compact.bin").read_bytes()
    uniform = EncoderSpec(spec.feature_names, 2, np.tile(np.array([-1, 0, 1], np.float32), (10, 1)))
    bad = {
        "uniform.bin": (encode_payload(uniform, np.zeros((12, 10))), "expects 10 features of mixed widths"),
        "id.bin": (_patch(full, 6, b"\xff" * 8), "model id mismatch"),
        "long.bin": (full + b"\x00" * 3, "length mismatch: header says 12 samples = 36 bytes, got 39"),
        "pad.bin": (_patch(full, HEADER_BYTES + 2, bytes([full[HEADER_BYTES + 2] | 0x80])),
                    "nonzero padding bits in sample 0"),
        "short-compact.bin": (compact[:-1], "length mismatch: a compact frame of model"),
        "pad-compact.bin": (_patch(compact, 4, bytes([compact[4] | 0x10])), "nonzero padding bits in sample 0"),
    }
    for name, (data, message) in bad.items():
        path = tmp_path / name
        path.write_bytes(data)
        status, body = _curl(urls["http"], path)
        assert status == 400 and message in body["error"], (name, body)
        reply = _coap_client(urls["coap"], path)
        assert "4.00" in reply and message in reply, (name, reply)
        assert _curl(urls["http"], d / "full.bin")[1]["predictions"] == served["expected"]
    assert served["proc"].poll() is None


def test_csv_may_leave_out_the_unsent_features(served, tmp_path):
    """A device log has no column for a feature nobody measures: encode and predict read such a
    CSV by the model's feature names, the missing 0-width columns count as NaN (never read)."""
    import pandas as pd

    d = served["dir"]
    model = d / "mixed.safetensors"
    spec = served["spec"]
    unsent = [name for name, w in zip(spec.feature_names, spec.widths, strict=True) if w == 0]
    frame = pd.read_csv(d / "rows.csv")
    frame.drop(columns=unsent).to_csv(tmp_path / "measured.csv", index=False)
    softbits("encode", model, "--input", tmp_path / "measured.csv", "--out", tmp_path / "full.bin")
    assert (tmp_path / "full.bin").read_bytes() == (d / "full.bin").read_bytes()
    predictions = [float(v) for v in softbits("predict", model, "--input", tmp_path / "measured.csv").split()]
    assert predictions == served["expected"]
    frame.drop(columns=[unsent[0], spec.feature_names[0]]).to_csv(tmp_path / "short.csv", index=False)
    from softbits.cli import main

    with pytest.raises(SystemExit) as info:
        main(["predict", str(model), "--input", str(tmp_path / "short.csv")])
    assert info.value.code == 2
