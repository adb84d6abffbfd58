"""The protocol as a library call: ``run_protocol`` from Python writes what ``reproduce`` writes.

Tiny runs on the offline ``diabetes`` set (one-layer nets, 2 epochs), so the file takes seconds.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import softbits
from softbits.experiments.tasks import TEST_PHASE

GRID = {"learning_rate": [1e-3], "hidden_layers": [1], "hidden_neurons": [8], "num_epochs": [2],
        "decrease_factor": [1e-3], "dropout_rate": [0.0], "weight_decay": [0.0]}


class Recorder:
    """A progress sink that keeps what the protocol reported."""

    def __init__(self) -> None:
        self.tasks: list[list[Any]] = []

    def add_task(self, description: str, total: int) -> int:
        self.tasks.append([description, total, 0])
        return len(self.tasks) - 1

    def advance(self, task_id: int) -> None:
        self.tasks[task_id][2] += 1


def _table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path).sort_values(["method", "bits"]).reset_index(drop=True)


def test_run_protocol_from_python_writes_store_and_report_like_the_cli(
        tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from softbits.cli import main
    from softbits.experiments import run_protocol

    progress = Recorder()
    outcome = run_protocol(store=tmp_path / "api.sqlite", datasets=["diabetes"], methods=["po-qq"],
                           bits=[3], grid=GRID, n_settings=1, folds=2, repeats=2, jobs=1,
                           device="cpu", data_dir=data_dir, progress=progress)
    # the library prints nothing; progress went to the sink: one search and one test phase, complete
    assert capsys.readouterr() == ("", "")
    assert [(d.split(" · ")[0], total, done) for d, total, done in progress.tasks] == \
        [("search", 2, 2), ("test", 2, 2)]
    assert outcome.store == tmp_path / "api.sqlite" and outcome.runs == 4
    assert outcome.report.table_csv == tmp_path / "api_report" / "table.csv"
    assert outcome.report.table_md.is_file() and outcome.report.figure.is_file()
    with sqlite3.connect(outcome.store) as conn:
        rows = pd.read_sql_query("SELECT method, bits, phase, metrics FROM results", conn)
    assert outcome.rows_added == len(rows) == 4
    assert set(rows["method"]) == {"po-qq"} and set(rows["bits"]) == {3}
    metrics = json.loads(rows[rows["phase"] == TEST_PHASE]["metrics"].iloc[0])
    assert metrics["test_mse_fp"] > 0 and metrics["n_train"] + metrics["n_test"] == 442

    # the command on the same options writes the same table (trainings are seeded)
    cli_store = tmp_path / "cli.sqlite"
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps(GRID))
    main(["reproduce", "--datasets", "diabetes", "--methods", "po-qq", "--bits", "3", "--grid",
          str(grid_file), "--n-settings", "1", "--folds", "2", "--repeats", "2", "--jobs", "1",
          "--device", "cpu", "--data-dir", str(data_dir), "--store", str(cli_store), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs"] == outcome.runs and summary["rows_added"] == outcome.rows_added
    pd.testing.assert_frame_equal(_table(Path(summary["report"]) / "table.csv"),
                                  _table(outcome.report.table_csv))


def test_run_protocol_refuses_bad_input_before_training(tmp_path: Path) -> None:
    from softbits.errors import ConfigError

    store = tmp_path / "s.sqlite"
    with pytest.raises(ConfigError, match="bits must be an integer in 1..16, got 0"):
        softbits.run_protocol(store=store, datasets=["diabetes"], methods=["fp"], bits=[0])
    with pytest.raises(ConfigError, match="must be a list of names"):
        softbits.run_protocol(store=store, datasets="diabetes", methods=["fp"], bits=[2])
    # counts are integers: a bool or a fraction is refused, not truncated or compared
    for count, shown in ((True, "True"), (2.5, "2.5")):
        with pytest.raises(ConfigError, match=f"--repeats must be >= 1, got {shown}"):
            softbits.run_protocol(store=store, datasets=["diabetes"], methods=["fp"], bits=[2], repeats=count)
    with pytest.raises(ConfigError, match="--folds must be >= 2, got 1"):
        softbits.run_protocol(store=store, datasets=["diabetes"], methods=["fp"], bits=[2], folds=1)
    assert not store.exists()


def test_protocol_and_frontier_refuse_a_classification_dataset(tmp_path: Path) -> None:
    from softbits.errors import DataError
    from softbits.experiments.frontier import run_frontier

    store = tmp_path / "s.sqlite"
    with pytest.raises(DataError, match="dataset digits is a classification task; the protocol reports"):
        softbits.run_protocol(store=store, datasets=["digits"], methods=["fp"], bits=[2])
    with pytest.raises(DataError, match="dataset digits is a classification task; the frontier reports"):
        run_frontier(store=store, dataset="digits")
    assert not store.exists()


def test_presets_come_from_the_registries() -> None:
    from softbits.data import PAPER_DATASETS
    from softbits.experiments.reproduce import FULL_PRESET, QUICK_PRESET
    from softbits.training.methods import METHODS

    assert FULL_PRESET.datasets == tuple(PAPER_DATASETS)
    assert FULL_PRESET.methods == ("fp", "po-mq", "po-qq", "pr-mq", "pr-qq", "sq", "bw-mq", "bw-qq",
                                   "bw-sq", "lsq", "llt4", "llt9")
    assert set(QUICK_PRESET.methods) <= set(METHODS) and set(QUICK_PRESET.datasets) <= set(PAPER_DATASETS)


def test_reproduce_with_a_predictor_stores_method_plus_predictor_beside_the_mlp_rows(
        tmp_path: Path, data_dir: Path) -> None:
    """--predictor gbdt: the search, the choices and the final tests are keyed bw-qq+gbdt and
    fp+gbdt (fp trains its own cell), the report names them, and the MLP rows of the same store
    keep their names."""
    from softbits.experiments import run_protocol

    store = tmp_path / "p.sqlite"
    common = dict(store=store, datasets=["diabetes"], methods=["fp", "bw-qq"], bits=[3], grid=GRID, n_settings=1,
                  folds=2, repeats=2, jobs=1, device="cpu", data_dir=data_dir)
    outcome = run_protocol(**common, predictor="gbdt")
    run_protocol(**common)
    with sqlite3.connect(store) as conn:
        rows = pd.read_sql_query("SELECT method, phase, metrics FROM results", conn)
        chosen = set(pd.read_sql_query("SELECT method FROM choices", conn)["method"])
    assert set(rows["method"]) == {"fp+gbdt", "bw-qq+gbdt", "fp", "bw-qq"}
    assert chosen == {"fp+gbdt", "bw-qq+gbdt", "fp", "bw-qq"}
    trees = rows[rows["method"] == "bw-qq+gbdt"]["metrics"].map(json.loads)
    assert all(m["predictor"] in ("gbdt",) and m["test_mse"] > 0 for m in trees)
    assert outcome.runs == 2 * 2 + 2 * 2  # no FP training shared: each cell its own
    table = pd.read_csv(tmp_path / "p_report" / "table.csv")
    assert {"Bw-QQ+gbdt", "FP+gbdt", "Bw-QQ", "FP"} <= set(table["method"])


def test_reproduce_refuses_a_bad_predictor_before_any_work(tmp_path: Path, data_dir: Path) -> None:
    from softbits.errors import ConfigError
    from softbits.experiments import run_protocol

    store = tmp_path / "bad.sqlite"
    with pytest.raises(ConfigError, match="unknown predictor"):
        run_protocol(store=store, datasets=["diabetes"], methods=["bw-qq"], bits=[3], predictor="forest",
                     data_dir=data_dir)
    with pytest.raises(ConfigError, match="replaces the network"):
        run_protocol(store=store, datasets=["diabetes"], methods=["bw-sq-ens"], bits=[3], predictor="gbdt",
                     grid=GRID, n_settings=1, data_dir=data_dir)
    assert not store.exists()
