"""Predictors behind the same codes (docs/predictors.md): trees on the codes, ``auto``'s choice,
the default unchanged, no test row in early stopping or the choice, the tree model in the model
file (loaded without executing code, checked against the model), predict = predict_codes = the
server's answer, and one-line refusals."""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

pytest.importorskip("lightgbm")

from softbits import TrainConfig, load_dataset, train_dataset  # noqa: E402
from softbits.data import split_and_scale  # noqa: E402
from softbits.device.spec import EncoderSpec  # noqa: E402
from softbits.device.wire import encode_payload  # noqa: E402
from softbits.errors import ConfigError, DataError  # noqa: E402
from softbits.training import predictors  # noqa: E402
from softbits.training.allocation import train_allocated  # noqa: E402
from softbits.training.estimators import SoftbitsClassifier, SoftbitsRegressor  # noqa: E402
from softbits.training.train import AUTO_MLP_WITHIN  # noqa: E402
from softbits.training.trained_model import TREES_KEY, TrainedModel  # noqa: E402

from conftest import assert_train_refuses, run_main, start_server, stop_server  # noqa: E402

TINY = dict(bits=3, layers=1, neurons=16, epochs=3, lr=0.02, device="cpu", seed=3)


@pytest.fixture(scope="module")
def diabetes():
    return load_dataset("diabetes")


@pytest.fixture(scope="module")
def gbdt_model(diabetes, tmp_path_factory):
    model = train_dataset(diabetes, TrainConfig(method="bw-sq", predictor="gbdt", **TINY))
    path = tmp_path_factory.mktemp("gbdt") / "bw-sq-gbdt.safetensors"
    model.save(path)
    return model, path


def test_the_default_predictor_is_the_mlp_and_keeps_the_config_form(diabetes):
    config = TrainConfig(method="bw-sq", **TINY)
    assert config.predictor == "mlp" and "predictor" not in config.to_dict()
    assert config.validation_share == 0.0
    model = train_dataset(diabetes, config)
    assert model.trees is None and model.predictor == "mlp"
    assert "predictor_val_loss" not in model.metrics


def test_gbdt_serves_the_codes_and_reports_both_candidates(gbdt_model, diabetes):
    model, _ = gbdt_model
    m = model.metrics
    assert model.predictor == "gbdt" and m["predictor"] == "gbdt"
    assert set(m["predictor_val_loss"]) == {"mlp", "gbdt"} and m["gbdt_rounds"] >= 1
    assert m["test_mse"] != m["test_mse_mlp"]
    split = split_and_scale(diabetes, seed=TINY["seed"])
    X_test = split.x_scaler.inverse(split.X_test)
    np.testing.assert_array_equal(model.predict(X_test), model.predict_codes(model.encode(X_test)))
    # the recorded test MSE is the trees' on the test split (standardized target)
    y_hat = model.y_scaler.transform(model.predict(X_test).reshape(-1, 1))[:, 0]
    assert np.mean((y_hat - split.y_test) ** 2) == pytest.approx(m["test_mse"], rel=1e-6)


def test_auto_keeps_the_candidate_with_the_lower_validation_loss(diabetes):
    model = train_dataset(diabetes, TrainConfig(method="bw-qq", predictor="auto", **TINY))
    losses = model.metrics["predictor_val_loss"]
    assert model.metrics["predictor"] == min(losses, key=losses.get) == model.predictor


def test_no_test_row_reaches_early_stopping_or_the_choice(diabetes, monkeypatch):
    """The trees see the codes of the training part only: fit and validation rows are the
    training rows' codes, disjoint, and together the whole training part."""
    seen = {}
    fit = predictors.GBDTPredictor.fit.__func__

    def spy(cls, X, y, X_val, y_val, **kwargs):
        seen.update(X=X, y=y, X_val=X_val, y_val=y_val)
        return fit(cls, X, y, X_val, y_val, **kwargs)

    monkeypatch.setattr(predictors.GBDTPredictor, "fit", classmethod(spy))
    config = TrainConfig(method="fp", predictor="auto", **TINY)
    model = train_dataset(diabetes, config)
    split = split_and_scale(diabetes, seed=config.seed)
    train_rows = {tuple(np.float32(r)) for r in split.X_train}
    test_rows = {tuple(np.float32(r)) for r in split.X_test}
    fit_rows = {tuple(np.float32(r)) for r in seen["X"]}
    val_rows = {tuple(np.float32(r)) for r in seen["X_val"]}
    assert not (fit_rows | val_rows) & test_rows
    assert fit_rows | val_rows == train_rows and not fit_rows & val_rows
    assert len(seen["X_val"]) == round(predictors.GBDT_VAL_FRACTION * len(split.X_train))
    assert model.metrics["predictor"] in ("mlp", "gbdt")


def test_the_model_file_keeps_the_trees_as_text_and_loads_them_back(gbdt_model, diabetes):
    model, path = gbdt_model
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["softbits"])
        text = f.get_tensor(TREES_KEY).numpy().tobytes()
    assert header["predictor"]["kind"] == "gbdt" and text.startswith(b"tree\n")
    assert header["config"]["predictor"] == "gbdt"
    loaded = TrainedModel.load(path)
    assert loaded.predictor == "gbdt"
    X = diabetes.X[:50]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_codes(loaded.encode(X)), model.predict(X))


def _rewrite(path, out, *, text: bytes | None = None, header_change=None, drop_trees=False):
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["softbits"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if text is not None:
        tensors[TREES_KEY] = torch.frombuffer(bytearray(text), dtype=torch.uint8)
    if drop_trees:
        del tensors[TREES_KEY]
    if header_change is not None:
        header_change(header)
    save_file(tensors, str(out), metadata={"softbits": json.dumps(header)})
    return out


def _original_text(path) -> bytes:
    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(TREES_KEY).numpy().tobytes()


@pytest.mark.parametrize("case, message", [
    ("not text", "not UTF-8 text"),
    ("other text", "not a LightGBM text model"),
    ("garbage", "does not parse"),
    ("no trees", "predictor and the file's tree tensor disagree"),
    ("other widths", "whose width allows 0..7"),
    ("features", "does not fit a model with codes"),
])
def test_a_bad_tree_model_is_one_line(gbdt_model, tmp_path, capsys, case, message):
    _, path = gbdt_model
    text = _original_text(path)
    out = tmp_path / "bad.safetensors"
    if case == "not text":
        _rewrite(path, out, text=b"\x80\x81 not a model")
    elif case == "other text":
        _rewrite(path, out, text=b"import os; os.system('echo owned')")
    elif case == "garbage":
        _rewrite(path, out, text=b"tree\nversion=v4\nnum_class=abc\n")
    elif case == "no trees":
        _rewrite(path, out, drop_trees=True)
    elif case == "other widths":  # the trees claim codes of a wider width than the model's 3 bits
        infos = next(line for line in text.split(b"\n") if line.startswith(b"feature_infos="))
        parts = infos[len(b"feature_infos="):].split(b" ")
        parts[0] = b"[0:15]"
        _rewrite(path, out, text=text.replace(infos, b"feature_infos=" + b" ".join(parts)))
    else:
        _rewrite(path, out, header_change=lambda h: h["predictor"].update(inputs="features"))
    with pytest.raises(DataError, match="is not a valid softbits model file"):
        TrainedModel.load(out)
    code, _, err = run_main(capsys, "predict", out, "--input", tmp_path / "none.csv")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_an_oversized_tree_tensor_is_refused_before_it_is_read(gbdt_model, tmp_path, monkeypatch):
    _, path = gbdt_model
    monkeypatch.setattr("softbits.training.trained_model.MAX_GBDT_BYTES", 1000)
    with pytest.raises(DataError, match="a tree model is at most 1000 bytes"):
        TrainedModel.load(path)


def test_train_cli_reports_the_predictor_and_refuses_bad_ones(tmp_path, capsys):
    code, out, err = run_main(capsys, "train", "--dataset", "diabetes", "--epochs", "2", "--layers", "1",
                              "--neurons", "8", "--device", "cpu", "--bits", "2", "--predictor", "auto",
                              "--json", "--save", tmp_path / "m.safetensors")
    assert code == 0, err
    result = json.loads(out)
    assert result["predictor"] in ("mlp", "gbdt") and result["predictor"] in result["predictor_val_loss"]
    assert {"bw-sq+mlp", "bw-sq+gbdt"} <= set(result["auto_val_loss"])
    assert result["settings"]["predictor"] == "auto"
    assert TrainedModel.load(tmp_path / "m.safetensors").predictor == result["predictor"]
    assert_train_refuses(capsys, tmp_path / "x.safetensors", ["--predictor", "forest"],
                         "unknown predictor 'forest'; choose one of: mlp, ensemble, gbdt, auto")
    assert_train_refuses(capsys, tmp_path / "x.safetensors", ["--method", "bw-sq-ens", "--predictor", "gbdt"],
                         "predictor gbdt replaces the network")


@pytest.mark.parametrize("args", [["--predictor", "gbdt"], ["--method", "bw-tq"]])
def test_a_missing_gbdt_extra_is_one_line_before_training(tmp_path, capsys, monkeypatch, args):
    real = predictors.importlib.util.find_spec
    monkeypatch.setattr(predictors.importlib.util, "find_spec",
                        lambda name, *a: None if name == "lightgbm" else real(name, *a))
    assert_train_refuses(capsys, tmp_path / "x.safetensors", args, "pip install 'softbits[gbdt]'")


def test_split_point_thresholds_come_from_trees_on_the_training_part_only(diabetes, tmp_path, monkeypatch):
    """bw-tq: float32 trees fit on the training part less the validation share (their own
    early stopping carved from it), and the thresholds are the gain-weighted quantiles of their
    split points; the model file round-trips and encodes as its quantizer does."""
    seen = []
    fit = predictors.GBDTPredictor.fit.__func__

    def spy(cls, X, y, X_val, y_val, **kwargs):
        seen.append((kwargs["inputs"], X, X_val))
        return fit(cls, X, y, X_val, y_val, **kwargs)

    monkeypatch.setattr(predictors.GBDTPredictor, "fit", classmethod(spy))
    monkeypatch.setattr(predictors, "_SPLITS", type(predictors._SPLITS)())  # no fit kept from another test
    config = TrainConfig(method="bw-tq", predictor="gbdt", **TINY)
    model = train_dataset(diabetes, config)
    (inputs, X_fit, X_val), codes_fit = seen[0], seen[1]
    assert inputs == "features" and codes_fit[0] == "codes"  # split points first, then the serving trees
    split = split_and_scale(diabetes, seed=config.seed)
    test_rows = {tuple(np.float32(r)) for r in split.X_test}
    train_rows = {tuple(np.float32(r)) for r in split.X_train}
    used = {tuple(np.float32(r)) for r in np.concatenate([X_fit, X_val])}
    assert used < train_rows and not used & test_rows
    q = model.module.quantizer
    assert q.init == "splits" and not q.trainable
    y_fit, y_val = _targets(split, X_fit), _targets(split, X_val)
    trees = predictors.GBDTPredictor.fit(X_fit, y_fit, X_val, y_val, task="regression", n_outputs=1,
                                         inputs="features", seed=config.seed)
    from softbits.nn.quantizers import split_thresholds

    expected = split_thresholds(X_fit, config.bits, trees.split_points(X_fit.shape[1]))
    np.testing.assert_allclose(q.thresholds.double().numpy(), expected, rtol=1e-6)
    path = model.save(tmp_path / "tq.safetensors")
    again = TrainedModel.load(path)
    X = diabetes.X[:40]
    np.testing.assert_array_equal(again.encode(X), model.encode(X))
    np.testing.assert_allclose(again.predict(X), model.predict(X), rtol=1e-6)


def _targets(split, rows):
    """The standardized targets of ``rows`` of ``split``'s training part."""
    index = {tuple(np.float32(r)): i for i, r in enumerate(split.X_train)}
    return np.asarray(split.y_train).ravel()[[index[tuple(np.float32(r))] for r in rows]]


def test_estimators_take_the_predictor():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4))
    y = X[:, 0] * 2 + np.sin(3 * X[:, 1])
    reg = SoftbitsRegressor(predictor="gbdt", bits=3, layers=1, neurons=8, epochs=2, device="cpu").fit(X, y)
    assert reg.model_.predictor == "gbdt" and reg.get_params()["predictor"] == "gbdt"
    assert reg.predict(X).shape == (300,)
    labels = np.where(y > 0, "hi", "lo")
    clf = SoftbitsClassifier(predictor="gbdt", bits=3, layers=1, neurons=8, epochs=2, device="cpu").fit(X, labels)
    assert set(clf.predict(X)) <= {"hi", "lo"} and clf.score(X, labels) > 0.7
    with pytest.raises(ConfigError, match="unknown predictor"):
        SoftbitsRegressor(predictor="forest").fit(X, y)


def test_stacks_refuse_tree_predictors():
    from softbits.training.stacked import can_stack

    check = can_stack([TrainConfig(predictor="gbdt"), TrainConfig()])
    assert not check and "one at a time" in check.reason


@pytest.fixture(scope="module")
def trees_only_model(diabetes, tmp_path_factory):
    """Quantile codes with trees alone: no network in the model or its file."""
    model = train_dataset(diabetes, TrainConfig(method="bw-qq", predictor="gbdt", **TINY))
    return model, model.save(tmp_path_factory.mktemp("trees") / "bw-qq-gbdt.safetensors")


@pytest.mark.parametrize("served", ["gbdt_model", "trees_only_model"])
def test_the_server_answers_what_predict_gives(request, diabetes, served):
    model, path = request.getfixturevalue(served)
    spec = EncoderSpec.from_model(model)
    # float32 rows, as a device holds them (quantile thresholds sit on diabetes' float64 values)
    X = diabetes.X[:12].astype(np.float32).astype(np.float64)
    env = dict(os.environ, NO_COLOR="1")
    proc, urls = start_server(path, env)
    try:
        post = urllib.request.Request(urls["http"], data=encode_payload(spec, X), method="POST",
                                      headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(post, timeout=30) as response:
            body = json.loads(response.read())
    finally:
        stop_server(proc)
    assert body["model_id"] == spec.model_id
    np.testing.assert_allclose(body["predictions"], model.predict(X), rtol=0, atol=0)


def test_gbdt_trains_on_mixed_widths_and_their_codes(diabetes):
    widths = (3, 0, 2, 4, 1, 3, 2, 2, 3, 1)
    config = replace(TrainConfig(method="bw-qq", predictor="gbdt", **TINY), bits_per_feature=widths)
    model = train_dataset(diabetes, config)
    codes = model.encode(diabetes.X[:40])
    assert (codes[:, 1] == 0).all()
    np.testing.assert_array_equal(model.predict_codes(codes), model.predict(diabetes.X[:40]))


def test_a_budget_is_allocated_for_the_trees_that_will_serve(diabetes):
    from softbits.training.allocation import train_allocated

    config = TrainConfig(method="bw-qq", predictor="gbdt", **TINY)
    split = split_and_scale(diabetes, seed=config.seed)
    model = train_allocated(split, config, 20, task=diabetes.task, feature_names=diabetes.feature_names,
                            dataset=diabetes.name)
    record = model.allocation
    assert record["scored_by"] == "gbdt" and record["code_bits"] <= 20
    assert model.trees is not None and model.config.bits_per_feature is not None
    assert sum(model.config.bits_per_feature) == record["code_bits"]
    mlp = train_allocated(split, replace(config, predictor="mlp"), 20, task=diabetes.task,
                          feature_names=diabetes.feature_names, dataset=diabetes.name)
    assert mlp.allocation["scored_by"] == "mlp" and mlp.trees is None


def test_frontier_with_trees_stores_its_own_keys_beside_the_mlps(tmp_path, capsys):
    """Quantile codes + trees and the MLP frontier share one store without sharing a key; a
    uniform tree point equals a plain ``train --predictor gbdt`` on the same split."""
    import sqlite3

    import pandas as pd

    from softbits.experiments.frontier import run_frontier

    store = tmp_path / "f.sqlite"
    net = {"layers": 1, "neurons": 8, "epochs": 2}
    trees = run_frontier(store=store, out_dir=tmp_path / "trees", dataset="diabetes", method="bw-qq",
                         budgets=["20"], seeds=1, jobs=1, device="cpu", predictor="gbdt", **net)
    table = pd.read_csv(trees.paths.csv)
    assert list(zip(table["kind"], table["budget_bits"], strict=True)) == [
        ("fp", 320), ("uniform", 20), ("allocated", 20)]
    assert set(table["method"]) == {"bw-qq+gbdt"}
    mlp = run_frontier(store=store, out_dir=tmp_path / "mlp", dataset="diabetes", method="bw-qq",
                       budgets=["20"], seeds=1, jobs=1, device="cpu", **net)
    assert mlp.rows_added == 3
    with sqlite3.connect(store) as conn:
        methods = sorted(m for (m,) in conn.execute("SELECT DISTINCT method FROM results"))
        uniform = conn.execute("SELECT metrics FROM results WHERE method = 'bw-qq+gbdt' AND bits = 2").fetchone()
    assert methods == ["bw-qq", "bw-qq+gbdt", "fp", "fp+gbdt"]
    code, out, err = run_main(capsys, "train", "--dataset", "diabetes", "--method", "bw-qq", "--bits", "2",
                              "--layers", "1", "--neurons", "8", "--epochs", "2", "--seed", "42",
                              "--device", "cpu", "--predictor", "gbdt", "--json")
    assert code == 0, err
    assert json.loads(out)["test_mse"] == pytest.approx(json.loads(uniform[0])["test_mse"], rel=1e-9)
    code, _, err = run_main(capsys, "frontier", "--dataset", "diabetes", "--predictor", "forest",
                            "--store", tmp_path / "x.sqlite")
    assert code == 2 and "unknown predictor 'forest'" in err and not (tmp_path / "x.sqlite").exists()


def test_auto_also_tries_bins_with_trees_and_keeps_the_best_on_validation(diabetes, tmp_path, monkeypatch):
    """bw-sq with auto screens the fixed-threshold candidates (bw-bq, bw-tq) by trees on their
    codes, on the same validation rows, trains the best of them beside bw-sq, and keeps the least
    of all validation losses; the model round-trips. (Here the best one's network trains
    whatever bw-sq's MLP scored: see the next test for when it does not.)"""
    from softbits.training import train as train_module

    monkeypatch.setattr(train_module, "AUTO_MLP_WITHIN", float("inf"))
    trained: list[str] = []
    single = train_module.train_single

    def recording(split, config, **kwargs):
        trained.append(config.method)
        return single(split, config, **kwargs)

    monkeypatch.setattr(train_module, "train_single", recording)
    model = train_dataset(diabetes, TrainConfig(method="bw-sq", predictor="auto", **TINY))
    losses = model.metrics["auto_val_loss"]
    fixed = {m: losses[f"{m}+gbdt"] for m in ("bw-bq", "bw-tq")}
    kept = min(fixed, key=fixed.get)
    assert trained == ["bw-sq", kept]  # one network per trained candidate: two, not three
    assert set(losses) == {"bw-sq+mlp", "bw-sq+gbdt", "bw-bq+gbdt", "bw-tq+gbdt", f"{kept}+mlp"}
    assert model.metrics["auto_choice"] == min(losses, key=losses.get)
    assert model.metrics["auto_choice"] == f"{model.config.method}+{model.predictor}"
    path = model.save(tmp_path / "auto.safetensors")
    X = diabetes.X[:50]
    np.testing.assert_allclose(TrainedModel.load(path).predict(X), model.predict(X), rtol=1e-6)


@pytest.mark.parametrize("within", [-1.0, float("inf")])
def test_auto_trains_the_fixed_codes_network_only_where_the_methods_mlp_came_close(diabetes, monkeypatch, within):
    """The screened candidate's network trains only where bw-sq's MLP came within AUTO_MLP_WITHIN
    of bw-sq's trees on the validation rows; otherwise its trees alone are the candidate."""
    from softbits.training import train as train_module

    networks: list[str] = []
    fit_module = train_module.fit_module

    def counting(X, y, config, **kwargs):
        networks.append(config.method)
        return fit_module(X, y, config, **kwargs)

    monkeypatch.setattr(train_module, "fit_module", counting)
    monkeypatch.setattr(train_module, "AUTO_MLP_WITHIN", within)
    model = train_dataset(diabetes, TrainConfig(method="bw-sq", predictor="auto", **TINY))
    losses = model.metrics["auto_val_loss"]
    kept = min(("bw-bq", "bw-tq"), key=lambda m: losses[f"{m}+gbdt"])
    assert networks == (["bw-sq"] if within < 0 else ["bw-sq", kept])
    assert (f"{kept}+mlp" in losses) == (within > 0)
    assert model.metrics["auto_choice"] == min(losses, key=losses.get)


@pytest.mark.parametrize("method", ["bw-qq", "bw-tq", "fp"])
def test_trees_on_fixed_codes_train_no_network(diabetes, tmp_path, monkeypatch, method):
    """gbdt behind codes no training moves (fixed thresholds, fp's features): no network trains;
    the quantizer and trees are those a training with the network builds, the file has no
    network, and predict, predict_codes and the loaded model agree."""
    from softbits.training import train as train_module

    config = TrainConfig(method=method, predictor="gbdt", **TINY)
    with_network = train_module.train_single(split_and_scale(diabetes, seed=config.seed),
                                             replace(config, predictor="auto"), task=diabetes.task,
                                             feature_names=diabetes.feature_names)

    def no_training(*args, **kwargs):
        raise AssertionError("a network trained")

    monkeypatch.setattr(train_module, "fit_module", no_training)
    model = train_dataset(diabetes, config)
    assert model.module.network is None and model.history is None and model.predictor == "gbdt"
    m = model.metrics
    assert m["epochs"] == 0 and m["train_seconds"] == 0.0 and "test_mse_mlp" not in m
    assert m["predictor_val_loss"] == {"gbdt": with_network.metrics["predictor_val_loss"]["gbdt"]}
    if method != "fp":
        np.testing.assert_array_equal(model.module.quantizer.sorted_thresholds(),
                                      with_network.module.quantizer.sorted_thresholds())
    path = model.save(tmp_path / "trees.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["softbits"])
        assert header["network"] is None and not [k for k in f.keys() if k.startswith("network.")]
    loaded = TrainedModel.load(path)
    X = diabetes.X[:40]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    if method != "fp":
        np.testing.assert_array_equal(loaded.predict_codes(loaded.encode(X)), model.predict(X))
    with pytest.raises(DataError, match="no network"):
        loaded.module(torch.zeros(1, diabetes.X.shape[1]))


def test_only_trees_on_fixed_codes_may_have_no_network(gbdt_model, diabetes, tmp_path, capsys):
    """A file whose header has no network is refused, one line, unless trees serve fixed codes."""
    trees_only = train_dataset(diabetes, TrainConfig(method="bw-qq", predictor="gbdt", **TINY))
    path = trees_only.save(tmp_path / "trees.safetensors")

    def no_predictor(header):
        del header["predictor"]

    _, learned = gbdt_model  # bw-sq: its codes come from a trained network
    for source, change, drop in [(path, no_predictor, True),
                                 (learned, lambda h: h.update(network=None), False)]:
        out = _rewrite(source, tmp_path / "bad.safetensors", header_change=change, drop_trees=drop)
        code, _, err = run_main(capsys, "predict", out, "--input", tmp_path / "none.csv")
        assert code == 2 and "network is null" in err and len(err.strip().splitlines()) == 1, err


def test_screening_loss_is_the_trained_candidates_tree_loss(diabetes):
    """The screen fits the trees train_single fits (same rows, quantizer, trees): its loss is the
    one the trained candidate records, so screening and training rank the candidates alike."""
    from softbits.training.train import screen_loss, train_single

    split = split_and_scale(diabetes, seed=0)
    for method in ("bw-bq", "bw-tq"):
        config = TrainConfig(method=method, predictor="auto", **TINY)
        model = train_single(split, config, task=diabetes.task, feature_names=diabetes.feature_names)
        loss, trees = screen_loss(split, config, task=diabetes.task, n_outputs=1)
        assert loss == pytest.approx(model.metrics["predictor_val_loss"]["gbdt"], rel=1e-12)
        reused = train_single(split, config, task=diabetes.task, feature_names=diabetes.feature_names,
                              screened=trees)
        assert reused.metrics["predictor_val_loss"] == model.metrics["predictor_val_loss"]
        assert reused.metrics["test_mse"] == model.metrics["test_mse"]


def test_auto_with_a_budget_allocates_each_candidate_for_itself(diabetes):
    model = train_allocated(split_and_scale(diabetes, seed=0),
                            replace(TrainConfig(method="bw-sq", predictor="auto", **TINY), bits=2), 20,
                            task=diabetes.task, feature_names=diabetes.feature_names)
    assert sum(model.allocation["bits_per_feature"].values()) <= 20
    losses = model.metrics["auto_val_loss"]
    screened = {"bw-bq+gbdt", "bw-tq+gbdt", "bw-bq+gbdt (uniform)"}  # 20 bits = 2 per feature
    assert screened | {"bw-sq+mlp", "bw-sq+gbdt"} <= set(losses)
    kept = min(screened, key=losses.get)
    tried_mlp = losses["bw-sq+mlp"] <= (1 + AUTO_MLP_WITHIN) * losses["bw-sq+gbdt"]
    assert set(losses) == screened | {"bw-sq+mlp", "bw-sq+gbdt"} | ({kept.replace("+gbdt", "+mlp")} if tried_mlp else set())
    assert model.metrics["auto_choice"] == min(losses, key=losses.get)
    uniform = model.metrics["auto_choice"].endswith("(uniform)")
    assert (model.allocation["allocator"] == "uniform") == uniform
    if uniform:
        assert set(model.allocation["bits_per_feature"].values()) == {2}


def test_auto_at_a_budget_that_is_not_n_bits_per_feature_has_no_uniform_candidate(diabetes):
    model = train_allocated(split_and_scale(diabetes, seed=0),
                            replace(TrainConfig(method="bw-sq", predictor="auto", **TINY), bits=3), 25,
                            task=diabetes.task, feature_names=diabetes.feature_names)
    assert not any("uniform" in name for name in model.metrics["auto_val_loss"])
    assert model.allocation["allocator"] == "greedy-removal"


def test_fixed_thresholds_scored_by_trees_start_wider_and_train_no_probe(diabetes, monkeypatch):
    """bw-bq with trees: the probe is the quantizer alone (no network trains) and starts at the
    mean width + 4 (10 bits for a 6-bit average), so a feature can keep more than 8 bits."""
    from softbits.training import allocation

    def no_training(*args, **kwargs):
        raise AssertionError("the probe network trained")

    monkeypatch.setattr(allocation, "fit_module", no_training)
    split = split_and_scale(diabetes, seed=0)
    chosen = allocation.allocate(split.X_train, split.y_train,
                                 replace(TrainConfig(method="bw-bq", predictor="gbdt", **TINY), bits=6), 60,
                                 task=diabetes.task)
    assert chosen.start_bits == 10 and chosen.scored_by == "gbdt"
    assert sum(chosen.widths) <= 60 and max(chosen.widths) <= 10


def test_the_search_ranks_with_probe_trees_and_the_serving_trees_keep_their_settings(diabetes, monkeypatch):
    """The tree-scored search's trees use ``PROBE_GBDT_PARAMS`` (faster, they only rank the
    steps); the trees that serve the chosen widths are fitted with the predictor's own."""
    from softbits.training import allocation

    used = []
    fit = predictors.GBDTPredictor.fit.__func__

    def spy(cls, *args, **kwargs):
        used.append(kwargs.get("params", predictors.GBDT_PARAMS))
        return fit(cls, *args, **kwargs)

    monkeypatch.setattr(predictors.GBDTPredictor, "fit", classmethod(spy))
    assert allocation.PROBE_GBDT_PARAMS is not None and allocation.PROBE_GBDT_PARAMS != predictors.GBDT_PARAMS
    split = split_and_scale(diabetes, seed=0)
    model = train_allocated(split, replace(TrainConfig(method="bw-bq", predictor="gbdt", **TINY), bits=2), 12,
                            task=diabetes.task, feature_names=diabetes.feature_names)
    assert model.allocation["scored_by"] == "gbdt"
    assert used == [allocation.PROBE_GBDT_PARAMS, predictors.GBDT_PARAMS]


def test_predictor_ensemble_is_the_ensemble_method():
    config = TrainConfig(method="bw-sq", predictor="ensemble", members=3, **TINY)
    assert (config.method, config.predictor, config.members) == ("bw-sq-ens", "mlp", 3)
    with pytest.raises(ConfigError, match="ensemble form"):
        TrainConfig(method="lsq", predictor="ensemble", **TINY)


def test_frontier_takes_predictor_ensemble_as_the_ensemble_method(tmp_path):
    from softbits.experiments.frontier import run_frontier

    with pytest.raises(ConfigError, match="ensemble form"):
        run_frontier(dataset="diabetes", method="sq", predictor="ensemble", budgets="1",
                     store=tmp_path / "f.sqlite")


def test_split_points_are_fitted_once_per_rows_and_settings(monkeypatch):
    """auto builds bw-tq on the same rows when screening and when training: one tree fit."""
    from softbits.training import predictors

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(400, 3)), rng.normal(size=400)
    fits = []
    fit = predictors.GBDTPredictor.fit.__func__

    def counting(cls, *args, **kwargs):
        fits.append(1)
        return fit(cls, *args, **kwargs)

    monkeypatch.setattr(predictors.GBDTPredictor, "fit", classmethod(counting))
    monkeypatch.setattr(predictors, "_SPLITS", type(predictors._SPLITS)())
    first = predictors.split_points(X, y, task="regression", n_outputs=1, seed=3)
    assert predictors.split_points(X.copy(), y.copy(), task="regression", n_outputs=1, seed=3) is first
    assert len(fits) == 1
    y2 = y.copy()
    y2[0] += 1.0
    predictors.split_points(X, y2, task="regression", n_outputs=1, seed=3)
    predictors.split_points(X, y, task="regression", n_outputs=1, seed=4)
    assert len(fits) == 3


@pytest.mark.parametrize("task,n_outputs", [("regression", 1), ("classification", 3)])
def test_split_points_from_the_text_model_are_those_of_the_json_dump(task, n_outputs):
    """The text model gives the same split values as LightGBM's JSON dump of the same trees,
    and the same gain per value up to the text's digits."""
    rng = np.random.default_rng(5)
    X = np.round(rng.normal(size=(600, 4)), 1)  # repeated values: several splits share one
    y = X[:, 0] + np.sin(3 * X[:, 1]) + 0.1 * rng.normal(size=600)
    if task == "classification":
        y = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    trees = predictors.GBDTPredictor.fit(X[:500], y[:500], X[500:], y[500:], task=task, n_outputs=n_outputs,
                                         inputs="features", seed=0)
    expected: list[dict[float, float]] = [{} for _ in range(4)]
    stack = [tree["tree_structure"] for tree in trees.booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            mine = expected[node["split_feature"]]
            mine[node["threshold"]] = mine.get(node["threshold"], 0.0) + node["split_gain"]
            stack += [node["left_child"], node["right_child"]]
    points = trees.split_points(4)
    assert sum(len(values) for values, _ in points) > 20
    for (values, gains), mine in zip(points, expected, strict=True):
        np.testing.assert_array_equal(values, sorted(mine))
        np.testing.assert_allclose(gains, [mine[v] for v in sorted(mine)], rtol=1e-6)
