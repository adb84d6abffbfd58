"""The generated C encoder on emulated Cortex-M boards: the bytes `softbits encode` writes.

Each trained model is exported with `softbits export --format c`, compiled with
arm-none-eabi-gcc (-Werror) into the firmware in tests/device_harness/ and run under
qemu-system-arm on an mps2-an386 (Cortex-M4F, hard float) and an mps2-an385 (Cortex-M3,
soft float). The firmware reads float32 rows through semihosting and writes one wire payload,
which must equal `softbits encode --format bin` on the same rows byte for byte, and each row's
compact frame from `softbits_encode_compact`, which must equal `build_compact` of that row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from device_harness.firmware import BOARDS, Board, build_firmware, missing_tools, run_firmware
from softbits.data import load_dataset
from softbits.device.encode import encode_packed
from softbits.device.predict import read_features
from softbits.device.spec import EncoderSpec
from softbits.device.wire import build_compact
from softbits.training.config import TrainConfig
from softbits.training.train import train_dataset
from softbits.training.trained_model import TrainedModel

MISSING = missing_tools()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs the Debian packages {', '.join(MISSING)} "
                                "(scripts/setup.sh installs them)")

HARNESS_MAIN = Path(__file__).parent / "device_harness" / "main.c"
F32 = np.finfo(np.float32)
NAN_BITS = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF],
                    dtype=np.uint32).view(np.float32)  # quiet, signalling, negative, all payload bits
SPECIAL = np.concatenate([
    np.array([np.inf, -np.inf, -0.0, 0.0, F32.max, -F32.max, F32.tiny, -F32.tiny], dtype=np.float32),
    np.array([1, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00012345], dtype=np.uint32).view(np.float32),  # subnormals
    NAN_BITS,
])
MODELS = ("diabetes-3bit", "cpu_act-2bit", "cpu_act-4bit", "cpu_act-mixed")
#: cpu_act at mixed widths: 42 code bits as at 2 bits uniform, two features not sent (width 0)
MIXED_WIDTHS = (0, 4, 3, 2, 1, 2, 2, 0, 3, 2, 2, 1, 2, 4, 2, 2, 3, 2, 1, 2, 2)


@dataclasses.dataclass
class Case:
    """A trained model, its exported C and the rows the device and the reference both encode."""

    model: Path
    c_dir: Path
    rows: np.ndarray  # float32 [N, F]
    csv: Path


def softbits(*args: object) -> str:
    """``softbits ARGS`` in-process (module fixtures cannot use capsys); its stdout."""
    from softbits.cli import main

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            main([str(a) for a in args])
    except SystemExit as exc:
        assert not exc.code, f"softbits {' '.join(map(str, args))} exited with {exc.code}"
    return out.getvalue()


def edge_rows(spec: EncoderSpec, rng: np.random.Generator) -> np.ndarray:
    """Every threshold and its float32 neighbours, one column each; a row per special value
    (±inf, ±0, ±FLT_MAX, ±FLT_MIN, subnormals, NaNs); and rows mixing all of these per feature."""
    t = spec.thresholds
    with np.errstate(over="ignore"):  # a neighbour of ±FLT_MAX is ±inf, worth encoding too
        up = np.nextafter(t, np.float32(np.inf))
        down = np.nextafter(t, np.float32(-np.inf))
    per_threshold = np.concatenate([t, up, down], axis=1).T  # [3·M, F]
    specials = np.repeat(SPECIAL[:, None], spec.n_features, axis=1)
    pool = np.concatenate([t.ravel(), up.ravel(), down.ravel(), SPECIAL])
    mixed = rng.choice(pool, (400, spec.n_features))
    return np.concatenate([per_threshold, specials, mixed]).astype(np.float32)


def write_csv(path: Path, names: list[str], rows: np.ndarray) -> None:
    """Rows as CSV that parses back to the same float32 values: each float32 is exact in float64
    and written with repr's 17 significant digits; NaN as 'nan', infinities as 'inf'/'-inf'."""
    with np.errstate(invalid="ignore"):  # signalling NaNs widen to quiet ones, as intended
        frame = pd.DataFrame(rows.astype(np.float64), columns=names)
    frame.to_csv(path, index=False, float_format="%.17g")


def make_case(directory: Path, model_path: Path, real_rows: np.ndarray, seed: int) -> Case:
    model = TrainedModel.load(model_path)
    c_dir = directory / "c"
    softbits("export", model_path, "--format", "c", "--out-dir", c_dir)
    rows = np.concatenate([real_rows.astype(np.float32),
                           edge_rows(EncoderSpec.from_model(model), np.random.default_rng(seed))])
    csv = directory / "rows.csv"
    write_csv(csv, model.feature_names, rows)
    parsed = read_features(csv, model.feature_names).astype(np.float32)
    assert parsed.tobytes() == np.where(np.isnan(rows), np.float32(np.nan), rows).tobytes(), \
        "the CSV does not carry the test rows exactly"
    (directory / "input.f32").write_bytes(rows.tobytes())
    return Case(model_path, c_dir, rows, csv)


@pytest.fixture(scope="module")
def cases(tmp_path_factory, diabetes_models, data_dir) -> dict[str, Case]:
    """A tiny diabetes model (10 features, 3 bits) and cpu_act models (21 features, 2 and 4 bits,
    and mixed widths with two 0-width features)."""
    root = tmp_path_factory.mktemp("emulated")
    out: dict[str, Case] = {}
    d = root / MODELS[0]
    d.mkdir()
    frame = diabetes_models(d, ("bw-sq",), seed=3, n_rows=200)
    model = TrainedModel.load(d / "bw-sq.safetensors")
    out[MODELS[0]] = make_case(d, d / "bw-sq.safetensors", frame[model.feature_names].to_numpy(), seed=0)
    ds = load_dataset("cpu_act", data_dir=data_dir)
    for name, bits, widths in zip(MODELS[1:], (2, 4, max(MIXED_WIDTHS)), (None, None, MIXED_WIDTHS), strict=True):
        d = root / name
        d.mkdir()
        cfg = TrainConfig(method="bw-sq", bits=bits, bits_per_feature=widths, layers=1, neurons=8, epochs=1,
                          lr=0.05, device="cpu", seed=bits)
        train_dataset(ds, cfg).save(d / "model.safetensors")
        out[name] = make_case(d, d / "model.safetensors", ds.X[:300], seed=bits)
    mixed = EncoderSpec.from_model(TrainedModel.load(out["cpu_act-mixed"].model))
    assert mixed.widths == MIXED_WIDTHS and mixed.sample_bytes == 6
    return out


@pytest.fixture(scope="module", params=BOARDS, ids=lambda b: b.machine)
def firmware(request, cases, tmp_path_factory) -> tuple[Board, dict[str, Path]]:
    """The firmware of every model for one board, compiled once."""
    board: Board = request.param
    build = tmp_path_factory.mktemp(board.machine)
    elves = {name: build_firmware(board, case.c_dir, HARNESS_MAIN, build / f"{name}.elf")
             for name, case in cases.items()}
    return board, elves


#: (board, firmware) → its outputs: each firmware runs once for the payload and the frame checks
_RUNS: dict[tuple[str, Path], tuple[bytes, bytes]] = {}


def device_output(board: Board, elf: Path, case: Case) -> tuple[bytes, bytes]:
    """The firmware's payload (output.bin) and its compact frames (compact.bin)."""
    if (board.machine, elf) not in _RUNS:
        _RUNS[board.machine, elf] = _run_device(board, elf, case)
    return _RUNS[board.machine, elf]


def _run_device(board: Board, elf: Path, case: Case) -> tuple[bytes, bytes]:
    run_dir = case.csv.parent
    for name in ("output.bin", "compact.bin"):
        (run_dir / name).unlink(missing_ok=True)
    r = run_firmware(board, elf, run_dir)
    assert r.returncode == 0, f"firmware exited with {r.returncode} on {board.machine}: {r.stdout}{r.stderr}"
    return (run_dir / "output.bin").read_bytes(), (run_dir / "compact.bin").read_bytes()


def device_payload(board: Board, elf: Path, case: Case) -> bytes:
    return device_output(board, elf, case)[0]


def first_difference(case: Case, device: bytes, reference: bytes) -> str:
    """Where two payloads part: the header, or the first differing row and its values."""
    n = min(len(device), len(reference))
    pos = next((i for i in range(n) if device[i] != reference[i]), n)
    if pos < 16:
        return f"headers differ at byte {pos}"
    width = (len(reference) - 16) // len(case.rows)
    row = (pos - 16) // width
    part = slice(16 + row * width, 16 + (row + 1) * width)
    return (f"{len(device)} vs {len(reference)} bytes; first difference in row {row}: "
            f"{case.rows[row].tolist()} → device {device[part].hex()}, softbits encode {reference[part].hex()}")


@pytest.mark.parametrize("name", MODELS)
def test_device_payload_equals_softbits_encode(firmware, cases, name, tmp_path):
    board, elves = firmware
    case = cases[name]
    reference = tmp_path / "reference.bin"
    softbits("encode", case.model, "--input", case.csv, "--format", "bin", "--out", reference)
    device = device_payload(board, elves[name], case)
    assert device == reference.read_bytes(), first_difference(case, device, reference.read_bytes())


@pytest.mark.parametrize("name", MODELS)
def test_device_compact_frames_equal_build_compact(firmware, cases, name):
    """softbits_encode_compact on the board: tag, model tag and the sample, for every row."""
    board, elves = firmware
    case = cases[name]
    spec = EncoderSpec.from_model(TrainedModel.load(case.model))
    packed = encode_packed(spec, case.rows)
    expected = b"".join(build_compact(spec, row) for row in packed)
    frames = device_output(board, elves[name], case)[1]
    size = 2 + spec.sample_bytes
    assert len(frames) == len(expected) == size * len(case.rows)
    bad = next((i for i in range(len(case.rows)) if frames[i * size:(i + 1) * size] != expected[i * size:(i + 1) * size]),
               None)
    assert bad is None, (f"row {bad}: {case.rows[bad].tolist()} → device {frames[bad * size:(bad + 1) * size].hex()}, "
                         f"build_compact {expected[bad * size:(bad + 1) * size].hex()}")


@pytest.mark.parametrize("name", ["cpu_act-4bit", "cpu_act-mixed"])
def test_a_wrong_encoder_is_caught(firmware, cases, tmp_path, name):
    """The check can fail: the same C with `>=` for `>` (a value equal to a threshold takes the
    upper code) differs from the reference on the threshold rows, on both boards."""
    board, _ = firmware
    case = cases[name]
    source = (case.c_dir / "softbits_encoder.c").read_text()
    assert source.count("key > t[") == 1, "the generated comparison changed; update this mutation"
    mutant = dataclasses.replace(case, c_dir=tmp_path / "c")
    mutant.c_dir.mkdir()
    (mutant.c_dir / "softbits_encoder.h").write_text((case.c_dir / "softbits_encoder.h").read_text())
    (mutant.c_dir / "softbits_encoder.c").write_text(source.replace("key > t[", "key >= t["))
    elf = build_firmware(board, mutant.c_dir, HARNESS_MAIN, tmp_path / "mutant.elf")
    reference = tmp_path / "reference.bin"
    softbits("encode", case.model, "--input", case.csv, "--format", "bin", "--out", reference)
    assert device_payload(board, elf, case) != reference.read_bytes()
