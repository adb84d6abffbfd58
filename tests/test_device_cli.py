"""``softbits export / encode / predict``: device-exact predictions, one-line errors.

Most calls run the CLI in-process (``softbits.cli.main``) to keep the suite fast; one test runs
the real console entry point in a subprocess.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from softbits.data import load_dataset
from softbits.device.predict import predict_rows
from softbits.device.spec import EncoderSpec
from softbits.device.wire import encode_payload
from softbits.training.config import TrainConfig
from softbits.training.train import train_dataset
from softbits.training.trained_model import TrainedModel

from conftest import run_main


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys):
    """Run ``softbits ARGS`` in-process; returns exit code and captured output."""

    def call(*args, check: bool = True) -> Result:
        code, out, err = run_main(capsys, *args)
        if check:
            assert code == 0, err
        return Result(code, out, err)

    return call


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, diabetes_models) -> Path:
    """Three saved models (bw-sq, po-mq, fp) and a CSV of raw diabetes rows with the target."""
    d = tmp_path_factory.mktemp("device_cli")
    diabetes_models(d, ("bw-sq", "po-mq", "fp"), seed=1, n_rows=60)
    return d


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_export_json_is_the_spec(workdir, cli, tmp_path):
    cli("export", workdir / "bw-sq.safetensors", "--format", "json", "--out-dir", tmp_path)
    obj = json.loads((tmp_path / "encoder.json").read_text())
    spec = EncoderSpec.from_model(TrainedModel.load(workdir / "bw-sq.safetensors"))
    assert obj["model_id"] == spec.model_id and obj["format_version"] == 1
    assert EncoderSpec.from_dict(obj) == spec
    for feature in obj["features"]:
        assert feature["thresholds"] == sorted(feature["thresholds"]) and feature["bits"] == 3


def test_payload_and_raw_csv_predictions_are_identical(workdir, cli, tmp_path):
    for method in ("bw-sq", "po-mq"):
        model = workdir / f"{method}.safetensors"
        payload = tmp_path / f"{method}.bin"
        cli("encode", model, "--input", workdir / "rows.csv", "--out", payload)
        assert len(payload.read_bytes()) == 16 + 60 * 4
        from_csv = lines(cli("predict", model, "--input", workdir / "rows.csv").stdout)
        from_payload = lines(cli("predict", model, "--payload", payload).stdout)
        assert len(from_csv) == 60 and from_csv == from_payload
        m = TrainedModel.load(model)
        X = pd.read_csv(workdir / "rows.csv")[m.feature_names].to_numpy()
        assert [float(v) for v in from_csv] == list(predict_rows(m, X))


def test_columns_are_matched_by_name(workdir, cli, tmp_path):
    frame = pd.read_csv(workdir / "rows.csv")
    shuffled = tmp_path / "shuffled.csv"
    frame[list(reversed(frame.columns))].to_csv(shuffled, index=False)
    model = workdir / "bw-sq.safetensors"
    a = cli("predict", model, "--input", workdir / "rows.csv").stdout
    assert cli("predict", model, "--input", shuffled).stdout == a


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_hex_output_equals_the_exported_c_encoder(workdir, cli, tmp_path):
    model = workdir / "bw-sq.safetensors"
    cli("export", model, "--format", "c", "--out-dir", tmp_path)
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "softbits_encoder.h"\n'
        "int main(void) { float x[SOFTBITS_N_FEATURES]; uint8_t o[SOFTBITS_PAYLOAD_BYTES]; unsigned i;\n"
        "  while (fread(x, sizeof x[0], SOFTBITS_N_FEATURES, stdin) == SOFTBITS_N_FEATURES) {\n"
        "    softbits_encode(x, o); for (i = 0; i < sizeof o; ++i) printf(\"%02x\", o[i]); printf(\"\\n\"); }\n"
        "  return 0; }\n")
    exe = tmp_path / "enc"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", str(tmp_path),
                    str(tmp_path / "main.c"), str(tmp_path / "softbits_encoder.c"), "-o", str(exe)], check=True)
    m = TrainedModel.load(model)
    X = pd.read_csv(workdir / "rows.csv")[m.feature_names].to_numpy(dtype=np.float32)
    c_hex = subprocess.run([str(exe)], input=X.tobytes(), capture_output=True, check=True).stdout.decode()
    py_hex = cli("encode", model, "--input", workdir / "rows.csv", "--format", "hex").stdout
    assert lines(py_hex) == lines(c_hex) and len(lines(py_hex)) == 60


def test_missing_values_encode_as_code_zero(workdir, cli, tmp_path):
    frame = pd.read_csv(workdir / "rows.csv").head(3)
    frame.iloc[1, 2] = np.nan
    path = tmp_path / "nan.csv"
    frame.to_csv(path, index=False)
    out = cli("encode", workdir / "bw-sq.safetensors", "--input", path, "--format", "hex").stdout
    row = bytes.fromhex(lines(out)[1])
    assert (row[0] >> 6) & 0b111 == 0  # feature 2 occupies bits 6..8 of the sample
    assert row[1] & 1 == 0


@pytest.mark.parametrize("args, message", [
    (["export", "{fp}", "--out-dir", "{tmp}"], "has no threshold encoder"),
    (["predict", "{m}", "--input", "{bad_csv}"], "lacks the model's feature column(s) s6 (its header has 9"),
    (["encode", "{m}", "--input", "{bad_csv}", "--out", "{tmp}/p.bin"], "lacks the model's feature column(s) s6"),
    (["predict", "{m}", "--payload", "{other_payload}"], "model id mismatch"),
    (["predict", "{m}", "--payload", "{tmp}/missing.bin"], "payload file not found"),
    (["predict", "{m}"], "give exactly one of --input"),
    (["export", "{m}", "--format", "rust", "--out-dir", "{tmp}"], "--format must be json, c, package, onnx or triton"),
    (["encode", "{m}", "--input", "{text_csv}", "--format", "hex"], "non-numeric feature value"),
])
def test_user_errors_are_one_line(workdir, cli, tmp_path, args, message):
    frame = pd.read_csv(workdir / "rows.csv")
    frame.iloc[:, :9].to_csv(tmp_path / "bad.csv", index=False)
    text = frame.head(2).astype(object)
    text.iloc[0, 0] = "hot"
    text.to_csv(tmp_path / "text.csv", index=False)
    cli("encode", workdir / "po-mq.safetensors", "--input", workdir / "rows.csv",
        "--out", tmp_path / "other.bin")
    values = {"fp": workdir / "fp.safetensors", "m": workdir / "bw-sq.safetensors", "tmp": tmp_path,
              "bad_csv": tmp_path / "bad.csv", "other_payload": tmp_path / "other.bin",
              "text_csv": tmp_path / "text.csv"}
    r = cli(*[a.format(**values) for a in args], check=False)
    assert r.returncode == 2, r.stderr
    err = " ".join(lines(r.stderr))
    assert err.startswith("error:") and message in err, r.stderr


def test_console_entry_point_end_to_end(workdir, softbits_cmd, cli_env, tmp_path):
    """The installed command: payload file → predictions equal the raw CSV's; errors are one line."""
    model = workdir / "bw-sq.safetensors"
    base = [*softbits_cmd]
    m = TrainedModel.load(model)
    X = pd.read_csv(workdir / "rows.csv")[m.feature_names].to_numpy()
    (tmp_path / "p.bin").write_bytes(encode_payload(EncoderSpec.from_model(m), X))
    proc = subprocess.run([*base, "predict", str(model), "--payload", str(tmp_path / "p.bin")],
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [float(v) for v in lines(proc.stdout)] == list(predict_rows(m, X))
    (tmp_path / "short.bin").write_bytes((tmp_path / "p.bin").read_bytes()[:-3])
    proc = subprocess.run([*base, "predict", str(model), "--payload", str(tmp_path / "short.bin")],
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert lines(proc.stderr) == ["error: truncated body: header says 60 samples = 240 bytes, got 237"]


def test_full_precision_model_predicts_from_csv(workdir, cli):
    out = cli("predict", workdir / "fp.safetensors", "--input", workdir / "rows.csv").stdout
    m = TrainedModel.load(workdir / "fp.safetensors")
    X = pd.read_csv(workdir / "rows.csv")[m.feature_names].to_numpy()
    assert [float(v) for v in lines(out)] == list(m.predict(X))


def test_classification_prints_class_labels(cli, tmp_path):
    ds = load_dataset("breast_cancer")
    cfg = TrainConfig(method="bw-qq", bits=2, layers=1, neurons=8, epochs=2, device="cpu", seed=0)
    model = train_dataset(ds, cfg)
    model.save(tmp_path / "clf.safetensors")
    pd.DataFrame(ds.X[:25], columns=ds.feature_names).to_csv(tmp_path / "rows.csv", index=False)
    spec = EncoderSpec.from_model(model)
    (tmp_path / "p.bin").write_bytes(encode_payload(spec, ds.X[:25]))
    from_csv = lines(cli("predict", tmp_path / "clf.safetensors", "--input", tmp_path / "rows.csv").stdout)
    from_payload = lines(cli("predict", tmp_path / "clf.safetensors", "--payload", tmp_path / "p.bin").stdout)
    assert from_csv == from_payload and len(from_csv) == 25
    assert set(from_csv) <= set(ds.classes)
    expected = [ds.classes[i] for i in model.predict(ds.X[:25].astype(np.float32).astype(np.float64))]
    assert from_csv == expected
