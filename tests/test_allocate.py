"""The payload-budget allocator (issue 12, item 3): budgets in bits and compact-frame bytes, the
nested coarser bins it evaluates without retraining, its choices on data whose important
features are known, and the record it leaves in ``train --json`` and the model file."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from softbits import TrainConfig, TrainedModel
from softbits.data import scale_split
from softbits.errors import ConfigError
from softbits.training.allocation import Coarsener, allocate, budget_bits, start_bits, train_allocated

from conftest import assert_train_refuses

SMALL = dict(layers=1, neurons=32, epochs=12, lr=1e-2, device="cpu")


def _signal_data(rng: np.random.Generator, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """x0 sets the target finely, x1 a little, x2 and x3 are noise."""
    X = rng.normal(size=(n, 4))
    y = np.sin(2 * X[:, 0]) + 2 * X[:, 0] + 0.3 * X[:, 1]
    return X, y


def test_budget_in_bits_and_compact_frame_bytes():
    assert budget_bits(None, None, 8) is None
    assert budget_bits(20, None, 8) == 20
    assert budget_bits(None, 11, 21) == 72  # 11 bytes less the 2 bytes of compact framing
    for args, match in [((0, None), "1..128"), ((129, None), "1..128"), ((None, 2), "no room for codes"),
                        ((None, 19), "--budget-bytes 19 gives 136"), ((8, 3), "not both")]:
        with pytest.raises(ConfigError, match=match):
            budget_bits(*args, 8)


def test_probe_starts_two_bits_above_the_mean_width_within_limits():
    assert start_bits(42, 21, 1) == 4  # uniform 2 bits of cpu_act
    assert start_bits(43, 21, 1) == 5
    assert start_bits(1, 8, 2) == 3
    assert start_bits(120, 8, 1) == 8


def test_coarser_bins_nest_in_the_probe_thresholds_and_snap_to_training_medians(rng):
    x = rng.normal(size=5000)
    table = np.quantile(x, np.arange(1, 8) / 8)[None]  # 3-bit quantile thresholds
    coarse = Coarsener(x[:, None], table, start=3)
    bounds, values = coarse.bins(0, 1)
    assert bounds.tolist() == [table[0, 3]]  # 1 bit keeps the median of the 3-bit table
    np.testing.assert_allclose(values, [np.median(x[x <= table[0, 3]]), np.median(x[x > table[0, 3]])])
    bounds2, _ = coarse.bins(0, 2)
    np.testing.assert_array_equal(bounds2, table[0, [1, 3, 5]])
    snapped = coarse.snap(x, 0, 2)
    # a snapped value stays in its coarser bin, so a 2-bit code cannot tell them apart
    np.testing.assert_array_equal(np.searchsorted(bounds2, snapped), np.searchsorted(bounds2, x))
    assert len(np.unique(snapped)) == 4
    np.testing.assert_array_equal(coarse.snap(x, 0, 0), np.full_like(x, np.median(x)))
    np.testing.assert_array_equal(coarse.snap(x, 0, 3), x)


def test_coarser_bin_values_are_the_medians_of_their_training_values(rng):
    """With ties on the boundaries, odd and even bins, and bins no training value falls in."""
    x = np.round(rng.normal(size=(301, 1)) * 3).astype(np.float32)
    table = np.sort(np.concatenate([rng.choice(x[:, 0], 9), [-20.0, -19.0, 30.0, 31.0, 32.0, 0.0]]))[None]
    coarse = Coarsener(x, table, start=4)
    for width in range(1, 4):
        bounds, values = coarse.bins(0, width)
        codes = np.searchsorted(bounds, x[:, 0], side="left")
        for k, value in enumerate(values):
            inside = x[codes == k, 0]
            if inside.size:
                assert value == np.median(inside.astype(np.float64))
            else:  # an empty bin stands inside itself
                assert np.searchsorted(bounds, np.float32(value), side="left") == k


def test_allocation_favours_the_informative_feature_and_holds_the_budget(rng):
    X, y = _signal_data(rng)
    chosen = allocate(X, (y - y.mean()) / y.std(), TrainConfig(method="bw-sq", **SMALL), 6, task="regression")
    w = chosen.widths
    assert sum(w) <= 6 and chosen.start_bits == 4
    assert w[0] == max(w) and w[0] >= 3 and w[2] + w[3] <= 1  # the noise gets a bit at most
    assert len(chosen.trace) == 4 * 4 - sum(w)
    again = allocate(X, (y - y.mean()) / y.std(), TrainConfig(method="bw-sq", **SMALL), 6, task="regression")
    assert again.widths == w  # seeded: the same rows validate, the same probe trains


def test_midpoint_methods_never_get_one_bit_and_a_budget_under_their_minimum_is_refused(rng):
    X, y = _signal_data(rng, n=1500)
    chosen = allocate(X, y, TrainConfig(method="pr-qq", **SMALL), 5, task="regression")
    assert 1 not in chosen.widths and sum(chosen.widths) <= 5
    with pytest.raises(ConfigError, match="at least 2 bits"):
        allocate(X, y, TrainConfig(method="pr-qq", **SMALL), 1, task="regression")
    for method in ("fp", "lsq"):
        with pytest.raises(ConfigError, match="widths"):
            allocate(X, y, TrainConfig(method=method, **SMALL), 4, task="regression")


def test_a_budget_the_widest_start_fits_gives_it_to_every_feature_without_a_probe(rng):
    X, y = _signal_data(rng, n=200)
    chosen = allocate(X, y, TrainConfig(method="bw-sq", **SMALL), 40, task="regression")
    assert chosen.widths == (8, 8, 8, 8) and chosen.trace == () and chosen.probe_seconds == 0


def test_allocation_uses_the_training_part_only(rng):
    X, y = _signal_data(rng, n=2000)
    split = scale_split(X[:1600], y[:1600], X[1600:], y[1600:], "regression")
    other = scale_split(X[:1600], y[:1600], X[1600:] * 0 + 5, y[1600:][::-1].copy(), "regression")
    names = ["a", "b", "c", "d"]
    config = TrainConfig(method="bw-sq", **SMALL)
    first = train_allocated(split, config, 6, task="regression", feature_names=names)
    second = train_allocated(other, config, 6, task="regression", feature_names=names)
    assert first.allocation["bits_per_feature"] == second.allocation["bits_per_feature"]
    assert first.widths == tuple(first.allocation["bits_per_feature"].values())


def test_classification_allocates_on_cross_entropy(rng):
    X, y = _signal_data(rng, n=1500)
    split = scale_split(X[:1200], (y[:1200] > 0).astype(np.int64), X[1200:], (y[1200:] > 0).astype(np.int64),
                        "classification")
    model = train_allocated(split, TrainConfig(method="bw-sq", **SMALL), 5, task="classification",
                            feature_names=["a", "b", "c", "d"], classes=["neg", "pos"])
    assert sum(model.allocation["bits_per_feature"].values()) <= 5
    assert model.allocation["bits_per_feature"]["a"] >= 2
    assert np.isfinite(model.metrics["test_loss"])


def _train(softbits_cmd, cli_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*softbits_cmd, "train", "--dataset", "diabetes", "--epochs", "4", "--layers", "1",
                           "--neurons", "16", "--device", "cpu", *args],
                          capture_output=True, text=True, env=cli_env, timeout=120)


def test_train_with_a_byte_budget_records_the_allocation(tmp_path, softbits_cmd, cli_env):
    path = tmp_path / "m.safetensors"
    run = _train(softbits_cmd, cli_env, "--budget-bytes", "4", "--json", "--save", str(path))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["budget_bits"] == 16 and sum(out["bits_per_feature"].values()) <= 16
    assert out["payload_bytes_per_sample"] <= 2 and out["payload_bytes_per_sample"] == out["allocation"]["payload_bytes_per_sample"]
    trace = out["allocation"]["trace"]
    assert len(trace) == 4 * 10 - out["allocation"]["code_bits"]
    assert {step["feature"] for step in trace} <= set(out["bits_per_feature"])
    loaded = TrainedModel.load(path)
    assert loaded.allocation == out["allocation"]
    assert loaded.widths == tuple(out["bits_per_feature"].values())


def test_train_without_a_budget_keeps_the_uniform_record(tmp_path, softbits_cmd, cli_env):
    path = tmp_path / "m.safetensors"
    run = _train(softbits_cmd, cli_env, "--bits", "3", "--json", "--save", str(path))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert not {"allocation", "budget_bits", "bits_per_feature"} & set(out)
    assert out["payload_bytes_per_sample"] == 4 and TrainedModel.load(path).allocation is None


@pytest.mark.parametrize("args, message", [
    (["--budget-bits", "0"], "a budget must be 1..160 code bits"),
    (["--budget-bits", "161"], "a budget must be 1..160 code bits"),
    (["--budget-bytes", "2"], "no room for codes"),
    (["--budget-bits", "8", "--budget-bytes", "4"], "not both"),
    (["--budget-bits", "8", "--bits-per-feature", "age=2"], "not both"),
    (["--budget-bits", "8", "--method", "fp"], "per-feature bit widths do not apply"),
    (["--budget-bits", "1", "--method", "pr-qq"], "at least 2 bits"),
])
def test_bad_budgets_are_one_line_errors_and_write_nothing(tmp_path, capsys, args, message):
    assert_train_refuses(capsys, tmp_path / "m.safetensors", args, message)


def test_bad_budget_exits_2_from_a_real_process(tmp_path, softbits_cmd, cli_env):
    path = tmp_path / "m.safetensors"
    run = _train(softbits_cmd, cli_env, "--budget-bytes", "2", "--save", str(path))
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "no room for codes" in run.stderr
    assert not path.exists()


def test_an_empty_coarser_bin_snaps_to_a_value_inside_it():
    x = np.array([-3.0, -2.0, 2.0, 3.0])  # nothing between the 1st and 3rd thresholds
    table = np.array([[-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 1.75]], dtype=np.float32)
    coarse = Coarsener(x[:, None], table, start=3)
    bounds, values = coarse.bins(0, 2)  # bounds -0.5, 0.5, 1.5
    assert (np.searchsorted(bounds.astype(np.float32), values.astype(np.float32)) == np.arange(4)).all()
