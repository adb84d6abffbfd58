"""``frontier`` and ``reproduce`` on a user's table (``--data FILE --target COL``), as ``train``
takes one (issue 18, item 4)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from softbits import load_dataset
from test_experiments_cli import TINY_GRID

from conftest import run_main


@pytest.fixture
def table(tmp_path):
    ds = load_dataset("diabetes")
    frame = pd.DataFrame(ds.X, columns=ds.feature_names)
    frame.insert(0, "progression", ds.y)  # not the last column: --target names it
    path = tmp_path / "my data.csv"
    frame.to_csv(path, index=False)
    return path


def test_frontier_runs_on_a_user_file(table, tmp_path, capsys):
    store = tmp_path / "f.sqlite"
    code, out, err = run_main(capsys, "frontier", "--data", table, "--target", "progression", "--budgets", "20",
                              "--seeds", "1", "--layers", "1", "--neurons", "8", "--epochs", "2", "--jobs", "1",
                              "--device", "cpu", "--store", store, "--json")
    assert code == 0, err
    result = json.loads(out)
    kinds = [(r["kind"], r["budget_bits"]) for r in result["rows"]]
    assert kinds == [("fp", 320), ("uniform", 20), ("allocated", 20)]
    assert all(np.isfinite(r["test_mse_mean"]) for r in result["rows"])
    assert result["rows"][0]["dataset"].endswith("my data.csv::progression")


def test_reproduce_runs_on_a_user_file(table, tmp_path, capsys):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(TINY_GRID))
    code, out, err = run_main(capsys, "reproduce", "--data", table, "--target", "progression", "--methods", "fp,bw-sq",
                              "--bits", "2", "--grid", grid, "--n-settings", "1", "--folds", "2", "--repeats", "1",
                              "--jobs", "1", "--store", tmp_path / "r.sqlite", "--json")
    assert code == 0, err
    assert json.loads(out)["rows_added"] > 0


@pytest.mark.parametrize("args, message", [
    (["frontier", "--dataset", "diabetes", "--data", "x.csv"], "give exactly one of --dataset NAME or --data PATH"),
    (["frontier", "--data", "missing.csv"], "--data file not found"),
    (["frontier", "--dataset", "diabetes", "--target", "y"], "--target applies to --data files"),
    (["reproduce", "--target", "y"], "--target applies to --data files"),
])
def test_bad_file_options_are_one_line(tmp_path, capsys, args, message):
    code, _, err = run_main(capsys, *args, "--store", tmp_path / "s.sqlite")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s.sqlite").exists()
