"""The training engine: data as tensors on the device, sliced batches, explicit schedule.

One epoch driver, :func:`run_epochs`, trains one model or K stacked members: per epoch it asks
each member's :class:`EpochPlan` for its temperature and learning rate, lets a step strategy
train and validate, keeps each member's best epoch, and writes the histories. A strategy knows
how to step (:class:`SingleSteps` here: one module, a torch optimizer;
:class:`softbits.training.stacked.StackedSteps`: K members in one batched model), the driver
knows when. The engine never knows which method it trains; it sees modules, schedules and tensors.
"""

from __future__ import annotations

import copy
import math
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from softbits.errors import ConfigError, DataError
from softbits.nn.network import QuantizedMLP, thermometer_forward
from softbits.nn.schedules import TemperatureSchedule

__all__ = [
    "EpochPlan",
    "EvalResult",
    "FitResult",
    "SingleSteps",
    "StepStrategy",
    "evaluate",
    "fit",
    "iterate_batches",
    "lr_factors",
    "predict_tensor",
    "resolve_device",
    "run_epochs",
    "seed_everything",
    "target_tensor",
    "to_tensor",
    "train_epoch",
]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; otherwise ``cpu``, ``cuda`` or ``cuda:N``, present here.

    Other torch device types (mps, meta, xla, …) are refused by name: the engine and the model
    file are tested on CPU and CUDA only, and ``meta`` would "train" without any data.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:[0-9]+)?", name):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} requested but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return the generator that shuffles batches."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def to_tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """Features as float32 on ``device``."""
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)


def target_tensor(y: np.ndarray, device: torch.device, task: str) -> torch.Tensor:
    """Targets as a 1-D tensor (float32, or class indices for classification).

    A column [N, 1] is flattened: against the network's [N] output it would broadcast to an
    [N, N] loss that trains silently on the wrong objective.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ConfigError(f"targets must be one value per row, got shape {y.shape}")
    dtype = torch.long if task == "classification" else torch.float32
    return torch.as_tensor(np.ascontiguousarray(y), dtype=dtype, device=device)


def iterate_batches(n: int, batch_size: int, generator: torch.Generator,
                    device: torch.device) -> Iterator[torch.Tensor]:
    """Shuffled index batches over n rows (the last one may be smaller)."""
    perm = torch.randperm(n, generator=generator).to(device)
    yield from perm.split(batch_size)


def _loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """MSE or cross-entropy of outputs [N, d_out] against targets [N].

    Outputs [K, N, d_out] carry a leading member axis (an ensemble in training mode): the loss is
    the mean of the K members' losses on the same targets, so member k's gradient is its own loss's
    gradient over K.
    """
    if out.dim() == 3:
        out, y = out.flatten(0, 1), y.repeat(out.shape[0])
    if task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out.squeeze(-1), y)


Forward = Callable[[torch.Tensor], torch.Tensor]


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, X: torch.Tensor,
                y: torch.Tensor, *, task: str, batch_size: int,
                generator: torch.Generator, forward: Forward | None = None) -> float:
    """One pass over shuffled batches; returns the mean training loss. ``forward`` maps a batch
    of ``X`` to the outputs in place of ``model`` (``model`` still sets train mode)."""
    model.train()
    step = model if forward is None else forward
    total = torch.zeros((), device=X.device)
    for idx in iterate_batches(X.shape[0], batch_size, generator, X.device):
        loss = _loss(step(X[idx]), y[idx], task)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * idx.numel()
    return float(total) / X.shape[0]


@dataclass
class EvalResult:
    """Metrics of one evaluation; ``mse`` on the standardized target for regression."""

    loss: float
    mse: float | None = None
    accuracy: float | None = None


@torch.no_grad()
def predict_tensor(model: nn.Module, X: torch.Tensor, *, soft: bool = False,
                   batch_size: int = 16384, forward: Forward | None = None) -> torch.Tensor:
    """Eval-mode outputs; ``soft`` keeps the quantizer in its training (sigmoid) form;
    ``forward`` reads ``X`` in place of ``model``."""
    model.eval()
    quantizer = getattr(model, "quantizer", None)
    if soft and quantizer is not None:
        quantizer.train()
    step = model if forward is None else forward
    try:
        return torch.cat([step(xb) for xb in X.split(batch_size)])
    finally:
        model.eval()


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, task: str,
             soft: bool = False, forward: Forward | None = None) -> EvalResult:
    out = predict_tensor(model, X, soft=soft, forward=forward)
    loss = float(_loss(out, y, task))
    if task == "classification":
        return EvalResult(loss=loss, accuracy=float((out.argmax(-1) == y).float().mean()))
    return EvalResult(loss=loss, mse=loss)


@dataclass
class FitResult:
    """What training did: per-epoch losses, temperatures, learning rates, seconds in the loop."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    temperatures: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    best_epoch: int | None = None
    lrs: list[float] = field(default_factory=list)

    @property
    def final_train_loss(self) -> float:
        """The last epoch's training loss (NaN when no epoch ran)."""
        return self.train_loss[-1] if self.train_loss else math.nan

    @property
    def final_temperature(self) -> float | None:
        """The last epoch's temperature (None when the quantizer has none)."""
        return self.temperatures[-1] if self.temperatures else None

    def epochs(self) -> list[dict[str, float | int]]:
        """One record per epoch (``epoch``, ``train_loss`` and, where tracked, ``val_loss``,
        ``temperature`` and ``lr``): a training's curves in a form that plots without re-running
        it."""
        records: list[dict[str, float | int]] = []
        for epoch, loss in enumerate(self.train_loss):
            record: dict[str, float | int] = {"epoch": epoch, "train_loss": loss}
            if epoch < len(self.val_loss):
                record["val_loss"] = self.val_loss[epoch]
            if epoch < len(self.temperatures):
                record["temperature"] = self.temperatures[epoch]
            if epoch < len(self.lrs):
                record["lr"] = self.lrs[epoch]
            records.append(record)
        return records

    def to_dict(self) -> dict[str, Any]:
        """The JSON form a model file keeps (:meth:`from_dict` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> FitResult:
        """A record written by :meth:`to_dict`; ``ValueError`` names what does not fit."""
        if not isinstance(data, dict) or set(data) - {f.name for f in fields(cls)}:
            raise DataError("history must be a mapping of train_loss, val_loss, temperatures, "
                            "train_seconds, best_epoch and lrs")
        for name in ("train_loss", "val_loss", "temperatures", "lrs"):
            values = data.get(name, [])
            if not isinstance(values, list) or not all(_is_number(v) for v in values):
                raise DataError(f"history.{name} must be a list of numbers")
        if not _is_number(data.get("train_seconds", 0.0)):
            raise DataError("history.train_seconds must be a number")
        best = data.get("best_epoch")
        if best is not None and (isinstance(best, bool) or not isinstance(best, int) or best < 0):
            raise DataError("history.best_epoch must be an epoch index or null")
        return cls(**data)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def lr_factors(lr_schedule: str, epochs: int, warmup_epochs: int = 0) -> list[float]:
    """Each epoch's learning rate as a multiple of the base rate.

    ``constant``: 1 throughout (the paper's). ``cosine``: (e + 1)/(W + 1) for the W warm-up
    epochs, then half a cosine period over the remaining epochs, sampled at each epoch's middle so
    that the last epoch still trains, at about 0.
    """
    if lr_schedule == "constant":
        return [1.0] * epochs
    if lr_schedule != "cosine":
        raise ConfigError(f"unknown lr_schedule {lr_schedule!r}; choose constant or cosine")
    decay = epochs - warmup_epochs
    return [(e + 1) / (warmup_epochs + 1) if e < warmup_epochs
            else 0.5 * (1 + math.cos(math.pi * (e - warmup_epochs + 0.5) / decay))
            for e in range(epochs)]


_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"adam": torch.optim.Adam,
                                                        "adamw": torch.optim.AdamW}


def _param_groups(model: QuantizedMLP, threshold_lr_scale: float) -> list[dict[str, Any]]:
    """One group for everything, or with a scale other than 1 the network's parameters and the
    quantizer's (with ``lr_scale``) apart; with 1 the optimizer is the paper's, step for step."""
    learned = [] if model.quantizer is None else list(model.quantizer.parameters())
    if threshold_lr_scale == 1.0 or not learned:
        return [{"params": list(model.parameters())}]
    ids = {id(p) for p in learned}
    network = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": network}, {"params": learned, "lr_scale": threshold_lr_scale}]


EpochCallback = Callable[[int, dict[str, Any]], None]


@dataclass(frozen=True)
class EpochPlan:
    """What one member trains with in each of its epochs.

    ``temperatures`` is None for a member whose quantizer reads none (hard, or absent);
    ``on_epoch_end(epoch, logs)`` receives ``train_loss``, ``lr`` and, with validation,
    ``val_loss``.
    """

    epochs: int
    lr: float
    lr_factors: Sequence[float]
    temperatures: Sequence[float] | None = None
    on_epoch_end: EpochCallback | None = None

    def lr_at(self, epoch: int) -> float:
        return self.lr * self.lr_factors[epoch]


class StepStrategy(Protocol):
    """How :func:`run_epochs` trains its K members (K = 1 for a single model)."""

    device: torch.device

    def start_epoch(self, live: Sequence[bool], temperatures: Sequence[float | None],
                    lrs: Sequence[float]) -> None:
        """Set each live member's temperature (None: leave it) and learning rate."""

    def train_epoch(self, live: Sequence[bool]) -> list[float]:
        """One pass over each live member's shuffled batches; its mean training loss."""

    def validation_losses(self, live: Sequence[bool]) -> list[float | None]:
        """Each live member's hard validation loss (None: it holds no validation rows)."""

    def keep(self, member: int) -> None:
        """Remember member's present state as its best."""

    def restore(self, members: Sequence[int]) -> None:
        """Put back the kept states of ``members`` and switch to eval mode."""


def run_epochs(steps: StepStrategy, plans: Sequence[EpochPlan]) -> list[FitResult]:
    """The epoch driver: member k trains ``plans[k].epochs`` epochs (the others go on past its
    last); with validation rows it ends at its epoch of lowest hard validation loss. Its
    ``train_seconds`` is the wall time until the end of its last epoch."""
    results = [FitResult() for _ in plans]
    best = [math.inf] * len(plans)
    start = time.perf_counter()
    for epoch in range(max(p.epochs for p in plans)):
        live = [epoch < p.epochs for p in plans]
        taus = [float(p.temperatures[epoch]) if on and p.temperatures is not None else None
                for p, on in zip(plans, live, strict=True)]
        lrs = [p.lr_at(epoch) if on else 0.0 for p, on in zip(plans, live, strict=True)]
        steps.start_epoch(live, taus, lrs)
        losses = steps.train_epoch(live)
        vals = steps.validation_losses(live)
        if steps.device.type == "cuda":
            torch.cuda.synchronize(steps.device)
        elapsed = time.perf_counter() - start
        for k, (plan, result) in enumerate(zip(plans, results, strict=True)):
            if not live[k]:
                continue
            if taus[k] is not None:
                result.temperatures.append(taus[k])  # type: ignore[arg-type]
            result.train_loss.append(float(losses[k]))
            result.lrs.append(lrs[k])
            logs: dict[str, Any] = {"train_loss": float(losses[k]), "lr": lrs[k]}
            val = vals[k]
            if val is not None:
                result.val_loss.append(float(val))
                logs["val_loss"] = float(val)
                if val < best[k]:
                    best[k], result.best_epoch = float(val), epoch
                    steps.keep(k)
            result.train_seconds = elapsed
            if plan.on_epoch_end is not None:
                plan.on_epoch_end(epoch, logs)
    steps.restore([k for k, r in enumerate(results) if r.best_epoch is not None])
    return results


class SingleSteps:
    """The step strategy of one module: ``optimizer`` over shuffled batches of ``X``.

    For a quantizer whose bits follow from the codes alone (:func:`thermometer_forward`) the
    rows are encoded once and the steps read the codes: the same model, trained without
    building its thermometer bits batch after batch.
    """

    def __init__(self, model: QuantizedMLP, optimizer: torch.optim.Optimizer, X: torch.Tensor,
                 y: torch.Tensor, *, task: str, batch_size: int, generator: torch.Generator,
                 X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None) -> None:
        self.forward = thermometer_forward(model)
        if self.forward is not None and model.quantizer is not None:
            with torch.no_grad():
                X = model.quantizer.encode(X)
                X_val = None if X_val is None else model.quantizer.encode(X_val)
        self.model, self.optimizer, self.X, self.y = model, optimizer, X, y
        self.task, self.batch_size, self.generator = task, batch_size, generator
        self.X_val, self.y_val = X_val, y_val
        self.device = X.device
        self._best: dict[str, torch.Tensor] | None = None

    def start_epoch(self, live: Sequence[bool], temperatures: Sequence[float | None],
                    lrs: Sequence[float]) -> None:
        if temperatures[0] is not None and self.model.quantizer is not None:
            self.model.quantizer.set_temperature(temperatures[0])
        for group in self.optimizer.param_groups:
            group["lr"] = lrs[0] * group.get("lr_scale", 1.0)

    def train_epoch(self, live: Sequence[bool]) -> list[float]:
        return [train_epoch(self.model, self.optimizer, self.X, self.y, task=self.task,
                            batch_size=self.batch_size, generator=self.generator, forward=self.forward)]

    def validation_losses(self, live: Sequence[bool]) -> list[float | None]:
        if self.X_val is None or self.y_val is None:
            return [None]
        return [evaluate(self.model, self.X_val, self.y_val, task=self.task, forward=self.forward).loss]

    def keep(self, member: int) -> None:
        self._best = copy.deepcopy(self.model.state_dict())

    def restore(self, members: Sequence[int]) -> None:
        self.model.eval()
        if members and self._best is not None:
            self.model.load_state_dict(self._best)


def fit(model: QuantizedMLP, X: torch.Tensor, y: torch.Tensor, *, task: str, epochs: int,
        lr: float, weight_decay: float = 0.0, batch_size: int = 512,
        schedule: TemperatureSchedule | None = None, generator: torch.Generator,
        X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
        on_epoch_end: EpochCallback | None = None,
        optimizer: str = "adam", lr_schedule: str = "constant",
        warmup_epochs: int = 0, threshold_lr_scale: float = 1.0) -> FitResult:
    """``optimizer`` (Adam as in the paper, or AdamW) on the whole module for ``epochs`` epochs,
    the rate following ``lr_schedule`` (:func:`lr_factors`; ``logs["lr"]`` says each epoch's).
    The quantizer's parameters train at ``threshold_lr_scale`` times that rate (1: one rate for
    everything, as in the paper).

    With validation tensors, the state with the lowest validation loss (hard quantization) is
    restored at the end; without them the last epoch's model is kept, as in the paper.
    """
    if optimizer not in _OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(_OPTIMIZERS)}")
    opt = _OPTIMIZERS[optimizer](_param_groups(model, threshold_lr_scale), lr=lr,
                                 weight_decay=weight_decay)
    quantizer = model.quantizer
    soft = quantizer is not None and schedule is not None and quantizer.uses_temperature
    plan = EpochPlan(epochs=epochs, lr=lr, lr_factors=lr_factors(lr_schedule, epochs, warmup_epochs),
                     temperatures=schedule.values().tolist() if soft and schedule is not None else None,
                     on_epoch_end=on_epoch_end)
    steps = SingleSteps(model, opt, X, y, task=task, batch_size=batch_size, generator=generator,
                        X_val=X_val, y_val=y_val)
    return run_epochs(steps, [plan])[0]
