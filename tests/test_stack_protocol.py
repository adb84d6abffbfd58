"""``reproduce --stack``: stacked protocol runs give the unstacked table, per-member store and
resume, visible fall-back for methods that do not stack, and one-line refusals before training.

Same tiny protocol as tests/test_experiments_cli.py (offline diabetes, one-layer nets, no
dropout: stacked members then reproduce their single trainings up to float rounding).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import softbits.training.stacked as stack_module
import softbits.training.train as train_module
from softbits.cli import main
from softbits.errors import ConfigError
from softbits.experiments.stacking import CPU_STACK, StackTask, check_stack, plan
from softbits.experiments.tasks import Task
from test_experiments_cli import TINY_GRID, _results, _tiny_args

from conftest import run_main

KEY = ["dataset", "method", "bits", "setting_id", "phase", "idx", "seed"]


@pytest.fixture
def tiny_grid(tmp_path: Path) -> Path:
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(TINY_GRID))
    return path


def _stacked_counts(store: Path) -> pd.Series:
    with sqlite3.connect(store) as conn:
        rows = pd.read_sql_query("SELECT method, metrics FROM results", conn)
    return rows.set_index("method")["metrics"].map(lambda m: json.loads(m)["stacked"])


def _assert_same_table(a: Path, b: Path) -> None:
    x, y = _results(a).sort_values(KEY), _results(b).sort_values(KEY)
    pd.testing.assert_frame_equal(x[KEY].reset_index(drop=True), y[KEY].reset_index(drop=True))
    pd.testing.assert_series_equal(x["test_mse"].reset_index(drop=True), y["test_mse"].reset_index(drop=True),
                                   rtol=1e-4, atol=1e-6)


def test_stacked_protocol_equals_unstacked(tmp_path: Path, tiny_grid: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    alone, stacked = tmp_path / "alone.sqlite", tmp_path / "stacked.sqlite"
    code, out_alone, err = run_main(capsys, *_tiny_args(tiny_grid, alone, "--jobs", "1", "--stack", "1"))
    assert code == 0, err
    code, out, err = run_main(capsys, *_tiny_args(tiny_grid, stacked, "--jobs", "1", "--stack", "4"))
    assert code == 0, err
    _assert_same_table(alone, stacked)
    counts = _stacked_counts(stacked)
    # bw-sq and the shared fp training stack (2 folds × 2 settings of one width → stacks of 2..4)
    assert counts.loc["bw-sq"].max() > 1 and counts.loc["fp"].max() > 1
    assert (counts.loc["lsq"] == 1).all() and (_stacked_counts(alone) == 1).all()
    # the method that cannot stack is named before the trainings, with the reason
    assert "note: 8 lsq trainings run one at a time: method lsq has no stacked training" in err
    # progress still counts trainings, not stacks
    assert json.loads(out)["runs"] == json.loads(out_alone)["runs"] == 30


def test_killed_stack_loses_only_its_members(tmp_path: Path, tiny_grid: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s.sqlite"
    real, calls = stack_module.fit_stacked, []

    def dies_on_second_stack(*args, **kwargs):
        calls.append(len(args[0]))
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill: no clean-up in softbits runs
        return real(*args, **kwargs)

    monkeypatch.setattr(stack_module, "fit_stacked", dies_on_second_stack)
    with pytest.raises(SystemExit) as stopped:
        main(_tiny_args(tiny_grid, store, "--jobs", "1", "--stack", "2", "--methods", "bw-sq"))
    assert stopped.value.code == 130
    kept = _results(store)
    assert len(kept) == calls[0]  # the first stack's members, each written as it finished
    monkeypatch.setattr(stack_module, "fit_stacked", real)
    code, _, err = run_main(capsys, *_tiny_args(tiny_grid, store, "--jobs", "1", "--stack", "2",
                                                "--methods", "bw-sq"))
    assert code == 0, err
    full = tmp_path / "full.sqlite"
    code, _, err = run_main(capsys, *_tiny_args(tiny_grid, full, "--jobs", "1", "--stack", "1", "--methods", "bw-sq"))
    assert code == 0, err
    _assert_same_table(full, store)


@pytest.mark.parametrize("value", ["0", "-3", "many", "2.5"])
def test_bad_stack_values_are_refused_before_training(tmp_path: Path, tiny_grid: Path, value: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s.sqlite"
    code, _, err = run_main(capsys, *_tiny_args(tiny_grid, store, "--stack", value))
    assert code == 2
    assert err.strip() == f"error: --stack must be a positive integer or auto, got {value!r}"
    assert not store.exists()


def test_stack_too_large_for_memory_is_refused_before_training(tmp_path: Path, tiny_grid: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(train_module, "available_memory", lambda device: 1 << 20)
    store = tmp_path / "s.sqlite"
    code, _, err = run_main(capsys, *_tiny_args(tiny_grid, store, "--stack", "64", "--jobs", "1"))
    assert code == 2
    line = err.strip()
    assert "\n" not in line and line.startswith("error: a stack of 64 trainings of 1x") and "GiB free" in line
    assert "use --stack" in line and not store.exists()
    # auto shrinks to what fits instead of refusing
    code, _, err = run_main(capsys, *_tiny_args(tiny_grid, store, "--stack", "auto", "--jobs", "1",
                                                "--methods", "bw-sq", "--bits", "2"))
    assert code == 0, err


def test_cuda_without_cuda_is_refused(tmp_path: Path, tiny_grid: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    store = tmp_path / "s.sqlite"
    code, _, err = run_main(capsys, *_tiny_args(tiny_grid, store, "--stack", "auto", "--device", "cuda"))
    assert code == 2 and "cuda" in err.lower() and err.count("\n") == 1
    assert not store.exists()


def test_stacking_is_the_default_where_it_helps(tmp_path: Path, tiny_grid: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s.sqlite"
    code, _, err = run_main(capsys, *_tiny_args(tiny_grid, store, "--jobs", "1", "--methods", "bw-sq"))
    assert code == 0, err
    assert _stacked_counts(store).max() > 1  # one-layer 8/16-neuron nets on a CPU: stacks of up to 8


def test_check_stack() -> None:
    assert check_stack("auto") == "auto" and check_stack(" AUTO ") == "auto"
    assert check_stack("3") == 3 and check_stack(1) == 1
    for bad in (0, -1, True, "x", 1.5):
        with pytest.raises(ConfigError):
            check_stack(bad)


def _tasks(neurons: int, n: int) -> list[Task]:
    from softbits.experiments.settings import Setting
    from softbits.experiments.tasks import Evaluation

    setting = Setting.from_mapping({**{k: v[0] for k, v in TINY_GRID.items()}, "hidden_neurons": neurons})
    return [Task("diabetes", "bw-sq", 2, setting, "test", r, r, (Evaluation("bw-sq", 2),), device="cpu")
            for r in range(n)]


def test_auto_sizes_cpu_stacks_by_width_and_keeps_wide_networks_alone() -> None:
    small, medium = CPU_STACK[0][1], CPU_STACK[1][1]
    units, notes = plan(_tasks(32, 10), "auto", n_features=lambda _: 10)
    assert [len(u.tasks) if isinstance(u, StackTask) else 1 for u in units] == [small, 10 - small]
    units, _ = plan(_tasks(128, 10), "auto", n_features=lambda _: 10)
    assert [len(u.tasks) if isinstance(u, StackTask) else 1 for u in units] == [medium, medium, 10 - 2 * medium]
    units, _ = plan(_tasks(1024, 3), "auto", n_features=lambda _: 10)
    assert all(isinstance(u, Task) for u in units) and notes == []
