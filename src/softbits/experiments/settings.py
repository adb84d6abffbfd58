"""Hyperparameter settings: the paper's random-search grid, its seeded draw, and settings tables.

A :class:`Setting` holds the seven values the paper searches (named as in its result files:
learning_rate, hidden_layers, …), and optionally an eighth, ``threshold_lr_scale`` (a grid key or
settings-table column; 1, the paper's single learning rate, when absent); its ``id`` is a hash of
those values, the eighth only when it is not 1, so a store can tell results of different settings
apart without trusting an index into a draw, and stores written before it existed keep their keys. A
:class:`TrainedSetting` is a setting as one method trains it under a recipe (and, for an ensemble,
with a member count); its id folds those in only where they differ from what every store held
before ``reproduce --recipe/--members`` existed, so old stores keep their keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from softbits.errors import ConfigError
from softbits.training.config import TrainConfig

__all__ = [
    "OPTIONAL_COLUMNS",
    "PAPER_GRID",
    "QUICK_GRID",
    "SETTING_COLUMNS",
    "Setting",
    "TrainedSetting",
    "UNKEYED_MEMBERS",
    "draw_settings",
    "load_grid",
    "read_csv_table",
    "read_settings_table",
    "threshold_lr_scale_of",
]

#: column names of the paper's result files, in the order of the Setting fields
SETTING_COLUMNS = ("learning_rate", "hidden_layers", "hidden_neurons", "num_epochs",
                   "decrease_factor", "dropout_rate", "weight_decay")

#: keys a grid or settings table may add: the quantizer's learning-rate scale (1 when absent)
OPTIONAL_COLUMNS = ("threshold_lr_scale",)

#: the paper's search grid (docs/reproduce.md, "What one command does"): each key drawn independently from these values
PAPER_GRID: dict[str, tuple[float, ...]] = {
    "learning_rate": (1e-3, 1e-4),
    "hidden_layers": (5, 6, 8, 10),
    "hidden_neurons": (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
    "num_epochs": (30, 50, 70),
    "decrease_factor": (1e-3, 1e-4),
    "dropout_rate": (0.0, 0.2, 0.4, 0.5),
    "weight_decay": (0.0,),
}

#: small nets and few epochs, so that ``reproduce --quick`` runs in minutes on a laptop CPU
QUICK_GRID: dict[str, tuple[float, ...]] = {
    "learning_rate": (1e-3,),
    "hidden_layers": (2, 3),
    "hidden_neurons": (32, 64),
    "num_epochs": (8, 12),
    "decrease_factor": (1e-3, 1e-4),
    "dropout_rate": (0.0,),
    "weight_decay": (0.0,),
}


@dataclass(frozen=True)
class Setting:
    """One point of the search grid (the values of one row of the paper's result table)."""

    learning_rate: float
    hidden_layers: int
    hidden_neurons: int
    num_epochs: int
    decrease_factor: float
    dropout_rate: float
    weight_decay: float
    threshold_lr_scale: float = 1.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Setting:
        """Coerce table values (``5.0`` layers, ``'1e-3'``) to the field types."""
        return cls(
            learning_rate=float(values["learning_rate"]),
            hidden_layers=int(float(values["hidden_layers"])),
            hidden_neurons=int(float(values["hidden_neurons"])),
            num_epochs=int(float(values["num_epochs"])),
            decrease_factor=float(values["decrease_factor"]),
            dropout_rate=float(values["dropout_rate"]),
            weight_decay=float(values["weight_decay"]),
            threshold_lr_scale=threshold_lr_scale_of(values),
        )

    def to_dict(self) -> dict[str, Any]:
        """The values; ``threshold_lr_scale`` only when it is not 1 (so ids stay as they were)."""
        out = asdict(self)
        if self.threshold_lr_scale == 1.0:
            del out["threshold_lr_scale"]
        return out

    @property
    def id(self) -> str:
        """Stable short hash of the values (float repr, so 1e-3 and 0.001 agree)."""
        text = json.dumps({k: repr(v) for k, v in self.to_dict().items()}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def train_config(self, method: str, bits: int, seed: int, device: str = "auto") -> TrainConfig:
        """The validated training config of this setting for one method, bit width and seed
        (the ``paper`` recipe; a :class:`TrainedSetting` names another)."""
        return self._config(method, bits, seed, device, "paper", None)

    def _config(self, method: str, bits: int, seed: int, device: str, recipe: str,
                members: int | None) -> TrainConfig:
        """The setting's values as explicit options over ``recipe``'s defaults."""
        from softbits.training.config import resolve

        return resolve(recipe, method=method, bits=bits, layers=self.hidden_layers,
                       neurons=self.hidden_neurons, epochs=self.num_epochs, lr=self.learning_rate,
                       weight_decay=self.weight_decay, dropout=self.dropout_rate,
                       decrease_factor=self.decrease_factor, members=members, seed=seed,
                       device=device, task="regression", threshold_lr_scale=self.threshold_lr_scale)

    def trained_as(self, method: str, recipe: str = "paper", members: int | None = None) -> TrainedSetting:
        """This setting as ``method`` trains it under ``recipe``, with ``members`` MLPs if it is an
        ensemble (None: its default; single-network methods ignore ``members``).

        Every value of a settings table or grid is explicit and wins over the recipe, except a
        weight decay of 0: the paper's grid and result tables hold 0 because the paper's loop
        trains without decay, so there it stands for "the recipe's weight decay" (docs/reproduce.md,
        "Recipes and ensemble members").
        """
        from softbits.training.config import check_recipe
        from softbits.training.methods import DEFAULT_MEMBERS, get_method

        decay = self.weight_decay if self.weight_decay != 0.0 else float(check_recipe(recipe)["weight_decay"])
        learner = get_method(method)
        count = (members if members is not None else DEFAULT_MEMBERS) if learner.ensemble else None
        # a method that learns no quantizer trains every scale alike: one training, one id
        scale = self.threshold_lr_scale if learner.learns_quantizer else 1.0
        values = {**{k: getattr(self, k) for k in SETTING_COLUMNS}, "weight_decay": decay,
                  "threshold_lr_scale": scale}
        return TrainedSetting(**values, recipe=recipe, members=count)


#: the member count that a setting id leaves out: stores written before ``reproduce --members``
#: existed hold their ensemble runs under ids without one, trained with DEFAULT_MEMBERS = 4 (the
#: default since the member study); a later change of that default must not reuse those ids
UNKEYED_MEMBERS = 4


@dataclass(frozen=True)
class TrainedSetting(Setting):
    """A setting as one method trains it: under ``recipe``, with ``members`` MLPs for an ensemble
    method (None for a single network). Built by :meth:`Setting.trained_as`."""

    recipe: str = "paper"
    members: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The seven values, plus ``threshold_lr_scale``, ``recipe`` and ``members`` where they
        are not 1, the ``paper`` recipe and 4 members: then the id and the stored values are
        exactly a plain setting's."""
        out = {k: getattr(self, k) for k in SETTING_COLUMNS}
        if self.threshold_lr_scale != 1.0:
            out["threshold_lr_scale"] = self.threshold_lr_scale
        if self.recipe != "paper":
            out["recipe"] = self.recipe
        if self.members not in (None, UNKEYED_MEMBERS):
            out["members"] = self.members
        return out

    def train_config(self, method: str, bits: int, seed: int, device: str = "auto") -> TrainConfig:
        """The validated training config under this setting's recipe and member count."""
        return self._config(method, bits, seed, device, self.recipe, self.members)


def threshold_lr_scale_of(values: Mapping[str, Any]) -> float:
    """A table row's or stored setting's ``threshold_lr_scale``; 1 where the column or key is
    absent or the cell empty (NaN)."""
    value = values.get("threshold_lr_scale")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return 1.0
    return float(value)


def _grid_keys(grid: Mapping[str, Sequence[float]]) -> list[str]:
    """The keys drawn from ``grid``: the seven, then the optional ones it has (in that order, so
    a grid without them draws exactly the settings it drew before they existed)."""
    return [*SETTING_COLUMNS, *(k for k in OPTIONAL_COLUMNS if k in grid)]


def _grid_size(grid: Mapping[str, Sequence[float]]) -> int:
    return int(np.prod([len(grid[k]) for k in _grid_keys(grid)]))


def draw_settings(n: int, seed: int = 42,
                  grid: Mapping[str, Sequence[float]] = PAPER_GRID) -> list[Setting]:
    """``n`` distinct settings, each key drawn independently and uniformly from ``grid``.

    Draws repeat until ``n`` distinct settings are found (the grid's size bounds ``n``), so the
    list is a pure function of (n, seed, grid) and the same for every dataset and bit width.
    """
    size = _grid_size(grid)
    if not 1 <= n <= size:
        raise ConfigError(f"number of settings must be in 1..{size} (the grid's size), got {n}")
    rng = np.random.default_rng(seed)
    seen: dict[str, Setting] = {}
    while len(seen) < n:
        values = {k: grid[k][int(rng.integers(len(grid[k])))] for k in _grid_keys(grid)}
        setting = Setting.from_mapping(values)
        seen.setdefault(setting.id, setting)
    return list(seen.values())


def load_grid(path: Path) -> dict[str, tuple[float, ...]]:
    """A JSON object mapping each of :data:`SETTING_COLUMNS` (and optionally
    :data:`OPTIONAL_COLUMNS`) to a non-empty list of values."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"grid file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"grid file {path} is not valid JSON: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"grid file {path} must hold a JSON object")
    missing = [k for k in SETTING_COLUMNS if k not in raw]
    unknown = sorted(set(raw) - set(SETTING_COLUMNS) - set(OPTIONAL_COLUMNS))
    if missing or unknown:
        raise ConfigError(f"grid file {path}: missing keys {missing}, unknown keys {unknown}; "
                          f"expected {', '.join(SETTING_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})")
    grid: dict[str, tuple[float, ...]] = {}
    for key in _grid_keys(raw):
        values = raw[key]
        if not isinstance(values, list) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"grid file {path}: {key} must be a non-empty list of numbers")
        grid[key] = tuple(values)
    return grid


def read_csv_table(path: Path, what: str, required: Sequence[str] = ()) -> pd.DataFrame:
    """A CSV the user named with the ``required`` columns, or a one-line :class:`ConfigError`
    saying why it cannot be used."""
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} {path} is not a readable CSV: {exc}".replace("\n", " ")) from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ConfigError(f"{what} {path} lacks columns: {', '.join(missing)}")
    return table


def read_settings_table(path: Path, needed: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str, int], Setting]:
    """Chosen settings per (dataset, method display name, bits) from a paper-style CSV.

    Every needed row must be present; the error names the missing ones so the user can fix the
    file before any training starts. A method with ``settings_from`` (e.g. Bw-SQ-Ens) takes that
    method's row when the file has none of its own.
    """
    path = Path(path)
    table = read_csv_table(path, "settings file", required=("dataset", "method", "bits", *SETTING_COLUMNS))
    index: dict[tuple[str, str, int], Setting] = {}
    for row in table.to_dict("records"):
        try:
            key = (str(row["dataset"]), str(row["method"]).lower(), int(float(row["bits"])))
            index.setdefault(key, Setting.from_mapping(row))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"settings file {path}: bad row {row}: {exc}") from None
    chosen: dict[tuple[str, str, int], Setting] = {}
    missing_rows: list[str] = []
    for dataset, display, bits in needed:
        setting = index.get((dataset, display.lower(), bits))
        lender = _lender(display)
        if setting is None and lender is not None:
            setting = index.get((dataset, lender.lower(), bits))
        if setting is None:
            missing_rows.append(f"{dataset}/{display}/{bits}")
        else:
            chosen[(dataset, display, bits)] = setting
    if missing_rows:
        shown = ", ".join(missing_rows[:5]) + (" …" if len(missing_rows) > 5 else "")
        raise ConfigError(f"settings file {path} lacks {len(missing_rows)} needed "
                          f"(dataset/method/bits) rows: {shown}")
    return chosen


def _lender(display: str) -> str | None:
    """Display name of the method whose settings the method shown as ``display`` borrows."""
    from softbits.training.methods import METHODS

    for method in METHODS.values():
        if method.display.lower() == display.lower() and method.settings_from is not None:
            return METHODS[method.settings_from].display
    return None
