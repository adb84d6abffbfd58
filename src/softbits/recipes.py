"""Training recipes: named defaults for the optimizer, learning-rate schedule, weight decay and
best-validation checkpoint, so that one word selects a tested training loop for any method.

``paper`` is the paper's loop (Adam, constant learning rate, last epoch). ``best`` is the
candidate with the lowest cross-validation error in a 3-fold study on training data only
(``benchmarks/recipe_cv.py``; evidence in ``docs/training.md``): the paper's loop plus L2 weight
decay 1e-4, 0.5 % lower validation MSE than ``paper`` over four cells (−3.5 % on california,
+2.3 % on cpu_act at 4 bits), so a small change; AdamW with a cosine schedule was 5–6 % worse.

A recipe fills only what the user did not set: :func:`resolve` lets every explicit option win
and returns a :class:`~softbits.config.TrainConfig` holding the values used.
"""

from __future__ import annotations

from typing import Any

from softbits.config import TrainConfig
from softbits.errors import ConfigError

__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "RECIPES", "resolve"]

#: ``adam``: L2 weight decay added to the gradient (the paper's); ``adamw``: decoupled decay
OPTIMIZERS = ("adam", "adamw")
#: ``constant`` (the paper's); ``cosine``: linear warm-up, then cosine decay to about 0
LR_SCHEDULES = ("constant", "cosine")

#: Each recipe's defaults. ``warmup_fraction`` becomes ``warmup_epochs`` = round(fraction × epochs)
#: when the resolved learning-rate schedule is ``cosine`` and no warm-up was given (5 %: the
#: cosine variant the study measured).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"optimizer": "adam", "lr_schedule": "constant", "warmup_fraction": 0.05,
              "weight_decay": 0.0, "val_fraction": 0.0},
    "best": {"optimizer": "adam", "lr_schedule": "constant", "warmup_fraction": 0.05,
             "weight_decay": 1e-4, "val_fraction": 0.0},
}


def check_recipe(name: Any) -> dict[str, Any]:
    """The defaults of recipe ``name``; a one-line :class:`ConfigError` for any other name."""
    if not isinstance(name, str) or name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]


def resolve(recipe: str = "paper", **options: Any) -> TrainConfig:
    """A :class:`TrainConfig` from ``recipe``'s defaults overridden by ``options``.

    Options that are None count as not given (the CLI and the estimator pass every option, None
    where the user chose nothing), so the recipe's value stays; any other value wins.
    """
    defaults = dict(check_recipe(recipe))
    given = {k: v for k, v in options.items() if v is not None}
    fraction = defaults.pop("warmup_fraction")
    values = {**defaults, **given}
    if "warmup_epochs" not in given:
        epochs = values.get("epochs", TrainConfig.epochs)
        cosine = values["lr_schedule"] == "cosine" and isinstance(epochs, int)
        values["warmup_epochs"] = min(round(fraction * epochs), epochs - 1) if cosine else 0
    return TrainConfig(recipe=recipe, **values)
