"""``softbits export --format package`` (issue 21): one library folder for Arduino, PlatformIO,
ESP-IDF and Zephyr. Its manifests hold each convention's required fields; its example sketch
builds as C++ (g++ on the host, arm-none-eabi-g++ for the emulated Cortex-M4F and M3) with every
warning an error, and runs with the bytes of ``softbits encode``; two models' packages link into
one firmware; bad requests are one line and leave nothing behind."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from device_harness.firmware import (
    ARDUINO_SHIM,
    BOARDS,
    STRICT,
    STRICT_CXX,
    build_sketch_firmware,
    missing_tools,
    run_firmware,
)
from softbits.device.encode import encode_packed
from softbits.device.package import EXAMPLE_SKETCH, package_prefix
from softbits.device.spec import EncoderSpec
from softbits.device.wire import build_compact
from softbits.training.trained_model import TrainedModel

from conftest import run_main

HAS_GXX = shutil.which("g++") is not None and shutil.which("gcc") is not None
#: Arduino's library.properties fields (specification 1.5) and the categories it allows
ARDUINO_FIELDS = ("name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url",
                  "architectures")
ARDUINO_CATEGORIES = ("Display", "Communication", "Signal Input/Output", "Sensors", "Device Control", "Timing",
                      "Data Storage", "Data Processing", "Other")


@pytest.fixture(scope="module")
def models(tmp_path_factory, diabetes_models):
    d = tmp_path_factory.mktemp("package")
    diabetes_models(d, ("bw-sq", "fp"), seed=4, n_rows=5)
    (d / "other").mkdir()
    diabetes_models(d / "other", ("bw-qq",), seed=5, n_rows=5)
    return d


@pytest.fixture(scope="module")
def package(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("pkg") / "lib"
    from softbits.cli import main

    try:
        main(["export", str(models / "bw-sq.safetensors"), "--format", "package", "--out-dir", str(out)])
    except SystemExit as exc:
        assert not exc.code
    spec = EncoderSpec.from_model(TrainedModel.load(models / "bw-sq.safetensors"))
    return out, spec


def _rows(spec: EncoderSpec) -> np.ndarray:
    """Threshold neighbours, special values and random readings, float32 [N, F]."""
    t = np.where(spec.active, spec.thresholds, np.float32(0))
    with np.errstate(over="ignore"):
        neighbours = np.concatenate([t, np.nextafter(t, np.float32(np.inf)), np.nextafter(t, np.float32(-np.inf))], axis=1).T
    special = np.array([np.inf, -np.inf, -0.0, 0.0, np.nan, 1e-45, -1e-45], dtype=np.float32)
    rng = np.random.default_rng(0)
    return np.concatenate([neighbours, np.repeat(special[:, None], spec.n_features, axis=1),
                           rng.standard_normal((50, spec.n_features)) * 0.1]).astype(np.float32)


def test_the_manifests_hold_what_each_convention_requires(package):
    out, spec = package
    prefix = package_prefix(spec)
    properties = dict(line.split("=", 1) for line in (out / "library.properties").read_text().splitlines() if line)
    assert all(properties.get(field) for field in ARDUINO_FIELDS), properties
    assert properties["name"] == prefix and properties["category"] in ARDUINO_CATEGORIES
    assert properties["version"].endswith(spec.model_id) and properties["includes"] == f"{prefix}_encoder.h"
    assert (out / "examples" / EXAMPLE_SKETCH / f"{EXAMPLE_SKETCH}.ino").is_file()  # folder name = sketch name
    library = json.loads((out / "library.json").read_text())
    assert library["name"] == prefix and library["version"] == properties["version"]
    assert (out / library["build"]["srcDir"] / f"{prefix}_encoder.c").is_file()
    cmake = (out / "CMakeLists.txt").read_text()
    assert f'idf_component_register(SRCS "src/{prefix}_encoder.c" INCLUDE_DIRS "src")' in cmake
    assert f"if(CONFIG_{prefix.upper()})" in cmake and "zephyr_library_sources" in cmake
    module = (out / "zephyr" / "module.yml").read_text()
    assert f"name: {prefix}" in module and "cmake: ." in module and "kconfig: Kconfig" in module
    assert f"config {prefix.upper()}" in (out / "Kconfig").read_text()
    assert spec.model_id in (out / "README.md").read_text()


def _frames(spec: EncoderSpec, rows: np.ndarray) -> bytes:
    """Each row's compact frame, as softbits builds it."""
    return b"".join(build_compact(spec, encode_packed(spec, rows[i:i + 1])) for i in range(len(rows)))


def _host_sketch(package_dir: Path, work: Path) -> Path:
    work.mkdir(exist_ok=True)
    objects = []
    for source in (package_dir / "src").glob("*.c"):
        obj = work / f"{source.stem}.o"
        subprocess.run(["gcc", *STRICT, "-O2", "-c", str(source), "-o", str(obj)], check=True)
        objects.append(str(obj))
    exe = work / "sketch"
    r = subprocess.run(["g++", *STRICT_CXX, "-O2", "-I", str(package_dir / "src"), "-I", str(ARDUINO_SHIM),
                        "-x", "c++", str(package_dir / "examples" / EXAMPLE_SKETCH / f"{EXAMPLE_SKETCH}.ino"),
                        str(ARDUINO_SHIM / "main.cpp"), "-x", "none", *objects, "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


@pytest.mark.skipif(not HAS_GXX, reason="needs gcc and g++")
def test_the_example_sketch_builds_as_cpp_on_the_host_and_sends_encode_s_frames(package, tmp_path):
    out, spec = package
    exe = _host_sketch(out, tmp_path / "host")
    rows = _rows(spec)
    (tmp_path / "host" / "input.f32").write_bytes(rows.tobytes())
    subprocess.run([str(exe)], cwd=tmp_path / "host", check=True, timeout=30)
    assert (tmp_path / "host" / "compact.bin").read_bytes() == _frames(spec, rows)


@pytest.mark.skipif(bool(missing_tools()) or shutil.which("arm-none-eabi-g++") is None,
                    reason="needs arm-none-eabi-g++, newlib and qemu-system-arm (scripts/setup.sh)")
@pytest.mark.parametrize("board", BOARDS, ids=[b.machine for b in BOARDS])
def test_the_example_sketch_runs_on_emulated_cortex_m(package, tmp_path, board):
    out, spec = package
    elf = build_sketch_firmware(board, out, out / "examples" / EXAMPLE_SKETCH / f"{EXAMPLE_SKETCH}.ino",
                                tmp_path / "sketch.elf")
    rows = _rows(spec)
    (tmp_path / "input.f32").write_bytes(rows.tobytes())
    r = run_firmware(board, elf, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "compact.bin").read_bytes() == _frames(spec, rows)


@pytest.mark.skipif(not HAS_GXX, reason="needs gcc and g++")
def test_two_models_packages_link_into_one_program(models, package, tmp_path):
    out, spec = package
    other = tmp_path / "other"
    code = _export(models / "other" / "bw-qq.safetensors", other)
    assert code == 0
    other_spec = EncoderSpec.from_model(TrainedModel.load(models / "other" / "bw-qq.safetensors"))
    a, b = package_prefix(spec), package_prefix(other_spec)
    assert a != b
    main = tmp_path / "both.cpp"
    main.write_text(f'#include "{a}_encoder.h"\n#include "{b}_encoder.h"\n'
                    f"int main() {{ float x[{a.upper()}_N_FEATURES] = {{0}}; uint8_t p[{a.upper()}_COMPACT_BYTES];\n"
                    f"  uint8_t q[{b.upper()}_COMPACT_BYTES]; {a}_encode_compact(x, p); {b}_encode_compact(x, q);\n"
                    f"  return p[1] == {a.upper()}_MODEL_TAG && q[1] == {b.upper()}_MODEL_TAG ? 0 : 1; }}\n")
    objects = []
    for source in [*(out / "src").glob("*.c"), *(other / "src").glob("*.c")]:
        obj = tmp_path / f"{source.stem}.o"
        subprocess.run(["gcc", *STRICT, "-c", str(source), "-o", str(obj)], check=True)
        objects.append(str(obj))
    exe = tmp_path / "both"
    r = subprocess.run(["g++", *STRICT_CXX, "-I", str(out / "src"), "-I", str(other / "src"), str(main), *objects,
                        "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([str(exe)]).returncode == 0


def _export(model: Path, out: Path) -> int:
    from softbits.cli import main

    try:
        main(["export", str(model), "--format", "package", "--out-dir", str(out)])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_bad_package_requests_are_one_line_and_leave_nothing(models, tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    code, _, err = run_main(capsys, "export", models / "bw-sq.safetensors", "--format", "package", "--out-dir", full)
    assert code == 2 and "exists and is not an empty directory" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    fp_out = tmp_path / "fp"
    code, _, err = run_main(capsys, "export", models / "fp.safetensors", "--format", "package", "--out-dir", fp_out)
    assert code == 2 and "no threshold encoder" in err, err
    assert not fp_out.exists() or not any(fp_out.iterdir())
    code, _, err = run_main(capsys, "export", models / "bw-sq.safetensors", "--format", "zip", "--out-dir", tmp_path / "z")
    assert code == 2 and "--format must be json, c, package, onnx or triton" in err
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging folder left


@pytest.mark.skipif(not HAS_GXX, reason="needs gcc and g++")
def test_hostile_feature_names_still_build_as_cpp(tmp_path):
    names = ["class", "int", "*/ oops /*", 'quo"te', "défaut", "SOFTBITS_N_FEATURES", "namespace", "??/"]
    spec = EncoderSpec(tuple(names), 2, np.tile(np.array([-1.0, 0.0, 1.0], dtype=np.float32), (len(names), 1)))
    from softbits.device.package import write_package

    out = tmp_path / "hostile"
    write_package(spec, out)
    exe = _host_sketch(out, tmp_path / "build")
    rows = _rows(spec)
    (tmp_path / "build" / "input.f32").write_bytes(rows.tobytes())
    subprocess.run([str(exe)], cwd=tmp_path / "build", check=True, timeout=30)
    assert (tmp_path / "build" / "compact.bin").read_bytes() == _frames(spec, rows)
