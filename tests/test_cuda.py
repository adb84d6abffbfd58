"""CUDA correctness: the same model and contract on the GPU as on the CPU.

Skipped without a CUDA device; ``scripts/gpu_check.sh`` runs this module (and a GPU training
benchmark) on a lent GPU machine. What must hold on CUDA:

- every method family trains on the GPU with finite hard and soft metrics;
- a model trained on CUDA, saved and loaded on the CPU, predicts what it predicted on CUDA (up to
  float32 kernel differences) and exports the same device encoder, bit for bit;
- the server path (codes → predictions) agrees between CUDA and CPU;
- ``softbits reproduce --device cuda`` writes rows that record the CUDA device.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from softbits import TrainConfig, TrainedModel, load_dataset, train_dataset
from softbits.device.encode import encode
from softbits.device.spec import EncoderSpec

from conftest import run_main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

METHODS = ["fp", "po-qq", "pr-qq", "sq", "bw-sq", "bw-qq", "lsq", "llt4"]


def _config(method: str, device: str) -> TrainConfig:
    return TrainConfig(method=method, bits=3, layers=2, neurons=32, epochs=3, seed=0, device=device)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_on_cuda(method: str) -> None:
    model = train_dataset(load_dataset("diabetes"), _config(method, "cuda"))
    assert model.runtime["device"].startswith("cuda")
    assert next(model.module.parameters()).is_cuda
    assert np.isfinite(model.metrics["test_mse"])
    if model.metrics.get("test_mse_soft") is not None:
        assert np.isfinite(model.metrics["test_mse_soft"])


@pytest.mark.parametrize("method", ["bw-sq", "sq", "pr-qq"])
def test_cuda_model_loads_on_cpu_with_the_same_predictions_and_encoder(method: str, tmp_path: Path) -> None:
    ds = load_dataset("diabetes")
    cuda_model = train_dataset(ds, _config(method, "cuda"))
    path = tmp_path / "m.safetensors"
    cuda_model.save(path)
    cpu_model = TrainedModel.load(path)
    assert not next(cpu_model.module.parameters()).is_cuda
    np.testing.assert_allclose(cpu_model.predict(ds.X), cuda_model.predict(ds.X), rtol=1e-4, atol=1e-4)
    cuda_spec, cpu_spec = EncoderSpec.from_model(cuda_model), EncoderSpec.from_model(cpu_model)
    assert cuda_spec.model_id == cpu_spec.model_id
    np.testing.assert_array_equal(cuda_spec.thresholds, cpu_spec.thresholds)
    X32 = ds.X.astype(np.float32).astype(np.float64)  # the device contract is on float32 inputs
    codes = encode(cpu_spec, X32)
    np.testing.assert_array_equal(cuda_model.encode(X32), codes)
    np.testing.assert_allclose(cuda_model.predict_codes(codes), cpu_model.predict_codes(codes),
                               rtol=1e-4, atol=1e-4)


def test_reproduce_on_cuda_records_the_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"learning_rate": [1e-3], "hidden_layers": [1], "hidden_neurons": [16],
                                "num_epochs": [2], "decrease_factor": [1e-3], "dropout_rate": [0.0],
                                "weight_decay": [0.0]}))
    store = tmp_path / "s.sqlite"
    code, out, err = run_main(capsys, "reproduce", "--datasets", "diabetes", "--methods", "fp,bw-sq",
                              "--bits", "2", "--grid", str(grid), "--n-settings", "1", "--folds", "2",
                              "--repeats", "2", "--jobs", "1", "--device", "cuda", "--store", str(store),
                              "--json")
    assert code == 0, err
    import sqlite3

    with sqlite3.connect(store) as conn:
        devices = {row[0] for row in conn.execute("SELECT device FROM results")}
    assert devices and all(d.startswith("cuda") for d in devices), devices


def test_stacked_members_on_cuda_reproduce_their_single_cuda_trainings() -> None:
    from softbits.training.engine import predict_tensor, to_tensor
    from softbits.training.stacked import fit_stacked
    from softbits.training.train import fit_module

    ds = load_dataset("diabetes")
    X = (ds.X - ds.X.mean(0)) / ds.X.std(0)
    y = (ds.y - ds.y.mean()) / ds.y.std()
    base = dict(method="bw-sq", bits=3, layers=2, neurons=32, batch_size=64, device="cuda")
    configs = [TrainConfig(**base, seed=1, lr=1e-3, epochs=4),
               TrainConfig(**base, seed=2, lr=3e-3, epochs=2, decrease_factor=0.1),
               TrainConfig(**base, seed=3, lr=1e-2, epochs=3, weight_decay=1e-2, optimizer="adamw")]
    splits = [(X[:400], y[:400]), (X[1:400], y[1:400]), (X[10:], y[10:])]
    stacked = fit_stacked(configs, splits, task="regression")
    X_te = to_tensor(X[400:], torch.device("cuda"))
    for config, (X_k, y_k), member in zip(configs, splits, stacked, strict=True):
        single = fit_module(X_k, y_k, config, task="regression")
        assert next(member.module.parameters()).is_cuda
        a, b = single.module.state_dict(), member.module.state_dict()
        assert max(float((a[n] - b[n]).abs().max()) for n in a) < 1e-4
        torch.testing.assert_close(predict_tensor(member.module, X_te), predict_tensor(single.module, X_te),
                                   rtol=1e-4, atol=1e-4)


def test_stacked_reproduce_on_cuda_equals_unstacked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"learning_rate": [1e-3], "hidden_layers": [1], "hidden_neurons": [16],
                                "num_epochs": [2, 3], "decrease_factor": [1e-3], "dropout_rate": [0.0],
                                "weight_decay": [0.0]}))
    tables = []
    for stack in ("1", "auto"):
        store = tmp_path / f"s{stack}.sqlite"
        code, out, err = run_main(capsys, "reproduce", "--datasets", "diabetes", "--methods", "fp,bw-sq",
                                  "--bits", "2", "--grid", str(grid), "--n-settings", "2", "--folds", "2",
                                  "--repeats", "2", "--jobs", "1", "--device", "cuda", "--stack", stack,
                                  "--store", str(store), "--json")
        assert code == 0, err
        with sqlite3.connect(store) as conn:
            tables.append(sorted(conn.execute("SELECT dataset, method, bits, setting_id, phase, idx, seed, "
                                              "test_mse, json_extract(metrics, '$.stacked') FROM results")))
    alone, stacked = tables
    assert [r[:7] for r in alone] == [r[:7] for r in stacked]
    np.testing.assert_allclose([r[7] for r in alone], [r[7] for r in stacked], rtol=1e-3, atol=1e-5)
    assert max(r[8] for r in stacked) > 1 and {r[8] for r in alone} == {1}
