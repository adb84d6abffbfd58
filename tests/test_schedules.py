"""Temperature schedules: the paper's per-epoch decay and the ablation shapes' endpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from softbits.errors import ConfigError
from softbits.nn.schedules import SCHEDULES, TemperatureSchedule


def test_exponential_matches_iterative_rule():
    epochs, d = 30, 1e-3
    values = TemperatureSchedule("exponential", epochs, tau_min=d).values()
    tau, expected = 1.0, []
    for _ in range(epochs):
        expected.append(tau)
        tau = max(tau * d ** (1 / epochs), 1e-4)
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    assert values[0] == 1.0
    assert values[-1] == pytest.approx(d ** ((epochs - 1) / epochs))


def test_exponential_floor():
    values = TemperatureSchedule("exponential", 10, tau_min=1e-12).values()
    assert values.min() == pytest.approx(1e-4)
    assert np.all(np.diff(values) <= 0)


@pytest.mark.parametrize("name", ["linear", "logspace", "cosine"])
def test_monotone_schedules_run_from_max_to_min(name):
    values = TemperatureSchedule(name, 20, tau_min=1e-2).values()
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(1e-2)
    assert np.all(np.diff(values) <= 1e-12)


def test_cosine_formula():
    v = TemperatureSchedule("cosine", 11, tau_min=0.1).values()
    i = np.arange(11)
    np.testing.assert_allclose(v, 0.1 + 0.9 * (1 + np.cos(math.pi * i / 10)) / 2)


def test_warmup_holds_max_for_half_then_decays():
    v = TemperatureSchedule("warmup", 10, tau_min=1e-3).values()
    assert np.all(v[:5] == 1.0)
    assert v[5] == pytest.approx(1.0) and v[-1] == pytest.approx(1e-3)


def test_cyclical_thirds():
    v = TemperatureSchedule("cyclical", 9, tau_min=1e-3).values()
    assert len(v) == 9
    assert v[0] == pytest.approx(1.0) and v[2] == pytest.approx(1e-3)
    assert v[3] == pytest.approx(1e-3) and v[5] == pytest.approx(1.0)
    assert v[6] == pytest.approx(1.0) and v[8] == pytest.approx(1e-3)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("epochs", [1, 2, 7])
def test_every_schedule_has_one_value_per_epoch(name, epochs):
    v = TemperatureSchedule(name, epochs, tau_min=1e-3).values()
    assert v.shape == (epochs,) and np.all(v > 0) and np.all(v <= 1.0)


def test_bad_schedule_settings():
    with pytest.raises(ConfigError, match="unknown schedule"):
        TemperatureSchedule("zigzag", 10)
    with pytest.raises(ConfigError):
        TemperatureSchedule("linear", 0)
    with pytest.raises(ConfigError):
        TemperatureSchedule("linear", 5, tau_min=0)
