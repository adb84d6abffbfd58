"""The quantizer's own learning rate (``threshold_lr_scale``): the paper's single rate at 1, the
thresholds' Adam steps scaled otherwise, the network's untouched, and one-line errors where it
cannot apply."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from softbits import TrainConfig, load_dataset, train_dataset
from softbits.errors import ConfigError
from softbits.experiments.settings import PAPER_GRID, Setting, draw_settings, load_grid
from softbits.training.engine import seed_everything, to_tensor
from softbits.training.estimators import SoftbitsRegressor
from softbits.training.stacked import can_stack
from softbits.training.train import build_model, fit_module
from softbits.training.trained_model import TrainedModel

from conftest import run_main

SMALL = dict(method="bw-sq", bits=2, layers=1, neurons=8, epochs=1, lr=1e-3, device="cpu", seed=1)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 3)).astype(np.float32)
    y = (X[:, 0] + np.sin(2 * X[:, 1])).astype(np.float32)
    return X, y


def _initial(config: TrainConfig, X: np.ndarray) -> dict[str, torch.Tensor]:
    """The module's parameters before training, built exactly as ``fit_module`` builds them."""
    seed_everything(config.seed)
    module = build_model(config, X.shape[1], 1, to_tensor(X, torch.device("cpu")))
    return {k: v.detach().clone() for k, v in module.named_parameters()}


@pytest.mark.parametrize("method", ["bw-sq", "bw-sq-ens", "sq", "lsq"])
def test_one_adam_step_moves_the_quantizer_by_lr_times_the_scale(data, method):
    # Adam's first step is lr·g/(|g| + eps) per element: lr wherever the gradient is not tiny
    X, y = data
    scale = 8.0
    config = TrainConfig(**{**SMALL, "method": method}, batch_size=len(X), threshold_lr_scale=scale)
    before = _initial(config, X)
    after = dict(fit_module(X, y, config, task="regression").module.named_parameters())
    quantizer = [k for k in before if k.startswith("quantizer.")]
    assert quantizer, "the method must learn quantizer parameters"
    for name, start in before.items():
        step = (after[name].detach() - start).abs()
        moved = step[step > 0]
        assert moved.numel() > 0, name
        expected = config.lr * (scale if name in quantizer else 1.0)
        assert moved.max().item() == pytest.approx(expected, rel=1e-3), name


def test_scale_one_is_the_paper_loop_step_for_step(data):
    X, y = data
    config = TrainConfig(**{**SMALL, "epochs": 3})
    plain = fit_module(X, y, config, task="regression")
    explicit = fit_module(X, y, TrainConfig(**{**SMALL, "epochs": 3}, threshold_lr_scale=1), task="regression")
    a, b = plain.module.state_dict(), explicit.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert plain.fit.train_loss == explicit.fit.train_loss
    scaled = fit_module(X, y, TrainConfig(**{**SMALL, "epochs": 3}, threshold_lr_scale=10), task="regression")
    assert not torch.equal(scaled.module.quantizer.thresholds, plain.module.quantizer.thresholds)


@pytest.mark.parametrize("options, message", [
    (dict(threshold_lr_scale=0.0), r"threshold_lr_scale must be in \(0, 1000\], got 0.0"),
    (dict(threshold_lr_scale=-2), r"threshold_lr_scale must be in \(0, 1000\]"),
    (dict(threshold_lr_scale=1e6), r"threshold_lr_scale must be in \(0, 1000\]"),
    (dict(threshold_lr_scale=float("nan")), "threshold_lr_scale must be a finite number"),
    (dict(threshold_lr_scale="fast"), "threshold_lr_scale must be a number"),
    (dict(method="bw-qq", threshold_lr_scale=3), "method bw-qq learns no quantizer parameters"),
    (dict(method="fp", threshold_lr_scale=3), "method fp learns no quantizer parameters"),
])
def test_bad_scales_are_one_line_config_errors(options, message):
    with pytest.raises(ConfigError, match=message) as info:
        TrainConfig(**options)
    assert "\n" not in str(info.value)


def test_unscaled_configs_keep_their_form_and_scaled_ones_do_not_stack():
    assert "threshold_lr_scale" not in TrainConfig().to_dict()
    scaled = TrainConfig(threshold_lr_scale=3)
    assert scaled.to_dict()["threshold_lr_scale"] == 3.0
    assert TrainConfig.from_dict(scaled.to_dict()) == scaled
    assert can_stack([TrainConfig(seed=0), TrainConfig(seed=1)])
    check = can_stack([scaled, TrainConfig(seed=1, threshold_lr_scale=3)])
    assert not check and "threshold learning-rate scale" in check.reason


def test_estimator_and_model_file_carry_the_scale(data, tmp_path):
    X, y = data
    small = {k: v for k, v in SMALL.items() if k != "method"}
    est = SoftbitsRegressor(threshold_lr_scale=4.0, **small).fit(X, y)
    assert est.get_params()["threshold_lr_scale"] == 4.0
    assert est.model_.config.threshold_lr_scale == 4.0
    trained = train_dataset(load_dataset("diabetes"), TrainConfig(**SMALL, threshold_lr_scale=4.0))
    path = tmp_path / "m.safetensors"
    trained.save(path)
    assert TrainedModel.load(path).config.threshold_lr_scale == 4.0


def _run(cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=300)


def test_train_cli_records_the_scale_and_refuses_bad_ones(softbits_cmd, cli_env, tmp_path):
    common = ("train", "--dataset", "diabetes", "--bits", "2", "--layers", "1", "--neurons", "8",
              "--epochs", "2", "--device", "cpu")
    r = _run(softbits_cmd, cli_env, *common, "--threshold-lr-scale", "5", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["settings"]["threshold_lr_scale"] == 5.0
    save = tmp_path / "m.safetensors"
    for bad, message in ((("--threshold-lr-scale", "0"), "threshold_lr_scale must be in (0, 1000]"),
                         (("--method", "bw-mq", "--threshold-lr-scale", "2"), "method bw-mq learns no quantizer")):
        r = _run(softbits_cmd, cli_env, *common, *bad, "--save", str(save))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
        assert not save.exists()


# ---- reproduce: a settings-table column and an optional grid key ------------------------------

SETTINGS_HEADER = ("dataset,method,bits,learning_rate,hidden_layers,hidden_neurons,num_epochs,"
                   "decrease_factor,dropout_rate,weight_decay")


def test_setting_ids_fold_in_the_scale_only_when_it_is_not_one():
    plain = Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 0.0)
    assert plain.id == "f6cb44dde07e"  # the id pinned before the scale existed
    assert Setting.from_mapping({**plain.to_dict(), "threshold_lr_scale": float("nan")}) == plain
    scaled = Setting.from_mapping({**plain.to_dict(), "threshold_lr_scale": "10"})
    assert scaled.id != plain.id and scaled.to_dict()["threshold_lr_scale"] == 10.0
    assert scaled.trained_as("bw-sq-ens").train_config("bw-sq-ens", 2, 0).threshold_lr_scale == 10.0
    # a method that learns no quantizer trains scaled and plain settings alike, under one id
    assert scaled.trained_as("fp").id == plain.trained_as("fp").id
    assert scaled.trained_as("bw-qq").train_config("bw-qq", 2, 0).threshold_lr_scale == 1.0


def test_reproduce_takes_the_scale_from_a_settings_column(tmp_path, capsys):
    settings = tmp_path / "chosen.csv"
    settings.write_text(SETTINGS_HEADER + ",threshold_lr_scale\n"
                        "diabetes,Bw-SQ,2,0.001,1,8,2,0.001,0.0,0.0,10\n"
                        "diabetes,FP,2,0.001,1,8,2,0.001,0.0,0.0,\n")
    store = tmp_path / "s.sqlite"
    code, out, err = run_main(capsys, "reproduce", "--datasets", "diabetes", "--methods", "fp,bw-sq,bw-sq-ens",
                              "--bits", "2", "--settings", settings, "--repeats", "1", "--jobs", "1",
                              "--store", store, "--json")
    assert code == 0, err
    assert "run one at a time: a threshold learning-rate scale does not stack yet" in err
    with sqlite3.connect(store) as conn:
        params = {m: json.loads(p) for m, p in conn.execute(
            "SELECT r.method, s.params FROM results r JOIN settings s USING (setting_id)")}
    assert params["bw-sq"]["threshold_lr_scale"] == 10.0
    assert params["bw-sq-ens"]["threshold_lr_scale"] == 10.0  # lent by the Bw-SQ row
    assert "threshold_lr_scale" not in params["fp"]
    report = tmp_path / "s_report"
    table = pd.read_csv(report / "table.csv").set_index("method")
    assert table.loc["Bw-SQ", "threshold_lr_scale"] == 10.0 and table.loc["FP", "threshold_lr_scale"] == 1.0
    # a setting like the network's size: in table.csv, not in the method columns of table.md
    assert "| Bw-SQ | Bw-SQ-Ens |" in (report / "table.md").read_text()


def test_a_grid_may_search_the_scale_and_bad_scales_stop_before_training(tmp_path, capsys):
    grid = {"learning_rate": [1e-3], "hidden_layers": [1], "hidden_neurons": [8],
            "num_epochs": [2], "decrease_factor": [1e-3], "dropout_rate": [0.0], "weight_decay": [0.0]}
    path = tmp_path / "grid.json"
    path.write_text(json.dumps({**grid, "threshold_lr_scale": [1, 10]}))
    drawn = draw_settings(2, seed=0, grid=load_grid(path))
    assert sorted(s.threshold_lr_scale for s in drawn) == [1.0, 10.0]
    # a grid without the key draws what it drew before the key existed
    assert all(s.threshold_lr_scale == 1.0 for s in draw_settings(5, grid=PAPER_GRID))
    # the search trains both scales for bw-sq, and FP (which learns no quantizer) once per fold
    store = tmp_path / "s.sqlite"
    code, _, err = run_main(capsys, "reproduce", "--datasets", "diabetes", "--methods", "fp,bw-sq", "--bits", "2",
                            "--grid", path, "--n-settings", "2", "--folds", "2", "--repeats", "1",
                            "--jobs", "1", "--store", store)
    assert code == 0, err
    with sqlite3.connect(store) as conn:
        counts = dict(conn.execute("SELECT method, COUNT(*) FROM results WHERE phase != 'test' GROUP BY method"))
    assert counts == {"bw-sq": 2 * 2, "fp": 2}
    path.write_text(json.dumps({**grid, "threshold_lr_scale": [0]}))
    store = tmp_path / "bad.sqlite"
    code, _, err = run_main(capsys, "reproduce", "--datasets", "diabetes", "--methods", "bw-sq", "--bits", "2",
                            "--grid", path, "--n-settings", "1", "--folds", "2", "--repeats", "1",
                            "--jobs", "1", "--store", store)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "threshold_lr_scale must be in (0, 1000]" in lines[0], err
    assert not store.exists()
    path.write_text(json.dumps({**grid, "threshold_lr_scale": ["fast"]}))
    code, _, err = run_main(capsys, "reproduce", "--datasets", "diabetes", "--methods", "bw-sq", "--bits", "2",
                            "--grid", path, "--store", store)
    assert code == 2 and "threshold_lr_scale must be a non-empty list of numbers" in err
