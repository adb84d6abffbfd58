"""The training engine: data as tensors on the device, sliced batches, explicit schedule.

The pieces stay separate (:func:`iterate_batches`, :func:`train_epoch`, :func:`evaluate`,
:func:`fit`) so that a stacked many-models engine can reuse them. The engine never knows which
method it trains; it sees a module, a schedule and tensors.
"""

from __future__ import annotations

import copy
import math
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from softbits.errors import ConfigError, DataError
from softbits.nn.network import QuantizedMLP
from softbits.nn.schedules import TemperatureSchedule

__all__ = [
    "EvalResult",
    "FitResult",
    "evaluate",
    "fit",
    "iterate_batches",
    "lr_factors",
    "predict_tensor",
    "resolve_device",
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


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, X: torch.Tensor,
                y: torch.Tensor, *, task: str, batch_size: int,
                generator: torch.Generator) -> float:
    """One pass over shuffled batches; returns the mean training loss."""
    model.train()
    total = torch.zeros((), device=X.device)
    for idx in iterate_batches(X.shape[0], batch_size, generator, X.device):
        loss = _loss(model(X[idx]), y[idx], task)
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
                   batch_size: int = 16384) -> torch.Tensor:
    """Eval-mode outputs; ``soft`` keeps the quantizer in its training (sigmoid) form."""
    model.eval()
    quantizer = getattr(model, "quantizer", None)
    if soft and quantizer is not None:
        quantizer.train()
    try:
        return torch.cat([model(xb) for xb in X.split(batch_size)])
    finally:
        model.eval()


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, task: str,
             soft: bool = False) -> EvalResult:
    out = predict_tensor(model, X, soft=soft)
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


def fit(model: QuantizedMLP, X: torch.Tensor, y: torch.Tensor, *, task: str, epochs: int,
        lr: float, weight_decay: float = 0.0, batch_size: int = 512,
        schedule: TemperatureSchedule | None = None, generator: torch.Generator,
        X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
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
    factors = lr_factors(lr_schedule, epochs, warmup_epochs)
    quantizer = model.quantizer
    temps = schedule.values() if schedule is not None else None
    result = FitResult()
    best_state: dict[str, torch.Tensor] | None = None
    best_loss = float("inf")
    start = time.perf_counter()
    for epoch in range(epochs):
        if quantizer is not None and temps is not None and quantizer.uses_temperature:
            quantizer.set_temperature(temps[epoch])
            result.temperatures.append(float(temps[epoch]))
        for group in opt.param_groups:
            group["lr"] = lr * factors[epoch] * group.get("lr_scale", 1.0)
        loss = train_epoch(model, opt, X, y, task=task, batch_size=batch_size,
                           generator=generator)
        result.train_loss.append(loss)
        result.lrs.append(lr * factors[epoch])
        logs: dict[str, Any] = {"train_loss": loss, "lr": lr * factors[epoch]}
        if X_val is not None and y_val is not None:
            val = evaluate(model, X_val, y_val, task=task).loss
            result.val_loss.append(val)
            logs["val_loss"] = val
            if val < best_loss:
                best_loss, result.best_epoch = val, epoch
                best_state = copy.deepcopy(model.state_dict())
        if on_epoch_end is not None:
            on_epoch_end(epoch, logs)
    model.eval()
    if best_state is not None:
        model.load_state_dict(best_state)
    if X.device.type == "cuda":
        torch.cuda.synchronize(X.device)
    result.train_seconds = time.perf_counter() - start
    return result
