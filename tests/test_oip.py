"""The Open Inference Protocol (KServe V2) on a real ``softbits serve`` (issue 20, item 3),
spoken by tritonclient, a client nobody here wrote: metadata, health, and ``infer`` on codes
and on raw features, with binary data off and on, equal to ``softbits predict`` on 1,000 rows."""

from __future__ import annotations

import os

import numpy as np
import pytest

httpclient = pytest.importorskip("tritonclient.http")

from softbits import TrainConfig, load_dataset, train_dataset  # noqa: E402
from softbits.device.encode import encode  # noqa: E402
from softbits.device.spec import EncoderSpec  # noqa: E402

from conftest import start_server, stop_server  # noqa: E402

WIDTHS = (3, 0, 2, 4, 1, 3, 2, 2, 3, 1)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("oip")
    ds = load_dataset("diabetes")
    config = TrainConfig(method="bw-qq", bits=4, layers=1, neurons=8, epochs=2, device="cpu", seed=2,
                         bits_per_feature=WIDTHS)
    model = train_dataset(ds, config)
    model.save(d / "m.safetensors")
    proc, urls = start_server(d / "m.safetensors", dict(os.environ, NO_COLOR="1"), "--name", "diabetes-bwqq")
    host = urls["http"].split("//")[1].split("/")[0]
    client = httpclient.InferenceServerClient(url=host)
    yield {"model": model, "spec": EncoderSpec.from_model(model), "client": client, "ds": ds}
    client.close()
    stop_server(proc)


def _rows(ds, n: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (ds.X[rng.integers(0, len(ds.X), n)] + rng.standard_normal((n, ds.X.shape[1])) * ds.X.std(0) * 0.2)


def test_health_and_metadata(served):
    client = served["client"]
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("diabetes-bwqq")
    meta = client.get_model_metadata("diabetes-bwqq")
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert inputs["codes"]["shape"] == [-1, 9] and inputs["codes"]["datatype"] == "UINT8"  # one feature at 0 bits
    assert inputs["features"]["shape"] == [-1, 10] and meta["outputs"][0]["datatype"] == "FP32"
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert not client.is_model_ready("another")


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("input_name", ["codes", "features"])
def test_infer_equals_predict_on_1000_rows(served, binary, input_name):
    model, spec, client = served["model"], served["spec"], served["client"]
    X = _rows(served["ds"]).astype(np.float32)
    codes = encode(spec, X)
    expected = model.predict_codes(codes).astype(np.float32)
    if input_name == "codes":
        data, dtype = codes[:, [f for f, w in enumerate(WIDTHS) if w]].astype(np.uint8), "UINT8"
    else:
        data, dtype = X, "FP32"
    tensor = httpclient.InferInput(input_name, list(data.shape), dtype)
    tensor.set_data_from_numpy(data, binary_data=binary)
    output = httpclient.InferRequestedOutput("predictions", binary_data=binary)
    result = client.infer("diabetes-bwqq", [tensor], outputs=[output])
    got = result.as_numpy("predictions")
    assert got.shape == (1000, 1)
    np.testing.assert_array_equal(got[:, 0], expected)


def test_bad_requests_are_400_or_404(served):
    from tritonclient.utils import InferenceServerException

    client = served["client"]
    bad = httpclient.InferInput("codes", [2, 3], "UINT8")
    bad.set_data_from_numpy(np.zeros((2, 3), dtype=np.uint8))
    with pytest.raises(InferenceServerException, match="codes must have 9 columns"):
        client.infer("diabetes-bwqq", [bad])
    with pytest.raises(InferenceServerException, match="no model 'nope'"):
        client.infer("nope", [bad])
    wrong = httpclient.InferInput("temperature", [1, 10], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 10), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="unknown input 'temperature'"):
        client.infer("diabetes-bwqq", [wrong])
    assert client.is_server_live()  # still serving
