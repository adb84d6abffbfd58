"""Bw-SQ in a model softbits did not build (docs/own-model.md): the annealing hook, the encoder
from a bare quantizer, and the tested example (a 1-D CNN) down to compiled C."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from softbits.device.cgen import C_SOURCE_NAME
from softbits.device.encode import encode, encode_packed
from softbits.device.spec import EncoderSpec
from softbits.device.wire import HEADER_BYTES
from softbits.errors import DataError
from softbits.nn import Annealer, BitwiseQuantizer, TemperatureSchedule, anneal
from softbits.nn.quantizers import LSQQuantizer, MidpointQuantizer
from test_cgen import HARNESS

EXAMPLE = Path(__file__).parents[1] / "examples" / "own_model_cnn.py"


def test_annealer_sets_every_soft_quantizer_and_skips_hard_ones():
    model = nn.Sequential(BitwiseQuantizer(3, 2), nn.Linear(9, 1))
    hard = BitwiseQuantizer(3, 2, soft=False, trainable=False)
    model.append(hard)
    schedule = TemperatureSchedule("exponential", epochs=10, tau_min=1e-3)
    annealer = Annealer(model, schedule)
    assert annealer(4) == pytest.approx(1e-3 ** 0.4)
    assert float(model[0].temperature) == pytest.approx(1e-3 ** 0.4)
    assert float(hard.temperature) == 1.0
    assert anneal(model, 0.25) == 1 and float(model[0].temperature) == 0.25


def test_annealer_refuses_a_model_without_soft_quantizers():
    with pytest.raises(ValueError, match="no soft quantizer"):
        Annealer(nn.Linear(2, 1), TemperatureSchedule(epochs=3))


def test_from_quantizer_round_trips_raw_units_on_threshold_neighbours():
    rng = np.random.default_rng(0)
    q = BitwiseQuantizer(4, 3)
    x = rng.standard_normal((500, 4)) * [1, 10, 0.01, 3] + [0, 100, -5, 2]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    q.init_from_data(torch.from_numpy(((x - mean) / scale).astype(np.float32)))
    spec = EncoderSpec.from_quantizer(q, ["a", "b", "c", "d"], mean=mean, scale=scale)
    assert spec.bits == 3 and spec.n_features == 4
    table = spec.thresholds.astype(np.float32).T  # [M, F]: row j holds each feature's j-th threshold
    probes = np.concatenate([table, np.nextafter(table, np.float32(np.inf)),
                             np.nextafter(table, np.float32(-np.inf))]).astype(np.float32)
    std = torch.from_numpy(((probes.astype(np.float64) - mean) / scale).astype(np.float32))
    np.testing.assert_array_equal(encode(spec, probes), q.encode(std).numpy())


def test_from_quantizer_refuses_what_has_no_threshold_table_or_wrong_names():
    with pytest.raises(DataError, match="no threshold table"):
        EncoderSpec.from_quantizer(LSQQuantizer(2, 2), ["a", "b"])
    with pytest.raises(DataError, match="2 feature names"):
        EncoderSpec.from_quantizer(MidpointQuantizer(3, 2), ["a", "b"])
    with pytest.raises(DataError, match="mean and scale"):
        EncoderSpec.from_quantizer(BitwiseQuantizer(2, 2), ["a", "b"], mean=np.zeros(2))


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_the_example_trains_a_cnn_and_its_c_encoder_matches(tmp_path):
    spec_ = importlib.util.spec_from_file_location("own_model_cnn", EXAMPLE)
    example = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(example)
    result = example.main(["--out", str(tmp_path), "--epochs", "6"])
    assert result["codes_match"]
    assert result["test_mse"] < 0.5 * result["predict_mean_mse"], result   # it learned from the codes
    spec = EncoderSpec.from_dict(json.loads((tmp_path / "encoder.json").read_text()))
    assert spec.model_id == result["model_id"]
    (tmp_path / "main.c").write_text(HARNESS)
    exe = tmp_path / "encoder"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-I", str(tmp_path),
                    str(tmp_path / "main.c"), str(tmp_path / C_SOURCE_NAME), "-o", str(exe)], check=True)
    rng = np.random.default_rng(1)
    x, _ = example.sensor_windows(200, rng)
    out = subprocess.run([str(exe)], input=x.tobytes(), capture_output=True, check=True).stdout
    assert out == encode_packed(spec, x).tobytes()
    payload = (tmp_path / "payload.bin").read_bytes()
    assert len(payload) == HEADER_BYTES + 4 * spec.sample_bytes
