"""Drift from codes (issue 20, item 5): the model file keeps the training part's code histograms;
a real server counts incoming codes and reports PSI and Jensen-Shannon distance per feature at
``GET /v1/drift`` and in ``/metrics``. Rows from the training distribution stay below 0.1; a
feature shifted by one standard deviation, or a dead sensor (NaN, so code 0), exceeds 0.25 on
that feature alone."""

from __future__ import annotations

import json
import os
import urllib.request

import numpy as np
import pytest

from softbits import TrainConfig, load_dataset, train_dataset
from softbits.device.spec import EncoderSpec
from softbits.device.wire import encode_payload
from softbits.serve.drift import DECAY_EVERY, DriftMonitor, js_distance, psi
from softbits.training.trained_model import TrainedModel

from conftest import start_server, stop_server

pytest.importorskip("prometheus_client")


def _model(tmp_path, seed: int = 0):
    from softbits.errors import DataError

    try:
        ds = load_dataset("california")
    except DataError as exc:  # CI points SOFTBITS_DATA_DIR at the offline copies
        pytest.skip(f"california is not available here: {exc}")
    path = tmp_path / "ca.safetensors"
    model = train_dataset(ds, TrainConfig(method="bw-qq", bits=3, layers=1, neurons=8, epochs=1, device="cpu",
                                          seed=seed))
    model.save(path)
    return ds, model, path


def test_the_model_file_keeps_the_training_code_histogram(tmp_path):
    ds, model, path = _model(tmp_path)
    hist = model.code_histogram
    assert len(hist) == ds.n_features and all(len(h) == 8 for h in hist)
    assert all(sum(h) == sum(hist[0]) for h in hist)  # every feature counted on the same rows
    assert sum(hist[0]) < len(ds.y)  # the training part only
    assert TrainedModel.load(path).code_histogram == hist


def test_psi_and_js_distance_are_zero_for_equal_histograms_and_grow_with_shift():
    q = np.array([10, 20, 30, 40])
    assert psi(q * 3, q) == pytest.approx(0.0, abs=1e-3) and js_distance(q * 3, q) == pytest.approx(0.0, abs=1e-2)
    assert psi(q[::-1], q) > 0.25 and 0 < js_distance(q[::-1], q) <= 1


def test_counts_decay_and_stay_bounded():
    monitor = DriftMonitor(["a"], [[5, 5]])
    monitor.add(np.zeros((DECAY_EVERY, 1), dtype=np.int64))
    assert monitor.samples == DECAY_EVERY / 2 and monitor.counts[0].tolist() == [DECAY_EVERY / 2, 0]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def _post(url: str, data: bytes) -> None:
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


@pytest.mark.parametrize("case", ["same", "shifted", "dead"])
def test_the_server_reports_drift_on_the_shifted_feature_alone(tmp_path, case):
    ds, model, path = _model(tmp_path)
    spec = EncoderSpec.from_model(model)
    rng = np.random.default_rng(7)
    X = ds.X[rng.choice(len(ds.X), 6000, replace=False)].astype(np.float64)
    target = ds.feature_names.index("HouseAge")
    if case == "shifted":
        X[:, target] += ds.X[:, target].std()
    elif case == "dead":
        X[:, target] = np.nan
    proc, urls = start_server(path, dict(os.environ, NO_COLOR="1"))
    base = urls["http"].rsplit("/v1/", 1)[0]
    try:
        for chunk in np.array_split(X, 6):
            _post(urls["http"], encode_payload(spec, chunk))
        report = json.loads(_get(base + "/v1/drift"))
        metrics = _get(base + "/metrics").decode()
    finally:
        stop_server(proc)
    assert report["model_id"] == spec.model_id and report["reference"] == "training"
    rows = {r["name"]: r for r in report["features"]}
    assert set(rows) == set(ds.feature_names) and all(r["samples"] == 6000 for r in rows.values())
    others = [r["psi"] for name, r in rows.items() if name != "HouseAge"]
    assert max(others) < 0.1, rows
    if case == "same":
        assert rows["HouseAge"]["psi"] < 0.1
    else:
        assert rows["HouseAge"]["psi"] > 0.25 and rows["HouseAge"]["js"] > max(r["js"] for n, r in rows.items() if n != "HouseAge")
    assert 'softbits_feature_psi{feature="HouseAge"}' in metrics
