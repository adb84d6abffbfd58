"""Training recipes: the paper's loop unchanged, AdamW and a cosine learning rate, named defaults
that explicit options override, and one-line errors for settings that cannot apply."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from softbits import TrainConfig, load_dataset, train_dataset
from softbits.errors import ConfigError, DataError
from softbits.nn.schedules import make_schedule
from softbits.training.config import RECIPES, resolve
from softbits.training.engine import seed_everything, target_tensor, to_tensor, train_epoch
from softbits.training.estimators import SoftbitsRegressor
from softbits.training.train import build_model, fit_module
from softbits.training.trained_model import TrainedModel

SMALL = dict(method="bw-sq", bits=3, layers=2, neurons=16, epochs=6, lr=3e-3, batch_size=64,
             device="cpu", seed=3)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (X[:, 0] - 0.5 * X[:, 1] ** 2 + 0.1 * rng.normal(size=300)).astype(np.float32)
    return X, y


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _paper_loop(X: np.ndarray, y: np.ndarray, config: TrainConfig) -> tuple[dict, list[float]]:
    """The loop as it was before recipes: Adam (L2 weight decay), one constant learning rate,
    the paper's temperature per epoch, the last epoch kept."""
    device = torch.device("cpu")
    generator = seed_everything(config.seed)
    X_t, y_t = to_tensor(X, device), target_tensor(y, device, "regression")
    module = build_model(config, X.shape[1], 1, X_t)
    adam = torch.optim.Adam(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    temps = make_schedule(config.schedule, config.epochs, config.decrease_factor).values()
    losses = []
    for epoch in range(config.epochs):
        module.quantizer.set_temperature(temps[epoch])
        losses.append(train_epoch(module, adam, X_t, y_t, task="regression",
                                  batch_size=config.batch_size, generator=generator))
    module.eval()
    return _state(module), losses


def test_paper_recipe_is_the_old_loop_bit_for_bit(data):
    X, y = data
    expected, losses = _paper_loop(X, y, TrainConfig(weight_decay=1e-3, **SMALL))
    for config in (TrainConfig(weight_decay=1e-3, **SMALL),
                   resolve("paper", weight_decay=1e-3, **SMALL)):
        fitted = fit_module(X, y, config, task="regression")
        assert _same(_state(fitted.module), expected)
        assert fitted.fit.train_loss == losses
    assert TrainConfig().recipe == "paper"
    assert resolve("paper", **SMALL) == TrainConfig(**SMALL)


def test_explicit_options_win_over_the_recipe():
    best = RECIPES["best"]
    config = resolve("best", epochs=40, weight_decay=0.5)
    assert config.recipe == "best" and config.weight_decay == 0.5
    assert config.optimizer == best["optimizer"] and config.lr_schedule == best["lr_schedule"]
    assert config.val_fraction == best["val_fraction"]
    config = resolve("best", epochs=40, optimizer="adam", lr_schedule="constant")
    assert (config.optimizer, config.lr_schedule, config.warmup_epochs) == ("adam", "constant", 0)
    assert resolve("best", epochs=40, lr_schedule="cosine", warmup_epochs=7).warmup_epochs == 7
    # None means "not given": the recipe's value stays
    assert resolve("best", epochs=40, weight_decay=None).weight_decay == best["weight_decay"]
    assert resolve("best") != TrainConfig(recipe="best")  # best changes at least one default
    # a cosine schedule asked for without a warm-up gets the recipe's share of the epochs
    assert resolve("paper", epochs=40, lr_schedule="cosine").warmup_epochs == 2
    assert resolve("paper", epochs=1, lr_schedule="cosine").warmup_epochs == 0


def test_cosine_warms_up_then_decays_to_about_zero(data):
    X, y = data
    lrs: list[float] = []
    config = TrainConfig(**{**SMALL, "epochs": 40}, lr_schedule="cosine", warmup_epochs=4)
    fitted = fit_module(X, y, config, task="regression",
                        on_epoch_end=lambda e, logs: lrs.append(logs["lr"]))
    assert len(lrs) == 40 and fitted.fit.lrs == lrs
    assert [r["lr"] for r in fitted.fit.epochs()] == lrs
    assert lrs[:4] == sorted(lrs[:4]) and lrs[0] < lrs[3] < config.lr
    assert max(lrs) == pytest.approx(config.lr, rel=1e-2)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    assert lrs[-1] < 1e-3 * config.lr
    flat: list[float] = []
    fit_module(X, y, TrainConfig(**SMALL), task="regression",
               on_epoch_end=lambda e, logs: flat.append(logs["lr"]))
    assert flat == [SMALL["lr"]] * SMALL["epochs"]


def test_adamw_decouples_weight_decay(data):
    X, y = data
    adam = fit_module(X, y, TrainConfig(weight_decay=0.1, **SMALL), task="regression")
    adamw = fit_module(X, y, TrainConfig(weight_decay=0.1, optimizer="adamw", **SMALL),
                       task="regression")
    assert not _same(_state(adam.module), _state(adamw.module))
    assert adam.fit.train_loss != adamw.fit.train_loss


@pytest.mark.parametrize("options, message", [
    (dict(optimizer="sgd"), "unknown optimizer 'sgd'"),
    (dict(lr_schedule="step"), "unknown lr_schedule 'step'"),
    (dict(recipe="fast"), "unknown recipe 'fast'"),
    (dict(warmup_epochs=2), "warmup_epochs applies to lr_schedule cosine"),
    (dict(lr_schedule="cosine", warmup_epochs=30), "warmup_epochs must be in 0..29"),
    (dict(lr_schedule="cosine", warmup_epochs=-1), "warmup_epochs must be in 0..29"),
])
def test_bad_settings_are_one_line_config_errors(options, message):
    with pytest.raises(ConfigError, match=message) as info:
        TrainConfig(epochs=30, **options)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown recipe 'fast'; choose one of: paper, best"):
        resolve("fast")


def test_estimator_resolves_its_recipe(data):
    X, y = data
    small = {k: v for k, v in SMALL.items() if k not in ("method",)}
    est = SoftbitsRegressor(recipe="best", weight_decay=0.25, **small).fit(X, y)
    config = est.model_.config
    assert config.recipe == "best" and config.weight_decay == 0.25
    assert config.optimizer == RECIPES["best"]["optimizer"]
    assert SoftbitsRegressor(**small).fit(X, y).model_.config == TrainConfig(task="regression", **SMALL)


def _run(cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=300)


def test_train_json_records_the_resolved_recipe(softbits_cmd, cli_env):
    common = ("train", "--dataset", "diabetes", "--bits", "3", "--layers", "1", "--neurons", "8",
              "--epochs", "20", "--device", "cpu", "--json")
    r = _run(softbits_cmd, cli_env, *common, "--recipe", "best", "--weight-decay", "0.5")
    assert r.returncode == 0, r.stderr
    settings = json.loads(r.stdout)["settings"]
    best = RECIPES["best"]
    assert settings["recipe"] == "best" and settings["weight_decay"] == 0.5
    assert settings["optimizer"] == best["optimizer"]
    assert settings["lr_schedule"] == best["lr_schedule"]
    assert settings["val_fraction"] == best["val_fraction"]
    assert settings["warmup_epochs"] == resolve("best", epochs=20).warmup_epochs
    r = _run(softbits_cmd, cli_env, *common, "--optimizer", "adamw", "--lr-schedule", "cosine",
             "--warmup-epochs", "3")
    assert r.returncode == 0, r.stderr
    settings = json.loads(r.stdout)["settings"]
    assert (settings["recipe"], settings["optimizer"], settings["lr_schedule"],
            settings["warmup_epochs"], settings["weight_decay"]) == ("paper", "adamw", "cosine", 3, 0.0)


@pytest.mark.parametrize("args, message", [
    (("--recipe", "fast"), "unknown recipe 'fast'"),
    (("--optimizer", "sgd"), "unknown optimizer 'sgd'"),
    (("--lr-schedule", "step"), "unknown lr_schedule 'step'"),
    (("--warmup-epochs", "3"), "warmup_epochs applies to lr_schedule cosine"),
])
def test_train_refuses_bad_recipe_options_before_training(softbits_cmd, cli_env, tmp_path, args,
                                                          message):
    save = tmp_path / "m.safetensors"
    r = _run(softbits_cmd, cli_env, "train", "--dataset", "diabetes", "--epochs", "2",
             "--save", str(save), *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not save.exists()


def test_model_file_keeps_the_resolved_recipe(tmp_path):
    config = resolve("best", bits=3, layers=1, neurons=8, epochs=4, device="cpu",
                     optimizer="adamw", lr_schedule="cosine")
    path = tmp_path / "m.safetensors"
    trained = train_dataset(load_dataset("diabetes"), config)
    trained.save(path)
    loaded = TrainedModel.load(path)
    assert loaded.config == config
    assert loaded.history is not None and loaded.history.lrs == trained.history.lrs
    assert len(trained.history.lrs) == 4 and trained.history.lrs[-1] < 0.2 * config.lr
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["softbits"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    header["config"]["optimizer"] = "sgd"
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, str(edited), metadata={"softbits": json.dumps(header)})
    with pytest.raises(DataError, match="unknown optimizer 'sgd'") as info:
        TrainedModel.load(edited)
    assert "\n" not in str(info.value)
