"""Generated C encoder: golden output, strict C99 compile, bit-for-bit parity with Python."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from softbits.device.cgen import C_HEADER_NAME, C_SOURCE_NAME, generate_c, write_c
from softbits.device.encode import encode_packed, has_numba
from softbits.device.spec import EncoderSpec

EXPECTED = Path(__file__).parent / "expected" / "cgen"
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
HARNESS = r"""
#include <stdio.h>
#include "softbits_encoder.h"

/* stdin: float32 samples; stdout: SOFTBITS_PAYLOAD_BYTES per sample */
int main(void)
{
    float x[SOFTBITS_N_FEATURES];
    uint8_t out[SOFTBITS_PAYLOAD_BYTES];
    while (fread(x, sizeof x[0], SOFTBITS_N_FEATURES, stdin) == SOFTBITS_N_FEATURES) {
        softbits_encode(x, out);
        fwrite(out, 1, sizeof out, stdout);
    }
    return 0;
}
"""
F32 = np.finfo(np.float32)
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, F32.max, -F32.max, F32.tiny, -F32.tiny,
                    1e-45, -1e-45, 1e-40, -1e-40, 1.0, -1.0], dtype=np.float32)
NAN_BITS = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF],
                    dtype=np.uint32).view(np.float32)

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def golden_spec() -> EncoderSpec:
    """Negative, zero, subnormal and duplicated thresholds in one small table."""
    table = np.array([
        [-2.5, -1.0, -1e-40, 0.0, 1e-45, 0.5, 3.25],
        [0.125, 0.125, 0.125, 1.0, 2.0, 4.0, 8.0],
        [-0.0, 0.0, 1.0, 1.0, 1e30, 2e30, 3e38],
    ], dtype=np.float32)
    return EncoderSpec(("temp °C", "weird */ name", "x"), 3, table)


def _special_spec(rng, n_features: int, bits: int) -> EncoderSpec:
    m = (1 << bits) - 1
    pool = np.concatenate([SPECIAL[np.isfinite(SPECIAL)], rng.standard_normal(64).astype(np.float32),
                           (rng.standard_normal(16) * 1e-39).astype(np.float32)])
    table = np.sort(rng.choice(pool, (n_features, m)), axis=1).astype(np.float32)
    return EncoderSpec(tuple(f"f{i}" for i in range(n_features)), bits, table)


def _inputs(rng, spec: EncoderSpec, n_values: int) -> np.ndarray:
    """Thresholds, ±1/±2 ulp neighbours, specials, NaN payloads, subnormals, random bit patterns."""
    t = spec.thresholds
    with np.errstate(over="ignore"):  # neighbours of ±FLT_MAX are ±inf, also worth testing
        up = np.nextafter(t, np.float32(np.inf))
        down = np.nextafter(t, np.float32(-np.inf))
        columns = [t, up, down, np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))]
    structured = np.concatenate(columns, axis=1).T  # [5·M, F]: every threshold and its neighbours
    specials = np.repeat(np.concatenate([SPECIAL, NAN_BITS])[:, None], spec.n_features, axis=1)
    n_rows = max(n_values // spec.n_features - len(structured) - len(specials), 0)
    random = np.empty((n_rows, spec.n_features), dtype=np.float32)
    third = n_rows // 3
    random[:third] = rng.integers(0, 2**32, (third, spec.n_features), dtype=np.uint64).astype(np.uint32).view(np.float32)
    random[third:2 * third] = t[np.arange(spec.n_features), rng.integers(0, t.shape[1], (third, spec.n_features))] \
        + rng.standard_normal((third, spec.n_features)).astype(np.float32) * 1e-6
    random[2 * third:] = (rng.standard_normal((n_rows - 2 * third, spec.n_features)) * 2).astype(np.float32)
    subnormal = (rng.standard_normal((64, spec.n_features)) * 1e-40).astype(np.float32)
    return np.ascontiguousarray(np.concatenate([structured, specials, subnormal, random]), dtype=np.float32)


def _compile(tmp: Path, spec: EncoderSpec, extra: list[str]) -> Path:
    write_c(spec, tmp)
    (tmp / "main.c").write_text(HARNESS)
    exe = tmp / "encoder"
    r = subprocess.run(["gcc", *STRICT, *extra, "-I", str(tmp), str(tmp / "main.c"),
                        str(tmp / C_SOURCE_NAME), "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def _run(exe: Path, X: np.ndarray) -> bytes:
    r = subprocess.run([str(exe)], input=X.tobytes(), capture_output=True, timeout=120)
    assert r.returncode == 0
    return r.stdout


def test_golden_generated_c():
    files = generate_c(golden_spec())
    sums = dict(reversed(line.split()) for line in (EXPECTED / "SHA256SUMS").read_text().splitlines())
    for name, text in files.items():
        assert text == (EXPECTED / name).read_text(encoding="utf-8"), f"{name} changed"
        assert hashlib.sha256(text.encode()).hexdigest() == sums[name]


def test_generated_c_is_self_contained():
    spec = golden_spec()
    files = generate_c(spec)
    header, source = files[C_HEADER_NAME], files[C_SOURCE_NAME]
    assert f"#define SOFTBITS_N_FEATURES {spec.n_features}" in header
    assert f"#define SOFTBITS_PAYLOAD_BYTES {spec.sample_bytes}" in header
    assert "void softbits_encode(const float x[SOFTBITS_N_FEATURES], uint8_t out[SOFTBITS_PAYLOAD_BYTES]);" in header
    code = source.split("softbits_key(float v)", 1)[1]
    for banned in ("malloc", "math.h", "/", "%", "double"):
        assert banned not in code.replace("/*", "").replace("*/", ""), banned
    assert "weird *? name" in source and "temp ?C" in source


@needs_gcc
@pytest.mark.parametrize("n_features, bits, n_values, flags", [
    (8, 4, 1_100_000, ["-O2"]),
    (3, 3, 100_000, ["-O0"]),
    (5, 1, 100_000, ["-O2"]),
    (81, 2, 300_000, ["-O2"]),
    (7, 6, 200_000, ["-O2", "-ffast-math"]),
    (2, 8, 100_000, ["-Os"]),
    (2, 11, 50_000, ["-O2"]),
])
def test_c_matches_python_bit_for_bit(tmp_path, n_features, bits, n_values, flags):
    rng = np.random.default_rng(n_features * 100 + bits)
    spec = _special_spec(rng, n_features, bits)
    X = _inputs(rng, spec, n_values)
    assert X.size >= n_values * 0.99 and np.isnan(X).any() and np.isinf(X).any()
    c_out = np.frombuffer(_run(_compile(tmp_path, spec, flags), X), dtype=np.uint8)
    for backend in ["numpy"] + (["numba"] if has_numba() else []):
        py_out = encode_packed(spec, X, backend).reshape(-1)
        mismatch = np.flatnonzero(c_out != py_out)
        assert mismatch.size == 0, f"{backend}: first mismatch in sample {mismatch[0] // spec.sample_bytes}"


@needs_gcc
def test_golden_spec_compiles_and_matches(tmp_path):
    spec = golden_spec()
    X = _inputs(np.random.default_rng(5), spec, 30_000)
    c_out = _run(_compile(tmp_path, spec, ["-O2"]), X)
    assert c_out == encode_packed(spec, X).tobytes()


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed")
def test_cortex_m4_compile(tmp_path):
    write_c(golden_spec(), tmp_path)
    r = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-Os", *STRICT, "-c",
                        str(tmp_path / C_SOURCE_NAME), "-o", str(tmp_path / "enc.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


#: names a CSV header can carry: comment delimiters, trigraphs (C99 translates ??/ to a backslash),
#: quotes, backslashes, control characters, non-ASCII, leading digits, names equal after sanitizing
HOSTILE_NAMES = ("end */ here", "start /* here", "/*/", "*//*", "/**/", "*", "/", "a/", "*a",
                 "trick??/", "??/", "??=define X", "???/", 'say "hi"', "it's", "back\\slash", "ends\\",
                 "line\nbreak", "cr\rlf", "tab\tx", "nul\x00", "é", "ß", "温度 °C", "1st", "123", "",
                 "x", "x ")


def _comment_text(source: str) -> list[str]:
    """The text of the per-feature comments of the threshold table, in order."""
    return [line[len("    /* "):-len(" */ {")] for line in source.splitlines()
            if line.startswith("    /* ") and line.endswith(" */ {")]


def test_hostile_names_become_inert_comments():
    rng = np.random.default_rng(7)
    spec = _special_spec(rng, len(HOSTILE_NAMES), 2)
    spec = EncoderSpec(HOSTILE_NAMES, spec.bits, spec.thresholds)
    source = generate_c(spec)[C_SOURCE_NAME]
    comments = _comment_text(source)
    assert len(comments) == len(HOSTILE_NAMES)
    for text in comments:
        assert all(32 <= ord(ch) < 127 for ch in text), text
        assert "*/" not in text and "/*" not in text and "??" not in text and "\\" not in text, text
    assert comments[HOSTILE_NAMES.index("x")] == "x"  # ordinary names pass unchanged
    assert comments[HOSTILE_NAMES.index("é")] == comments[HOSTILE_NAMES.index("ß")] == "?"


@needs_gcc
@pytest.mark.parametrize("flags", [["-O2"], ["-O0", "-trigraphs", "-Wcomment", "-Wtrigraphs"]])
def test_hostile_names_compile_and_match(tmp_path, flags):
    rng = np.random.default_rng(8)
    spec = _special_spec(rng, len(HOSTILE_NAMES), 3)
    spec = EncoderSpec(HOSTILE_NAMES, spec.bits, spec.thresholds)
    X = _inputs(rng, spec, 50_000)
    c_out = _run(_compile(tmp_path, spec, flags), X)
    assert c_out == encode_packed(spec, X).tobytes()


CPP_HARNESS = r"""
#include <cstdio>
#include "softbits_encoder.h"

int main()
{
    float x[SOFTBITS_N_FEATURES] = {};
    uint8_t out[SOFTBITS_PAYLOAD_BYTES];
    uint8_t frame[SOFTBITS_COMPACT_BYTES];
    softbits_encode(x, out);
    softbits_encode_compact(x, frame);
    std::fwrite(out, 1, sizeof out, stdout);
    std::fwrite(frame, 1, sizeof frame, stdout);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("gcc") is None, reason="gcc/g++ not installed")
@pytest.mark.parametrize("mixed", [False, True])
def test_cpp_translation_unit_links_against_the_c_encoder(tmp_path, mixed):
    """The header's extern "C" guard: a C++ caller links against the C-compiled encoder."""
    from test_mixed_widths import golden_spec as mixed_golden_spec

    spec = mixed_golden_spec() if mixed else golden_spec()
    write_c(spec, tmp_path)
    (tmp_path / "main.cpp").write_text(CPP_HARNESS)
    flags = ["-Wall", "-Wextra", "-Werror"]
    obj = tmp_path / "encoder.o"
    r = subprocess.run(["gcc", "-std=c99", *flags, "-c", str(tmp_path / C_SOURCE_NAME), "-o", str(obj)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    exe = tmp_path / "cpp_encoder"
    r = subprocess.run(["g++", "-std=c++11", *flags, "-I", str(tmp_path), str(tmp_path / "main.cpp"), str(obj),
                        "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    x = np.zeros((1, spec.n_features), dtype=np.float32)
    out = subprocess.run([str(exe)], capture_output=True, timeout=60).stdout
    assert out[:spec.sample_bytes] == encode_packed(spec, x, "numpy").tobytes()
