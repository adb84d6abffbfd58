"""The engine and the pipeline: repeatability, classification, checkpointing, model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from softbits import TrainConfig, TrainedModel, load_dataset, train_dataset
from softbits.errors import ConfigError, SoftbitsError
from softbits.training.engine import iterate_batches, resolve_device
from softbits.training.methods import METHODS

SMALL = dict(layers=2, neurons=32, epochs=4, lr=3e-3, device="cpu")


@pytest.fixture(scope="module")
def diabetes():
    return load_dataset("diabetes")


def test_batches_cover_every_row_once():
    g = torch.Generator().manual_seed(0)
    batches = list(iterate_batches(1100, 512, g, torch.device("cpu")))
    assert [len(b) for b in batches] == [512, 512, 76]
    assert sorted(torch.cat(batches).tolist()) == list(range(1100))


def test_same_seed_same_result_on_cpu(diabetes):
    a = train_dataset(diabetes, TrainConfig(method="bw-sq", bits=3, seed=5, **SMALL))
    b = train_dataset(diabetes, TrainConfig(method="bw-sq", bits=3, seed=5, **SMALL))
    c = train_dataset(diabetes, TrainConfig(method="bw-sq", bits=3, seed=6, **SMALL))
    assert a.metrics["test_mse"] == b.metrics["test_mse"]
    assert a.metrics["test_mse"] != c.metrics["test_mse"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_and_reports_hard_mse(diabetes, method):
    cfg = TrainConfig(method=method, bits=3, **SMALL)
    model = train_dataset(diabetes, cfg)
    m = model.metrics
    assert np.isfinite(m["test_mse"]) and 0 < m["test_mse"] < 5
    assert m["train_seconds"] > 0
    q = model.module.quantizer
    if method == "fp":
        assert q is None
    else:
        assert q is not None and q.bits == 3
        soft_expected = q.uses_temperature
        assert (m["test_mse_soft"] is not None) == soft_expected
    if method.startswith("po-"):
        assert np.isfinite(m["test_mse_fp"])


def test_bwsq_thresholds_move_and_stay_device_exact(diabetes):
    model = train_dataset(diabetes, TrainConfig(method="bw-sq", bits=4, **SMALL))
    q = model.module.quantizer
    X = diabetes.X
    codes = model.encode(X)
    assert codes.min() >= 0 and codes.max() <= 15
    np.testing.assert_array_equal(model.predict_codes(codes), model.predict(X))
    assert model.metrics["final_temperature"] < 1.0
    init = TrainConfig(method="bw-qq", bits=4, **SMALL)
    fixed = train_dataset(diabetes, init).module.quantizer.thresholds
    assert not torch.allclose(q.thresholds, fixed)


def test_classification_with_cross_entropy():
    ds = load_dataset("breast_cancer")
    model = train_dataset(ds, TrainConfig(method="bw-sq", bits=2, layers=2, neurons=32, epochs=20,
                                          lr=3e-3, device="cpu"))
    assert model.metrics["test_mse"] is None
    assert model.metrics["test_accuracy"] > 0.9
    pred = model.predict(ds.X[:10])
    assert pred.dtype.kind == "i" and set(pred.tolist()) <= {0, 1}


def test_best_validation_checkpoint(diabetes):
    model = train_dataset(diabetes, TrainConfig(method="bw-sq", bits=3, val_fraction=0.2,
                                                **{**SMALL, "epochs": 6}))
    assert model.metrics["best_epoch"] is not None and 0 <= model.metrics["best_epoch"] < 6


def test_model_file_round_trip(tmp_path, diabetes):
    for method in ("bw-sq", "po-qq", "fp", "sq"):
        model = train_dataset(diabetes, TrainConfig(method=method, bits=2, **SMALL))
        path = model.save(tmp_path / f"{method}.safetensors")
        loaded = TrainedModel.load(path)
        np.testing.assert_array_equal(loaded.predict(diabetes.X), model.predict(diabetes.X))
        assert loaded.feature_names == diabetes.feature_names
        assert loaded.config.method == method and loaded.metrics["test_mse"] == model.metrics["test_mse"]
        assert loaded.runtime["torch"] == torch.__version__


def test_model_file_errors(tmp_path):
    with pytest.raises(SoftbitsError, match="not found"):
        TrainedModel.load(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(SoftbitsError, match="not a softbits model"):
        TrainedModel.load(junk)


def test_wrong_feature_count_is_an_error(diabetes):
    model = train_dataset(diabetes, TrainConfig(method="bw-sq", bits=2, **SMALL))
    with pytest.raises(SoftbitsError, match="expected 10 features"):
        model.predict(np.zeros((3, 4)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="nope"), "unknown method"),
    (dict(bits=0), "bits must be"),
    (dict(bits=17), "bits must be"),
    (dict(method="pr-mq", bits=1), "needs bits >= 2"),
    (dict(dropout=1.0), "dropout"),
    (dict(schedule="zig"), "unknown schedule"),
    (dict(lr=0), "lr must be"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_network_eval_has_the_bits_of_the_module_forward(dropout: float) -> None:
    """The server's dispatch-free forward must not change a single prediction bit."""
    from softbits.nn.network import build_mlp, network_eval

    torch.manual_seed(0)
    net = build_mlp(12, 3, layers=3, neurons=40, dropout=dropout).eval()
    for n in (1, 7, 64):
        x = torch.randn(n, 12)
        with torch.inference_mode():
            assert torch.equal(network_eval(net, x), net(x))


def test_column_targets_train_like_flat_targets_and_other_shapes_are_refused() -> None:
    """y of shape [N, 1] must not broadcast against the [N] output into an [N, N] loss."""
    from softbits.training.train import fit_module

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3)).astype(np.float32)
    y = X @ np.array([1.0, -1.0, 0.5], dtype=np.float32)
    cfg = TrainConfig(method="fp", layers=1, neurons=8, epochs=2, device="cpu", seed=0)
    flat = fit_module(X, y, cfg, task="regression").fit
    column = fit_module(X, y[:, None], cfg, task="regression").fit
    assert flat.train_loss == column.train_loss
    with pytest.raises(ConfigError, match="one value per row"):
        fit_module(X, np.stack([y, y], axis=1), cfg, task="regression")


def test_train_json_history_has_one_entry_per_epoch_and_the_model_file_keeps_it(
        tmp_path, data_dir, capsys):
    import json

    from conftest import run_main

    path = tmp_path / "m.safetensors"
    code, out, err = run_main(capsys, "train", "--dataset", "diabetes", "--method", "bw-sq", "--bits", 2,
                              "--layers", 1, "--neurons", 8, "--epochs", 3, "--device", "cpu",
                              "--val-fraction", 0.2, "--save", path, "--json")
    assert code == 0, err
    history = json.loads(out)["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert all(set(h) == {"epoch", "train_loss", "val_loss", "temperature", "lr"} for h in history)
    assert history[-1]["temperature"] < history[0]["temperature"]
    loaded = TrainedModel.load(path)
    assert loaded.history is not None and loaded.history.epochs() == history
    assert loaded.history.best_epoch == loaded.metrics["best_epoch"]


def test_model_files_without_history_still_load(tmp_path, diabetes):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    model = train_dataset(diabetes, TrainConfig(method="fp", layers=1, neurons=8, epochs=2, device="cpu"))
    assert len(model.history.train_loss) == 2
    path = model.save(tmp_path / "new.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["softbits"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del header["history"]  # as written before the history was kept
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={"softbits": json.dumps(header)})
    assert TrainedModel.load(old).history is None
    header["history"] = {"train_loss": "nan"}
    save_file(tensors, str(old), metadata={"softbits": json.dumps(header)})
    with pytest.raises(SoftbitsError, match="history.train_loss must be a list of numbers"):
        TrainedModel.load(old)


def test_post_quantized_cells_of_the_protocol_equal_a_direct_training(data_dir):
    """One post-training path: a protocol task's Po-QQ row is the Po-QQ model ``train`` makes."""
    from softbits.data import split_and_scale
    from softbits.experiments.settings import Setting
    from softbits.experiments.tasks import TEST_PHASE, Evaluation, Task, run
    from softbits.training.train import train_on_split

    setting = Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 0.0)
    task = Task(dataset="diabetes", train_method="fp", train_bits=2, setting=setting,
                phase=TEST_PHASE, index=0, seed=3, device="cpu", data_dir=str(data_dir),
                evaluations=(Evaluation("fp", 2), Evaluation("po-qq", 2), Evaluation("po-mq", 3)))
    rows = {(r.key.method, r.key.bits): r.metrics.test for r in run(task).rows}
    ds = load_dataset("diabetes", data_dir=data_dir)
    split = split_and_scale(ds, seed=3)
    for method, bits in [("po-qq", 2), ("po-mq", 3)]:
        model = train_on_split(split, setting.train_config(method, bits, 3, "cpu"), task=ds.task,
                               feature_names=ds.feature_names)
        assert rows[(method, bits)].to_dict() == {k: model.metrics[k] for k in rows[(method, bits)].to_dict()}
        assert model.metrics["test_mse_fp"] == rows[("fp", 2)].test_mse
