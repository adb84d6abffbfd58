"""``softbits frontier``: uniform and allocated widths at payload budgets, through the protocol's
store and runner.

Everything runs for real (SQLite, subprocess CLI runs, a plain ``softbits train`` to compare
with, a LocalCluster) on the offline ``diabetes`` set (10 features) with one-layer nets and two
epochs, so that each test takes seconds.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from softbits.cli import main
from softbits.experiments.frontier import FRONTIER_COLUMNS, run_frontier
from softbits.experiments.settings import Setting
from softbits.experiments.stacking import plan
from softbits.experiments.tasks import TEST_PHASE, Evaluation, Task

NET = ["--layers", "1", "--neurons", "8", "--epochs", "2"]
NET_KW = {"layers": 1, "neurons": 8, "epochs": 2}
KEY = ["dataset", "method", "bits", "setting_id", "phase", "idx", "seed"]


def _results(store: Path) -> pd.DataFrame:
    with sqlite3.connect(store) as conn:
        return pd.read_sql_query("SELECT * FROM results", conn)


def _md_rows(path: Path) -> list[list[str]]:
    """The body rows of the first Markdown table in ``path``, as cell texts."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_outputs_hold_what_they_claim_and_resume(tmp_path: Path) -> None:
    store, out = tmp_path / "f.sqlite", tmp_path / "out"
    outcome = run_frontier(store=store, out_dir=out, dataset="diabetes", method="bw-sq",
                           budgets=["20", 25], seeds=2, jobs=1, device="cpu", **NET_KW)
    # per seed: one FP training, one uniform (2 bits × 10 features = 20), two allocated
    assert outcome.runs == 2 * 4 and outcome.rows_added == 2 * 4
    table = pd.read_csv(outcome.paths.csv)
    assert tuple(table.columns) == FRONTIER_COLUMNS
    assert list(zip(table["kind"], table["budget_bits"], strict=True)) == [
        ("fp", 320), ("uniform", 20), ("allocated", 20), ("allocated", 25)]
    assert (table["n_runs"] == 2).all() and (table["dataset"] == "diabetes").all()
    assert (table["ci95_low"] <= table["test_mse_mean"]).all()
    assert (table["test_mse_mean"] <= table["ci95_high"]).all()
    uniform = table[table["kind"] == "uniform"].iloc[0]
    assert uniform["bits_per_feature"] == 2 and uniform["payload_bytes"] == 2 + 3
    allocated = table[table["kind"] == "allocated"]
    assert (allocated["code_bits_mean"] <= allocated["budget_bits"]).all()
    assert (allocated["payload_bytes"] <= 2 + (allocated["budget_bits"] + 7) // 8).all()
    at_20 = allocated[allocated["budget_bits"] == 20].iloc[0]
    assert at_20["vs_uniform"] == pytest.approx(at_20["test_mse_mean"] / uniform["test_mse_mean"])
    assert table[table["kind"] == "fp"].iloc[0]["payload_bytes"] == 4 * 10

    assert outcome.paths.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = _md_rows(outcome.paths.md)
    assert len(md) == len(table)
    for cells, row in zip(md, table.to_dict("records"), strict=True):
        assert cells[0] == row["method"] == "bw-sq"
        assert cells[1] == row["kind"] and int(cells[2]) == row["budget_bits"]
        assert int(cells[5]) == row["payload_bytes"] and int(cells[6]) == row["n_runs"]
        assert float(cells[7]) == pytest.approx(row["test_mse_mean"], rel=1e-5)
    assert table["vs_best_other"].isna().all()  # one contender: no other to compare with

    # the store rows carry what reproduce's do, and the allocated ones the chosen widths
    rows = _results(store)
    assert sorted(set(rows["seed"])) == [42, 43] and not rows.duplicated(KEY).any()
    assert set(rows["phase"]) == {TEST_PHASE, f"{TEST_PHASE}-budget"}
    assert (rows["device"] != "").all() and all(json.loads(v)["torch"] for v in rows["versions"])
    with sqlite3.connect(store) as conn:
        params = [json.loads(p) for (p,) in conn.execute("SELECT params FROM settings")]
    assert params == [Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 0.0).to_dict()]
    budget_rows = rows[rows["phase"] != TEST_PHASE]
    for metrics in budget_rows["metrics"]:
        allocation = json.loads(metrics)["allocation"]
        assert allocation["code_bits"] <= allocation["budget_bits"]
        assert len(allocation["bits_per_feature"]) == 10

    again = run_frontier(store=store, out_dir=out, dataset="diabetes", method="bw-sq",
                         budgets=["20", 25], seeds=2, jobs=1, device="cpu", **NET_KW)
    assert again.rows_added == 0 and again.runs == 0
    pd.testing.assert_frame_equal(pd.read_csv(again.paths.csv), table)


def test_uniform_point_equals_plain_training(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """The uniform point at n·F is the test MSE that ``softbits train --bits n`` reports for the
    same seed: the frontier changes nothing about a uniform training."""
    store, out = tmp_path / "f.sqlite", tmp_path / "out"
    cli = subprocess.run([sys.executable, "-m", "softbits", "frontier", "--dataset", "diabetes",
                          "--budgets", "uniform", "--seeds", "1", "--seed", "7", *NET, "--jobs", "1",
                          "--device", "cpu", "--store", str(store), "--out-dir", str(out), "--json"],
                         env=cli_env, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    summary = json.loads(cli.stdout)
    table = pd.read_csv(summary["csv"])
    # "uniform" = the code bits of uniform 1..4 bits: 10, 20, 30, 40 for 10 features
    assert list(table.loc[table["kind"] == "uniform", "budget_bits"]) == [10, 20, 30, 40]
    assert list(table.loc[table["kind"] == "allocated", "budget_bits"]) == [10, 20, 30, 40]
    plain = subprocess.run([sys.executable, "-m", "softbits", "train", "--dataset", "diabetes", "--bits", "3",
                            *NET, "--seed", "7", "--device", "cpu", "--json"],
                           env=cli_env, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    point = table[(table["kind"] == "uniform") & (table["budget_bits"] == 30)].iloc[0]
    assert point["test_mse_mean"] == pytest.approx(json.loads(plain.stdout)["test_mse"], rel=1e-6)


def _bad_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    base = ["frontier", "--dataset", "diabetes", *NET, "--store", str(tmp_path / "fresh.sqlite"),
            "--out-dir", str(tmp_path / "out")]
    return {
        "budget zero": ([*base, "--budgets", "0"], "a budget must be 1..160 code bits for 10 features"),
        "budget too wide": ([*base, "--budgets", "20,161"], "a budget must be 1..160 code bits"),
        "budget text": ([*base, "--budgets", "20,lots"], "--budgets wants"),
        "budget empty": ([*base, "--budgets", " , "], "--budgets is empty"),
        "budget under min bits": ([*base, "--method", "pr-qq", "--budgets", "1"],
                                  "method pr-qq sends at least 2 bits"),
        "dataset": ([*base, "--dataset", "nope"], "unknown dataset 'nope'"),
        "classification": ([*base, "--dataset", "breast_cancer"], "classification"),
        "method": ([*base, "--method", "magic"], "unknown method 'magic'"),
        "lsq": ([*base, "--method", "lsq"], "method lsq takes one bit width for every feature"),
        "fp": ([*base, "--method", "fp"], "method fp sends full-precision features"),
        "seeds": ([*base, "--seeds", "0"], "--seeds must be >= 1"),
        "bits zero": ([*base, "--bits", "2,0"], "--bits wants average widths per feature (whole numbers 1..16)"),
        "bits too wide": ([*base, "--bits", "17"], "--bits wants average widths"),
        "bits text": ([*base, "--bits", "two"], "--bits wants average widths"),
        "bits empty": ([*base, "--bits", ","], "--bits is empty"),
        "bits and budgets": ([*base, "--bits", "2", "--budgets", "20"], "give --budgets (code bits per sample) or --bits"),
        "compare with a predictor": ([*base, "--compare", "--predictor", "gbdt"],
                                     "--compare runs its own predictors"),
        "epochs": ([*base, "--epochs", "0"], "epochs must be >= 1"),
        "device": ([*base, "--device", "tpu"], "device"),
        "scheduler": ([*base, "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "1"],
                      "cannot reach the Dask scheduler"),
    }


#: checked in a subprocess (exit code, stderr, no traceback); the rest through main() in-process
SUBPROCESS_CASES = ("budget too wide", "lsq", "scheduler")


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, cli_env: dict[str, str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cases = _bad_cases(tmp_path)
    procs = {name: subprocess.Popen([sys.executable, "-m", "softbits", *cases[name][0]], env=cli_env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in SUBPROCESS_CASES}
    for name, (args, message) in cases.items():
        if name in SUBPROCESS_CASES:
            continue
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2, name
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (name, err)
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (name, err)
        assert len(lines) == 1 and cases[name][1] in lines[0], (name, err)
        assert "Traceback" not in err and out == ""
    assert not (tmp_path / "fresh.sqlite").exists() and not (tmp_path / "out").exists()


def _task(budget: int | None, **changes: object) -> Task:
    setting = Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 0.0)
    bits = budget if budget is not None else 2
    fields = {"dataset": "diabetes", "train_method": "bw-sq", "train_bits": 2, "setting": setting,
              "phase": TEST_PHASE, "index": 0, "seed": 42, "evaluations": (Evaluation("bw-sq", bits),),
              "budget": budget}
    return Task(**{**fields, **changes})


def test_budget_tasks_have_their_own_keys_and_never_stack() -> None:
    uniform, allocated = _task(None), _task(20)
    assert [(k.method, k.bits, k.phase) for k in uniform.keys()] == [("bw-sq", 2, TEST_PHASE)]
    assert [(k.method, k.bits, k.phase) for k in allocated.keys()] == [("bw-sq", 20, f"{TEST_PHASE}-budget")]
    with pytest.raises(Exception, match="one evaluation"):
        _task(20, evaluations=(Evaluation("bw-sq", 2),))
    tasks = [_task(20, seed=s, index=s) for s in range(3)] + [_task(None, seed=s, index=s) for s in range(3)]
    units, notes = plan(tasks, 8, n_features=lambda _: 10)
    assert sum(isinstance(u, Task) and u.budget is not None for u in units) == 3
    assert len(units) == 4  # three allocated trainings alone, the uniform ones in one stack
    assert len(notes) == 1 and "3 bw-sq allocated trainings run one at a time" in notes[0]


@pytest.mark.slow
def test_dask_equals_local(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    args = {"dataset": "diabetes", "budgets": [20, 25], "seeds": 2, "device": "cpu", **NET_KW}
    local = run_frontier(store=tmp_path / "local.sqlite", out_dir=tmp_path / "L", jobs=2, **args)
    with distributed.LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1,
                                  processes=True, dashboard_address=None) as cluster:
        remote = run_frontier(store=tmp_path / "dask.sqlite", out_dir=tmp_path / "D",
                              scheduler=cluster.scheduler_address, **args)
    assert remote.backend.startswith("dask") and local.rows_added == remote.rows_added == 8
    a = _results(tmp_path / "local.sqlite").sort_values(KEY).reset_index(drop=True)
    b = _results(tmp_path / "dask.sqlite").sort_values(KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[KEY], b[KEY])
    pd.testing.assert_series_equal(a["test_mse"], b["test_mse"], rtol=1e-6, atol=1e-9)
    pd.testing.assert_frame_equal(pd.read_csv(local.paths.csv).drop(columns="seconds_mean"),
                                  pd.read_csv(remote.paths.csv).drop(columns="seconds_mean"))


def test_compare_puts_every_contender_on_the_same_splits(tmp_path: Path) -> None:
    """--compare: the paper's MLP, quantile codes + trees and auto in one table; a point of a
    contender is the training a one-contender frontier (or ``softbits train``) does on that seed."""
    pytest.importorskip("lightgbm")
    from softbits.data import load_dataset
    from softbits.training.config import TrainConfig
    from softbits.training.train import train_dataset

    store, out = tmp_path / "c.sqlite", tmp_path / "out"
    outcome = run_frontier(store=store, out_dir=out, dataset="diabetes", compare=True, bits=[2], seeds=2,
                           jobs=1, device="cpu", **NET_KW)
    table = pd.read_csv(outcome.paths.csv)
    assert list(zip(table["method"], table["kind"], table["budget_bits"], strict=True)) == [
        ("bw-sq", "fp", 320), ("bw-sq", "uniform", 20), ("bw-sq", "allocated", 20),
        ("bw-qq+gbdt", "fp", 320), ("bw-qq+gbdt", "uniform", 20), ("bw-qq+gbdt", "allocated", 20),
        ("bw-sq+auto", "allocated", 20)]
    assert (table["n_runs"] == 2).all() and outcome.runs == 2 * 7
    mse = {(m, k): v for m, k, v in zip(table["method"], table["kind"], table["test_mse_mean"], strict=True)}
    for row in table[table["kind"] != "fp"].to_dict("records"):
        others = [v for (m, k), v in mse.items() if m != row["method"] and k != "fp"]
        assert row["vs_best_other"] == pytest.approx(row["test_mse_mean"] / min(others))
    rows = _results(store)
    auto = rows[rows["method"] == "bw-sq+auto"]
    assert all("auto_choice" in json.loads(m) for m in auto["metrics"])
    # quantile codes + trees at 2 bits, seed 42: what a plain training on the same split gives
    plain = train_dataset(load_dataset("diabetes"), TrainConfig(method="bw-qq", predictor="gbdt", bits=2, seed=42,
                                                                layers=1, neurons=8, epochs=2, device="cpu"))
    point = rows[(rows["method"] == "bw-qq+gbdt") & (rows["bits"] == 2) & (rows["seed"] == 42)]
    assert float(point["test_mse"].iloc[0]) == pytest.approx(plain.metrics["test_mse"], rel=1e-6)
    # the one-contender frontier of trees finds all its trainings in the store
    again = run_frontier(store=store, out_dir=tmp_path / "one", dataset="diabetes", method="bw-qq",
                         predictor="gbdt", bits=[2], seeds=2, jobs=1, device="cpu", **NET_KW)
    assert again.runs == 0
    assert again.table["test_mse_mean"].tolist() == pytest.approx(table["test_mse_mean"][3:6].tolist())
    assert outcome.paths.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
