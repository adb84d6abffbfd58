"""The settings of one training, validated up front so that errors say what to change, and the
training recipes that fill them.

Training recipes: named defaults for the optimizer, learning-rate schedule, weight decay and
best-validation checkpoint, so that one word selects a tested training loop for any method.

``paper`` is the paper's loop (Adam, constant learning rate, last epoch). ``best`` is the
candidate with the lowest cross-validation error in a 3-fold study on training data only
(``benchmarks/recipe_cv.py``; evidence in ``docs/training.md``): the paper's loop plus L2 weight
decay 1e-4, 0.5 % lower validation MSE than ``paper`` over four cells (−3.5 % on california,
+2.3 % on cpu_act at 4 bits), so a small change; AdamW with a cosine schedule was 5–6 % worse.

A recipe fills only what the user did not set: :func:`resolve` lets every explicit option win
and returns a :class:`~softbits.training.config.TrainConfig` holding the values used.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from softbits.codes import MAX_BITS, payload_bytes, widths_payload_bytes
from softbits.errors import ConfigError
from softbits.nn.schedules import SCHEDULES

if TYPE_CHECKING:
    from softbits.training.methods import Method

__all__ = ["LR_SCHEDULES", "MAX_BITS", "MAX_MEMBERS", "MAX_SEED", "check_seeds", "MAX_THRESHOLD_LR_SCALE", "OPTIMIZERS", "RECIPES",
           "TrainConfig", "check_recipe", "resolve"]

#: ensemble members per training; the memory estimate before training bounds it further
MAX_MEMBERS = 1024
#: the largest seed: numpy and scikit-learn take seeds in 0..2^32 − 1
MAX_SEED = 2**32 - 1
#: beyond this the thresholds' Adam steps (lr × scale) dwarf any standardized feature's range
MAX_THRESHOLD_LR_SCALE = 1000.0

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


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults follow the paper where it fixes a value (batch 512, Adam, τ₀ = 1).

    Parameters
    ----------
    method : str
        A name from :data:`softbits.training.methods.METHODS` (``bw-sq`` is the paper's method).
    bits : int
        Bits per feature n (2^n − 1 thresholds); ignored by ``fp``. With ``bits_per_feature``
        the largest width.
    layers, neurons, dropout : MLP shape: hidden layers, their width, dropout after each.
    epochs, lr, weight_decay, batch_size : the training loop (Adam, shuffled batches).
    decrease_factor : float
        The paper's d: τ decays to d over the epochs (and the ablation schedules' minimum).
    schedule : str
        Temperature schedule, one of :data:`softbits.nn.schedules.SCHEDULES`.
    init : str
        Threshold initialisation for trainable quantizers (``quantile`` as in the paper, ``minmax``).
    val_fraction : float
        > 0 keeps that share of the training part for validation and restores the best epoch
        (off by default: the paper evaluates the last epoch).
    members : int or None
        MLPs behind the quantizer for an ensemble method (1..MAX_MEMBERS); None takes the
        method's default (:data:`softbits.training.methods.DEFAULT_MEMBERS` for ensembles, 1 otherwise).
        Other methods train one network and refuse any other number.
    optimizer : str
        ``adam`` (the paper's; weight decay as L2 on the gradient) or ``adamw`` (decoupled decay).
    lr_schedule : str
        ``constant`` (the paper's) or ``cosine``: linear warm-up over ``warmup_epochs``, then a
        cosine decay to about 0 at the last epoch.
    warmup_epochs : int
        Epochs of linear warm-up (cosine only; 0..epochs − 1).
    recipe : str
        The recipe (:data:`softbits.training.config.RECIPES`) whose defaults filled the options not given;
        the fields hold the resolved values (:func:`softbits.training.config.resolve`).
    threshold_lr_scale : float
        The quantizer's parameters (thresholds, LSQ steps, LLT tables) train at ``lr`` times this
        (1, the paper's: one rate for everything); methods that learn a quantizer only. A larger
        scale lets thresholds travel further when a small dataset gives few steps per epoch
        (evidence and when to use it: docs/training.md, "Threshold learning rate").
    bits_per_feature : tuple of int or None
        One code width per feature in 0..16 (0: the feature is neither measured nor sent),
        threshold methods only; None gives every feature ``bits``. Equal widths are stored as
        that ``bits`` and None, so they are the same model as the uniform one.
    predictor : str
        The server model behind the codes (:mod:`softbits.training.predictors`): ``mlp`` (the
        paper's network), ``ensemble`` (the method's ensemble form: ``bw-sq`` becomes
        ``bw-sq-ens`` with ``members`` networks, predictor ``mlp``), ``gbdt`` (gradient-boosted
        trees on the codes) or ``auto`` (the one with the lower validation loss; for threshold
        methods also trees on ``bw-bq`` bins). ``gbdt`` and ``auto`` validate on ``val_fraction`` of
        the training part, 0.15 when it is 0.
    """

    method: str = "bw-sq"
    bits: int = 4
    layers: int = 5
    neurons: int = 128
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.0
    decrease_factor: float = 1e-3
    schedule: str = "exponential"
    batch_size: int = 512
    init: str = "quantile"
    seed: int = 0
    device: str = "auto"
    task: str = "auto"
    val_fraction: float = 0.0
    members: int | None = None
    optimizer: str = "adam"
    lr_schedule: str = "constant"
    warmup_epochs: int = 0
    recipe: str = "paper"
    threshold_lr_scale: float = 1.0
    bits_per_feature: tuple[int, ...] | None = None
    predictor: str = "mlp"

    def __post_init__(self) -> None:
        from softbits.nn.quantizers import THRESHOLD_INITS
        from softbits.training.methods import ensemble_form, get_method

        self._check_types()
        if self.predictor == "ensemble":  # an alias: the ensemble method, its members predicting
            object.__setattr__(self, "method", ensemble_form(self.method))
            object.__setattr__(self, "predictor", "mlp")
        method = get_method(self.method)
        if self.bits_per_feature is not None:
            widths = method.check_widths(self.bits_per_feature)
            uniform = len(set(widths)) == 1
            object.__setattr__(self, "bits", max(widths))
            object.__setattr__(self, "bits_per_feature", None if uniform else widths)
        method.check_bits(self.bits)
        checks = [
            (self.layers >= 0, f"layers must be >= 0, got {self.layers}"),
            (self.neurons >= 1, f"neurons must be >= 1, got {self.neurons}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (0 < self.decrease_factor <= 1, f"decrease factor must be in (0, 1], got {self.decrease_factor}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED} (numpy and scikit-learn take 32-bit "
                                         f"seeds), got {self.seed}"),
            (self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}"),
            (self.init in THRESHOLD_INITS, f"unknown init {self.init!r}; choose one of: {', '.join(THRESHOLD_INITS)}"),
            (self.task in ("auto", "regression", "classification"), f"unknown task {self.task!r}; choose auto, regression or classification"),
            (0 <= self.val_fraction < 0.5, f"val_fraction must be in [0, 0.5), got {self.val_fraction}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self._check_members(method)
        self._check_recipe()
        self._check_threshold_lr_scale(method)
        self._check_predictor(method)

    def _check_predictor(self, method: Method) -> None:
        """A known predictor; trees replace the one network, so not behind an ensemble."""
        from softbits.training.predictors import check_predictor

        check_predictor(self.predictor)
        if self.predictor != "mlp" and method.ensemble:
            raise ConfigError(f"predictor {self.predictor} replaces the network, but {self.method} is an "
                              f"ensemble of {self.members} networks; use predictor mlp or a single-network method")

    def _check_types(self) -> None:
        """Settings arrive from the CLI, JSON files and model headers: text where a number belongs,
        or NaN/inf (which pass every range check below as ``inf > 0`` does), must be refused here.
        numpy scalars are accepted and stored as Python numbers, so the config stays JSON-ready."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "str" and not isinstance(value, str):
                raise ConfigError(f"{f.name} must be text, got {value!r}")
            if f.type in ("int", "float") and isinstance(value, bool):
                raise ConfigError(f"{f.name} must be {'an integer' if f.type == 'int' else 'a number'}, got {value!r}")
            if f.type == "int":
                if not isinstance(value, numbers.Integral):
                    raise ConfigError(f"{f.name} must be an integer, got {value!r}")
                object.__setattr__(self, f.name, int(value))
            if f.type == "float":
                if not isinstance(value, numbers.Real):
                    raise ConfigError(f"{f.name} must be a number, got {value!r}")
                if not math.isfinite(value):
                    raise ConfigError(f"{f.name} must be a finite number, got {value!r}")
                object.__setattr__(self, f.name, float(value))

    def _check_members(self, method: Method) -> None:
        """Resolve ``members=None`` to the method's default; refuse a number it cannot use."""
        from softbits.training.methods import DEFAULT_MEMBERS, METHODS

        if self.members is None:
            object.__setattr__(self, "members", DEFAULT_MEMBERS if method.ensemble else 1)
        if isinstance(self.members, bool) or not isinstance(self.members, numbers.Integral) \
                or not 1 <= self.members <= MAX_MEMBERS:
            raise ConfigError(f"members must be an integer in 1..{MAX_MEMBERS}, got {self.members!r}")
        object.__setattr__(self, "members", int(self.members))
        if not method.ensemble and self.members != 1:
            ensembles = ", ".join(m.name for m in METHODS.values() if m.ensemble)
            raise ConfigError(f"method {self.method} trains one network, so members must be 1, got "
                              f"{self.members}; ensemble methods: {ensembles}")

    def _check_threshold_lr_scale(self, method: Method) -> None:
        """A scale in (0, MAX_THRESHOLD_LR_SCALE]; another than 1 only where a quantizer learns."""
        from softbits.training.methods import METHODS

        if not 0 < self.threshold_lr_scale <= MAX_THRESHOLD_LR_SCALE:
            raise ConfigError(f"threshold_lr_scale must be in (0, {MAX_THRESHOLD_LR_SCALE:g}], "
                              f"got {self.threshold_lr_scale!r}")
        if self.threshold_lr_scale != 1.0 and not method.learns_quantizer:
            learners = ", ".join(m.name for m in METHODS.values() if m.learns_quantizer)
            raise ConfigError(f"method {self.method} learns no quantizer parameters, so "
                              f"threshold_lr_scale must be 1, got {self.threshold_lr_scale:g}; "
                              f"methods that learn them: {learners}")

    def _check_recipe(self) -> None:
        """The optimizer, learning-rate schedule and recipe name; a warm-up that could not apply
        (constant learning rate, or no epoch left after it) is refused rather than ignored."""
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of: "
                              f"{', '.join(LR_SCHEDULES)}")
        if self.warmup_epochs and self.lr_schedule != "cosine":
            raise ConfigError(f"warmup_epochs applies to lr_schedule cosine, got {self.warmup_epochs} "
                              f"with lr_schedule {self.lr_schedule}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"warmup_epochs must be in 0..{self.epochs - 1} (fewer than the "
                              f"epochs), got {self.warmup_epochs}")
        check_recipe(self.recipe)

    @property
    def validation_share(self) -> float:
        """The share of the training part held out for validation: ``val_fraction``, or for a
        tree or ``auto`` predictor (which need validation rows) 0.15 when it is 0."""
        from softbits.training.predictors import GBDT_VAL_FRACTION

        if self.val_fraction > 0 or self.predictor == "mlp":
            return self.val_fraction
        return GBDT_VAL_FRACTION

    def feature_widths(self, n_features: int) -> tuple[int, ...]:
        """Each feature's code width: ``bits_per_feature``, or ``bits`` for every feature."""
        return self.bits_per_feature or (self.bits,) * n_features

    @property
    def compression_factor(self) -> float:
        """32 bits of float32 over the mean bits sent per feature (1 for full precision)."""
        from softbits.training.methods import get_method

        if not get_method(self.method).quantized:
            return 1.0
        if self.bits_per_feature is not None:
            return 32.0 * len(self.bits_per_feature) / sum(self.bits_per_feature)
        return 32.0 / self.bits

    def payload_bytes(self, n_features: int) -> int:
        """Bytes one sample sends: float32 features unquantized, else the packed codes."""
        from softbits.training.methods import get_method

        if not get_method(self.method).quantized:
            return 4 * n_features
        if self.bits_per_feature is not None:
            return widths_payload_bytes(self.bits_per_feature)
        return payload_bytes(n_features, self.bits)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; ``bits_per_feature`` only when set, ``threshold_lr_scale`` only
        when not 1 and ``predictor`` only when not ``mlp``, so model files and results keep the
        form they had before these existed."""
        out = asdict(self)
        if self.threshold_lr_scale == 1.0:
            del out["threshold_lr_scale"]
        if self.predictor == "mlp":
            del out["predictor"]
        if self.bits_per_feature is None:
            del out["bits_per_feature"]
        else:
            out["bits_per_feature"] = list(self.bits_per_feature)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def check_seeds(seed: Any, count: int = 1, what: str = "seed") -> int:
    """``--seed`` and the ``count - 1`` seeds after it all in 0..MAX_SEED, checked before any work."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"--{what} must be an integer, got {seed!r}")
    seed = int(seed)
    last = seed + max(int(count), 1) - 1
    if not 0 <= seed <= MAX_SEED or last > MAX_SEED:
        span = f"{seed}..{last}" if count > 1 else str(seed)
        raise ConfigError(f"--{what} {span} leaves 0..{MAX_SEED} (numpy and scikit-learn take 32-bit seeds); "
                          f"choose --{what} <= {MAX_SEED - max(int(count), 1) + 1}")
    return seed


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
