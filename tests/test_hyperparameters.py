"""Hyperparameters are listed in several places that users meet: TrainConfig, the ``train``
options, the estimators' parameters, the protocol's Setting. These tests fail when a field is
added, renamed or given another default in one place but not the others."""

from __future__ import annotations

import inspect
import re
import typing
from dataclasses import MISSING, fields

import pytest

from softbits.data import dataset_names
from softbits.experiments.settings import OPTIONAL_COLUMNS, SETTING_COLUMNS, Setting
from softbits.nn.quantizers import THRESHOLD_INITS
from softbits.nn.schedules import SCHEDULES
from softbits.training.commands import train
from softbits.training.config import RECIPES, TrainConfig
from softbits.training.estimators import SoftbitsClassifier, SoftbitsRegressor
from softbits.training.methods import METHODS

FIELDS = {f.name: f.default for f in fields(TrainConfig)}
#: fields a recipe fills when the user gives None (its warmup_fraction becomes warmup_epochs)
RECIPE_FILLED = {k for k in RECIPES["paper"] if k != "warmup_fraction"} | {"warmup_epochs"}
#: the protocol's Setting column of each searched field
SEARCHED = {"learning_rate": "lr", "hidden_layers": "layers", "hidden_neurons": "neurons",
            "num_epochs": "epochs", "decrease_factor": "decrease_factor",
            "dropout_rate": "dropout", "weight_decay": "weight_decay"}
#: fields the protocol does not search: its axes and run arguments, or kept at the default
PROTOCOL_ARGUMENTS = {"method", "bits", "seed", "device", "task"}
PROTOCOL_DEFAULTS = {"schedule", "batch_size", "init", "val_fraction", "members", "optimizer",
                     "lr_schedule", "warmup_epochs", "recipe", "bits_per_feature", "predictor"}
#: fields a grid or settings table may search (OPTIONAL_COLUMNS), at their default when absent
OPTIONAL = {"threshold_lr_scale": "threshold_lr_scale"}


def _defaults(func) -> dict[str, object]:
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if name != "self"}


def _option_default(value: object) -> object:
    """typer keeps the default on the parameter; Annotated options give the plain value."""
    return getattr(value, "default", value)


def test_every_field_has_a_default() -> None:
    assert all(default is not MISSING for default in FIELDS.values())


def _check_defaults(where: str, params: dict[str, object], skip: set[str]) -> None:
    problems = []
    for name, default in FIELDS.items():
        if name in skip:
            continue
        if name not in params:
            problems.append(f"{name} is not a parameter of {where}")
            continue
        given = _option_default(params[name])
        if given != default and not (given is None and name in RECIPE_FILLED):
            problems.append(f"{where} {name} defaults to {given!r}, TrainConfig to {default!r}")
    assert not problems, "\n".join(problems)


def test_train_command_has_every_field_with_its_default() -> None:
    _check_defaults("softbits train", _defaults(train), skip=set())


@pytest.mark.parametrize("estimator", [SoftbitsRegressor, SoftbitsClassifier])
def test_estimators_have_every_field_with_its_default(estimator) -> None:
    params = _defaults(estimator.__init__)
    _check_defaults(estimator.__name__, params, skip={"task"})  # the class is the task
    assert set(params) <= set(FIELDS), f"{estimator.__name__} has parameters TrainConfig lacks"


def test_recipe_filled_defaults_resolve_to_the_config_defaults() -> None:
    """None in the CLI and estimators means the recipe's value: the default recipe's values are
    TrainConfig's defaults, so leaving them out changes nothing."""
    from softbits.training.config import resolve

    assert resolve(FIELDS["recipe"]) == TrainConfig()
    assert SoftbitsRegressor()._config() == TrainConfig(task="regression")


def test_every_field_is_searched_or_fixed_by_the_protocol() -> None:
    assert set(SEARCHED) == set(SETTING_COLUMNS)
    assert set(OPTIONAL) == set(OPTIONAL_COLUMNS)
    assert {f.name for f in fields(Setting)} == set(SETTING_COLUMNS) | set(OPTIONAL_COLUMNS)
    assert all(getattr(Setting, k) == FIELDS[v] for k, v in OPTIONAL.items())
    assert set(FIELDS) == set(SEARCHED.values()) | set(OPTIONAL.values()) | PROTOCOL_ARGUMENTS | PROTOCOL_DEFAULTS, (
        "a TrainConfig field was added or renamed: map it to a Setting column or list it as "
        "fixed by the protocol here")
    assert not set(SEARCHED.values()) & (PROTOCOL_ARGUMENTS | PROTOCOL_DEFAULTS)


def test_setting_passes_its_values_and_keeps_the_other_defaults() -> None:
    values = {"learning_rate": 0.0123, "hidden_layers": 3, "hidden_neurons": 17, "num_epochs": 9,
              "decrease_factor": 0.25, "dropout_rate": 0.125, "weight_decay": 0.5}
    config = Setting(**values).train_config("sq", 3, seed=7, device="cpu")
    for column, name in SEARCHED.items():
        assert getattr(config, name) == values[column], name
    assert (config.method, config.bits, config.seed, config.device, config.task) == (
        "sq", 3, 7, "cpu", "regression")
    for name in PROTOCOL_DEFAULTS:
        assert getattr(config, name) == getattr(TrainConfig(method="sq"), name), name


def _help(name: str) -> str:
    return typing.get_type_hints(train, include_extras=True)[name].__metadata__[0].help


@pytest.mark.parametrize("option, names", [
    ("dataset", dataset_names()),
    ("method", list(METHODS)),
    ("schedule", list(SCHEDULES)),
    ("init", list(THRESHOLD_INITS)),
    ("recipe", list(RECIPES)),
])
def test_train_help_names_every_registered_choice(option: str, names: list[str]) -> None:
    """Dataset and method lists come from the registries (which import no torch or pandas); the
    smaller lists are written out, and this keeps every one of them complete."""
    text = _help(option)
    missing = [n for n in names if n not in re.findall(r"[\w-]+", text)]
    assert not missing, f"--{option} help lacks {missing}: {text!r}"


def test_cli_help_imports_neither_torch_nor_pandas() -> None:
    """Listing the registries' names in help texts stays cheap: ``softbits --help`` and every
    one-line error before training do not pay for torch, pandas or scikit-learn."""
    import subprocess
    import sys

    code = ("import sys, softbits.cli; heavy = [m for m in ('torch', 'pandas', 'sklearn') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", out
