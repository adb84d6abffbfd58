"""``softbits export --format onnx|triton`` (issue 21, item 4): the server side as ONNX, checked
with onnxruntime against ``predict_codes`` on 1,000 rows, for MLP, ensemble, mixed-width and
classification models; refusals are one line."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from softbits import TrainConfig, load_dataset, train_dataset  # noqa: E402
from softbits.training.onnx_export import sent_codes  # noqa: E402
from softbits.training.trained_model import TrainedModel  # noqa: E402

from conftest import run_main  # noqa: E402

NET = dict(bits=3, layers=2, neurons=16, epochs=3, device="cpu", seed=1)
WIDTHS = (3, 0, 2, 4, 1, 3, 2, 2, 3, 1)


def _codes(model: TrainedModel, X: np.ndarray, n: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(0)
    rows = X[rng.integers(0, len(X), n)] + rng.standard_normal((n, X.shape[1])) * X.std(0) * 0.3
    return model.encode(rows)


@pytest.mark.parametrize("method, extra", [("bw-sq", {}), ("bw-sq-ens", {}), ("bw-qq", {"bits_per_feature": WIDTHS}),
                                           ("pr-mq", {}), ("lsq", {})])
def test_onnx_predictions_equal_predict_codes(tmp_path, capsys, method, extra):
    ds = load_dataset("diabetes")
    path = tmp_path / "m.safetensors"
    train_dataset(ds, TrainConfig(method=method, **NET, **extra)).save(path)
    code, out, err = run_main(capsys, "export", path, "--format", "onnx", "--out-dir", tmp_path / "onnx")
    assert code == 0, err
    model = TrainedModel.load(path)
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["codes"]
    assert [o.name for o in session.get_outputs()] == ["predictions"]
    codes = _codes(model, ds.X)
    got = session.run(None, {"codes": sent_codes(model, codes)})[0]
    want = model.predict_codes(codes)
    scale = float(model.y_scaler.scale[0])
    assert got.shape == want.shape == (1000,)
    assert np.abs(got - want).max() / scale <= 1e-5  # on the standardized target
    one = session.run(None, {"codes": sent_codes(model, codes[:1])})[0]  # the batch axis is dynamic
    assert one.shape == (1,)


def test_onnx_classification_gives_class_indices(tmp_path, capsys):
    import pandas as pd

    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 4))
    frame = pd.DataFrame(X, columns=list("abcd"))
    frame["label"] = np.where(X[:, 0] + X[:, 1] > 0, "up", "down")
    csv = tmp_path / "c.csv"
    frame.to_csv(csv, index=False)
    path = tmp_path / "c.safetensors"
    code, _, err = run_main(capsys, "train", "--data", csv, "--bits", "3", "--layers", "1", "--neurons", "8",
                            "--epochs", "3", "--device", "cpu", "--save", path)
    assert code == 0, err
    code, _, err = run_main(capsys, "export", path, "--format", "triton", "--out-dir", tmp_path / "repo")
    assert code == 0, err
    model = TrainedModel.load(path)
    entry = next((tmp_path / "repo").iterdir())
    assert entry.name == f"softbits_{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
    config = (entry / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in config and "TYPE_INT64" in config and "dims: [ -1, 4 ]" in config
    session = ort.InferenceSession(str(entry / "1" / "model.onnx"))
    codes = model.encode(X)
    np.testing.assert_array_equal(session.run(None, {"codes": sent_codes(model, codes)})[0], model.predict_codes(codes))


def test_onnx_refusals_are_one_line(tmp_path, capsys):
    ds = load_dataset("diabetes")
    fp, trees = tmp_path / "fp.safetensors", tmp_path / "gbdt.safetensors"
    train_dataset(ds, TrainConfig(method="fp", **NET)).save(fp)
    for path, message in ((fp, "sends full-precision features; it has no codes"),):
        code, _, err = run_main(capsys, "export", path, "--format", "onnx", "--out-dir", tmp_path / "o")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    pytest.importorskip("lightgbm")
    train_dataset(ds, TrainConfig(method="bw-qq", predictor="gbdt", **NET)).save(trees)
    code, _, err = run_main(capsys, "export", trees, "--format", "onnx", "--out-dir", tmp_path / "o2")
    assert code == 2 and "gbdt predictor does not export to ONNX" in err, err
    assert not (tmp_path / "o2" / "model.onnx").exists()
