"""Temperature schedules: the temperature each epoch trains with.

``exponential`` is the paper's: after every epoch τ ← max(τ·d^(1/E), 1e-4), starting at τ = 1, so
epoch e (0-based) trains with max(d^(e/E), 1e-4). The ablation schedules run over ``steps`` =
epochs from ``max`` (1) to ``min`` (the decrease factor): linear, log-spaced, warmup, cosine and
cyclical. The trainer asks the schedule explicitly before each epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from softbits.errors import ConfigError

__all__ = ["SCHEDULES", "TemperatureSchedule", "make_schedule"]

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
