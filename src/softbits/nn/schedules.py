"""Temperature schedules: the temperature each epoch trains with.

``exponential`` is the paper's: after every epoch τ ← max(τ·d^(1/E), 1e-4), starting at τ = 1, so
epoch e (0-based) trains with max(d^(e/E), 1e-4). The ablation schedules run over ``steps`` =
epochs from ``max`` (1) to ``min`` (the decrease factor): linear, log-spaced, warmup, cosine and
cyclical. The trainer asks the schedule explicitly before each epoch; in a model of your own,
:class:`Annealer` does the asking and sets τ on every soft quantizer the model holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import nn

from softbits.errors import ConfigError

__all__ = ["SCHEDULES", "Annealer", "TemperatureSchedule", "anneal", "make_schedule"]

TAU_FLOOR = 1e-4
SCHEDULES = ("exponential", "linear", "logspace", "warmup", "cosine", "cyclical", "constant")


def _linear(start: float, end: float, n: int) -> np.ndarray:
    return np.linspace(start, end, n) if n > 1 else np.array([start], dtype=np.float64)[:n]


@dataclass(frozen=True)
class TemperatureSchedule:
    """``name`` over ``epochs`` epochs from ``tau_max`` towards ``tau_min``."""

    name: str = "exponential"
    epochs: int = 30
    tau_min: float = 1e-3
    tau_max: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.name!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.epochs < 1:
            raise ConfigError("epochs must be >= 1")
        if not (0 < self.tau_min <= self.tau_max):
            raise ConfigError("temperatures must satisfy 0 < tau_min (decrease factor) <= tau_max")

    def values(self) -> np.ndarray:
        """Temperature used in each epoch, shape [epochs]."""
        n, hi, lo = self.epochs, self.tau_max, self.tau_min
        i = np.arange(n, dtype=np.float64)
        if self.name == "exponential":
            return np.maximum(hi * lo ** (i / n), TAU_FLOOR)
        if self.name == "constant":
            return np.full(n, hi)
        if self.name == "linear":
            return _linear(hi, lo, n)
        if self.name == "logspace":
            return np.geomspace(hi, lo, n) if n > 1 else np.array([hi])
        if self.name == "warmup":
            half = n // 2
            return np.concatenate([np.full(half, hi), _linear(hi, lo, n - half)])
        if self.name == "cosine":
            if n == 1:
                return np.array([hi])
            return lo + (hi - lo) * (1 + np.cos(math.pi * i / (n - 1))) / 2
        # cyclical: thirds max→min, min→max, max→min
        a, b = n // 3 + (n % 3 > 0), n // 3 + (n % 3 > 1)
        c = n - a - b
        return np.concatenate([_linear(hi, lo, a), _linear(lo, hi, b), _linear(hi, lo, c)])

    def __call__(self, epoch: int) -> float:
        return float(self.values()[epoch])


def make_schedule(name: str, epochs: int, decrease_factor: float) -> TemperatureSchedule:
    """The schedule the CLI means: ``decrease_factor`` is the paper's d (and the ablations' min)."""
    return TemperatureSchedule(name=name, epochs=epochs, tau_min=decrease_factor)


def _soft_quantizers(module: nn.Module) -> list[nn.Module]:
    """The submodules (``module`` included) whose forward reads a temperature."""
    return [m for m in module.modules() if getattr(m, "uses_temperature", False)
            and callable(getattr(m, "set_temperature", None))]


def anneal(module: nn.Module, tau: float) -> int:
    """Set temperature ``tau`` on every soft quantizer inside ``module``; returns how many.

    Hard quantizers (Bw-MQ, Bw-QQ, LSQ, ...) ignore temperatures and are left alone.
    """
    if not (math.isfinite(tau) and tau > 0):
        raise ConfigError(f"temperature must be a positive finite number, got {tau!r}")
    found = _soft_quantizers(module)
    for quantizer in found:
        quantizer.set_temperature(tau)  # type: ignore[operator]
    return len(found)


class Annealer:
    """The annealing hook for a model softbits did not build.

    Call it with the epoch (or step) index before that epoch trains: it sets the schedule's
    temperature on every soft quantizer in ``module`` and returns it. For per-step annealing give
    the schedule the number of steps as ``epochs``.

    Parameters
    ----------
    module
        Any ``nn.Module`` holding one or more soft quantizers (e.g. ``BitwiseQuantizer``).
    schedule
        The temperature of each index, e.g. ``TemperatureSchedule("exponential", epochs=30)``.
    """

    def __init__(self, module: nn.Module, schedule: TemperatureSchedule) -> None:
        if not _soft_quantizers(module):
            raise ValueError(f"{type(module).__name__} holds no soft quantizer to anneal; "
                             "put a BitwiseQuantizer (soft=True) or SoftQuantizer in it")
        self.module, self.schedule = module, schedule
        self._values = schedule.values()

    def __len__(self) -> int:
        return len(self._values)

    def __call__(self, index: int) -> float:
        if not 0 <= index < len(self._values):
            raise IndexError(f"index {index} is outside the schedule's {len(self._values)} epochs/steps")
        tau = float(self._values[index])
        anneal(self.module, tau)
        return tau
