"""The batched MLP block and ``bw-sq-ens``: independent members, mean loss and prediction, one
shared quantizer (so one device encoder), and the model file / serve / CLI / estimator paths."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_diabetes
from torch import nn

from softbits import TrainConfig, load_dataset, train_dataset
from softbits.device.encode import encode
from softbits.device.spec import EncoderSpec
from softbits.errors import ConfigError
from softbits.experiments.settings import Setting, read_settings_table
from softbits.nn.batched import BatchedLinear, BatchedMLP
from softbits.nn.network import build_mlp, build_network, network_eval
from softbits.training.engine import _loss
from softbits.training.estimators import SoftbitsRegressor
from softbits.training.methods import DEFAULT_MEMBERS, get_method
from softbits.training.train import build_model
from softbits.training.trained_model import TrainedModel

from conftest import run_main

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper_results.csv"
TINY = dict(bits=3, layers=2, neurons=16, epochs=3, lr=0.01, device="cpu", seed=3)


def _linears(block: nn.Sequential) -> list[BatchedLinear]:
    return [m for m in block if isinstance(m, BatchedLinear)]


# ---- the block ------------------------------------------------------------------------------

def test_members_draw_their_own_init_from_the_linear_default() -> None:
    torch.manual_seed(0)
    block = BatchedMLP(64, 1, layers=2, neurons=256, dropout=0.0, members=4)
    first = _linears(block)[0]
    assert first.weight.shape == (4, 64, 256) and first.bias.shape == (4, 256)
    for layer in _linears(block):
        w = layer.weight.detach()
        for k in range(1, 4):
            assert not torch.equal(w[0], w[k]) and not torch.equal(layer.bias[0], layer.bias[k])
    # nn.Linear's default: U(±1/sqrt(fan_in)) for weight and bias, so std = bound / sqrt(3)
    bound = 1 / math.sqrt(64)
    w = first.weight.detach()
    assert w.abs().max() <= bound and abs(float(w.std()) - bound / math.sqrt(3)) < 0.02 * bound
    reference = nn.Linear(64, 256).weight.detach()
    assert abs(float(w.std()) - float(reference.std())) < 0.02 * bound


@pytest.mark.parametrize("per_member_input", [False, True])
def test_member_gradients_do_not_touch_other_members(per_member_input: bool) -> None:
    torch.manual_seed(1)
    K = 3
    block = BatchedMLP(5, 2, layers=2, neurons=8, dropout=0.3, members=K)
    x = torch.randn(K, 10, 5) if per_member_input else torch.randn(10, 5)
    out = block(x)
    assert out.shape == (K, 10, 2)
    out[1].pow(2).mean().backward()
    for layer in _linears(block):
        for p in (layer.weight, layer.bias):
            assert p.grad[1].abs().sum() > 0
            assert torch.all(p.grad[0] == 0) and torch.all(p.grad[2] == 0)


def _copy_into_block(mlp: nn.Sequential, block: BatchedMLP, k: int) -> None:
    with torch.no_grad():
        for lin, blin in zip([m for m in mlp if isinstance(m, nn.Linear)], _linears(block), strict=True):
            blin.weight[k].copy_(lin.weight.T)
            blin.bias[k].copy_(lin.bias)


def test_one_member_block_is_the_plain_mlp() -> None:
    torch.manual_seed(2)
    mlp = build_mlp(7, 3, layers=3, neurons=20, dropout=0.0)
    block = BatchedMLP(7, 3, layers=3, neurons=20, dropout=0.0, members=1)
    _copy_into_block(mlp, block, 0)
    x = torch.randn(50, 7)
    torch.testing.assert_close(block(x)[0], mlp(x))
    torch.testing.assert_close(block(x.unsqueeze(0))[0], mlp(x))


def test_per_member_inputs_reach_only_their_member() -> None:
    torch.manual_seed(3)
    mlps = [build_mlp(4, 1, layers=2, neurons=6, dropout=0.0) for _ in range(3)]
    block = BatchedMLP(4, 1, layers=2, neurons=6, dropout=0.0, members=3)
    for k, mlp in enumerate(mlps):
        _copy_into_block(mlp, block, k)
    x = torch.randn(3, 9, 4)
    out = block(x)
    for k, mlp in enumerate(mlps):
        torch.testing.assert_close(out[k], mlp(x[k]))


# ---- the ensemble: loss, prediction, eval fast path ------------------------------------------

def test_ensemble_trains_on_members_and_predicts_their_mean() -> None:
    torch.manual_seed(4)
    net = build_network(6, 1, layers=2, neurons=12, dropout=0.2, members=5)
    x = torch.randn(30, 6)
    net.train()
    assert net(x).shape == (5, 30, 1)
    net.eval()
    members = nn.Sequential(*list(net)[:-1])(x)  # the block without its mean
    assert members.shape == (5, 30, 1)
    assert torch.equal(net(x), members.mean(0))


def test_training_loss_is_the_members_mean_loss() -> None:
    torch.manual_seed(5)
    y = torch.randn(20)
    out = torch.randn(4, 20, 1)
    expected = torch.stack([nn.functional.mse_loss(out[k, :, 0], y) for k in range(4)]).mean()
    torch.testing.assert_close(_loss(out, y, "regression"), expected)
    labels = torch.randint(0, 3, (20,))
    logits = torch.randn(4, 20, 3)
    expected = torch.stack([nn.functional.cross_entropy(logits[k], labels) for k in range(4)]).mean()
    torch.testing.assert_close(_loss(logits, labels, "classification"), expected)


@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_network_eval_has_the_bits_of_the_ensemble_forward(dropout: float) -> None:
    torch.manual_seed(6)
    net = build_network(12, 3, layers=3, neurons=40, dropout=dropout, members=4).eval()
    with torch.inference_mode():
        for n in (1, 7, 300):
            x = torch.randn(n, 12)
            assert torch.equal(network_eval(net, x), net(x))


# ---- method, config and the trained model --------------------------------------------------

def test_config_members_default_range_and_refusal() -> None:
    assert get_method("bw-sq-ens").ensemble and get_method("bw-sq-ens").display == "Bw-SQ-Ens"
    assert TrainConfig(method="bw-sq-ens").members == DEFAULT_MEMBERS
    assert TrainConfig(method="bw-sq-ens", members=3).members == 3
    assert TrainConfig(method="bw-sq").members == 1
    assert TrainConfig.from_dict(TrainConfig(method="bw-sq-ens", members=3).to_dict()).members == 3
    with pytest.raises(ConfigError, match="members must be an integer"):
        TrainConfig(method="bw-sq-ens", members=0)
    with pytest.raises(ConfigError, match="members must be an integer"):
        TrainConfig(method="bw-sq-ens", members=10**6)
    with pytest.raises(ConfigError, match="bw-sq trains one network"):
        TrainConfig(method="bw-sq", members=3)


def test_absurd_ensemble_is_refused_before_building() -> None:
    cfg = TrainConfig(method="bw-sq-ens", members=1000, layers=10, neurons=8192)
    with pytest.raises(ConfigError, match="GiB"):
        build_model(cfg, 20, 1, device=torch.device("cpu"))


def test_ensemble_shares_one_quantizer_and_its_encoder() -> None:
    cfg = TrainConfig(method="bw-sq-ens", members=3, **TINY)
    module = build_model(cfg, 10, 1)
    assert sum(isinstance(m, type(module.quantizer)) for m in module.modules()) == 1
    assert module.network.members == 3

    ds = load_dataset("diabetes")
    model = train_dataset(ds, cfg)
    X = ds.X.astype(np.float32).astype(np.float64)
    spec = EncoderSpec.from_model(model)
    np.testing.assert_array_equal(encode(spec, X), model.encode(X))
    thresholds = model.module.quantizer.sorted_thresholds()
    assert spec.n_features == 10 and spec.bits == 3 and thresholds.shape == (10, 7)


def test_ensemble_model_file_round_trip_and_server_path(tmp_path: Path) -> None:
    ds = load_dataset("diabetes")
    model = train_dataset(ds, TrainConfig(method="bw-sq-ens", members=3, dropout=0.2, **TINY))
    X = ds.X[:60]
    pred = model.predict(X)
    # the server's path (codes → decode → dispatch-free eval network) gives the module's bits
    np.testing.assert_array_equal(model.predict_codes(model.encode(X)), pred)
    path = model.save(tmp_path / "ens.safetensors")
    loaded = TrainedModel.load(path)
    assert loaded.config.members == 3 and loaded.module.network.members == 3
    np.testing.assert_array_equal(loaded.predict(X), pred)
    np.testing.assert_array_equal(loaded.predict_codes(loaded.encode(X)), pred)


def test_classifier_ensemble_averages_logits() -> None:
    ds = load_dataset("breast_cancer")
    model = train_dataset(ds, TrainConfig(method="bw-sq-ens", members=3, bits=2, layers=2,
                                          neurons=16, epochs=10, lr=3e-3, device="cpu", seed=1))
    assert model.metrics["test_accuracy"] > 0.85
    X = torch.as_tensor(model.x_scaler.transform(ds.X[:40]), dtype=torch.float32)
    module = model.module.eval()
    with torch.no_grad():
        members = nn.Sequential(*list(module.network)[:-1])(module.quantizer(X))
        assert torch.equal(module(X), members.mean(0))
    np.testing.assert_array_equal(model.predict(ds.X[:40]), members.mean(0).argmax(-1).numpy())
    np.testing.assert_array_equal(model.predict_codes(model.encode(ds.X[:40])), model.predict(ds.X[:40]))


def test_plain_model_file_still_builds_a_plain_mlp(tmp_path: Path) -> None:
    ds = load_dataset("diabetes")
    model = train_dataset(ds, TrainConfig(method="bw-sq", **TINY))
    loaded = TrainedModel.load(model.save(tmp_path / "plain.safetensors"))
    assert all(not isinstance(m, BatchedLinear) for m in loaded.module.network)
    np.testing.assert_array_equal(loaded.predict(ds.X[:20]), model.predict(ds.X[:20]))


def test_estimator_takes_method_and_members() -> None:
    X, y = load_diabetes(return_X_y=True)
    est = SoftbitsRegressor(method="bw-sq-ens", members=2, bits=3, layers=2, neurons=16,
                            epochs=20, lr=3e-3, device="cpu").fit(X, y)
    assert est.get_params()["members"] == 2 and est.model_.config.members == 2
    pred = est.predict(X)
    assert np.isfinite(pred).all() and est.score(X, y) > 0.1
    np.testing.assert_array_equal(est.model_.predict_codes(est.transform(X)), pred)
    with pytest.raises(ConfigError, match="one network"):
        SoftbitsRegressor(method="bw-sq", members=2, device="cpu").fit(X, y)


def test_settings_table_lends_the_bw_sq_row_to_the_ensemble(tmp_path: Path) -> None:
    if not REFERENCE.exists():
        pytest.skip("reference table not found")
    chosen = read_settings_table(REFERENCE, [("cpu_act", "Bw-SQ-Ens", 4), ("cpu_act", "Bw-SQ", 4)])
    assert chosen[("cpu_act", "Bw-SQ-Ens", 4)] == chosen[("cpu_act", "Bw-SQ", 4)]
    assert chosen[("cpu_act", "Bw-SQ-Ens", 4)] == Setting(0.001, 6, 128, 50, 0.001, 0.0, 0.0)
    own = tmp_path / "own.csv"
    own.write_text("dataset,method,bits,learning_rate,hidden_layers,hidden_neurons,num_epochs,"
                   "decrease_factor,dropout_rate,weight_decay\n"
                   "cpu_act,Bw-SQ,4,0.001,6,128,50,0.001,0.0,0.0\n"
                   "cpu_act,Bw-SQ-Ens,4,0.0001,5,64,30,0.001,0.0,0.0\n")
    assert read_settings_table(own, [("cpu_act", "Bw-SQ-Ens", 4)])[("cpu_act", "Bw-SQ-Ens", 4)] \
        == Setting(0.0001, 5, 64, 30, 0.001, 0.0, 0.0)
    with pytest.raises(ConfigError, match="cpu_act/Bw-SQ-Ens/3"):
        read_settings_table(own, [("cpu_act", "Bw-SQ-Ens", 3)])


# ---- the command line ----------------------------------------------------------------------

def _run(cmd: list[str], env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)


def test_cli_train_save_predict(softbits_cmd, cli_env, capsys, tmp_path: Path) -> None:
    model_path = tmp_path / "ens.safetensors"
    r = _run(softbits_cmd, cli_env, "train", "--dataset", "diabetes", "--method", "bw-sq-ens",
             "--members", 3, "--bits", 3, "--layers", 2, "--neurons", 16, "--epochs", 2,
             "--device", "cpu", "--save", model_path, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["method"] == "bw-sq-ens" and out["members"] == 3 and out["settings"]["members"] == 3
    ds = load_dataset("diabetes")
    rows = tmp_path / "rows.csv"
    pd.DataFrame(ds.X[:15], columns=ds.feature_names).to_csv(rows, index=False)
    code, stdout, stderr = run_main(capsys, "predict", model_path, "--input", rows)
    assert code == 0, stderr
    model = TrainedModel.load(model_path)
    assert [float(v) for v in stdout.split()] == list(model.predict(ds.X[:15].astype(np.float32)))
    code, _, stderr = run_main(capsys, "export", model_path, "--out-dir", tmp_path / "enc")
    assert code == 0, stderr
    spec = EncoderSpec.from_dict(json.loads((tmp_path / "enc" / "encoder.json").read_text()))
    assert spec == EncoderSpec.from_model(model)


@pytest.mark.parametrize("args, message", [
    (["--method", "bw-sq-ens", "--members", "0"], "members must be an integer"),
    (["--method", "bw-sq", "--members", "3"], "one network"),
    (["--method", "bw-sq-ens", "--members", "1000", "--layers", "10", "--neurons", "8192"], "GiB"),
])
def test_cli_bad_members_are_one_line_errors(capsys, args, message) -> None:
    code, _, stderr = run_main(capsys, "train", "--dataset", "diabetes", "--epochs", "1",
                               "--device", "cpu", *args)
    assert code == 2, stderr
    assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr
