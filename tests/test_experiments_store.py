"""The SQLite store: unique keys, resumable pending tasks, schema version, choices; the report math."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from softbits.errors import SoftbitsError
from softbits.experiments.executor import pending
from softbits.experiments.protocol import Protocol, choose_settings, final_tasks, search_tasks
from softbits.experiments.report import TABLE_COLUMNS, summarize, t_interval, write_report
from softbits.experiments.settings import SETTING_COLUMNS, Setting
from softbits.experiments.store import SCHEMA_VERSION, ResultStore
from softbits.experiments.tasks import TEST_PHASE, ResultKey, ResultRow, RunMetrics
from softbits.training.train import TestMetrics

A = Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 0.0)
B = Setting(1e-3, 1, 16, 2, 1e-3, 0.0, 0.0)


def _row(key: ResultKey, mse: float) -> ResultRow:
    metrics = RunMetrics(TestMetrics(test_mse=mse, test_mse_soft=None, test_accuracy=None, test_loss=mse),
                         train_seconds=0.1, final_train_loss=mse, n_train=90, n_test=10, threads=1)
    return ResultRow(key=key, metrics=metrics, seconds=0.2, device="cpu:test", versions={"torch": "x"})


def test_rows_are_unique_and_pending_resumes(tmp_path: Path) -> None:
    protocol = Protocol(datasets=("diabetes",), methods=("fp", "po-qq", "bw-sq"), bits=(2, 3),
                        n_folds=2, repeats=2)
    tasks = search_tasks(protocol, [A, B])
    # one FP training per (setting, fold) serves FP and Po-QQ at both widths
    assert len(tasks) == 2 * 2 * (1 + 2)
    fp = [t for t in tasks if t.train_method == "fp"]
    assert all(len(t.evaluations) == 4 for t in fp)
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.add_settings([A, B])
        assert pending(tasks, store) == tasks
        first = tasks[0]
        assert store.add_rows([_row(k, 0.5) for k in first.keys()]) == len(first.keys())
        assert store.add_rows([_row(k, 0.7) for k in first.keys()]) == 0  # a rerun adds nothing
        assert store.count() == len(first.keys())
        assert pending(tasks, store) == tasks[1:]
        assert store.results()["test_mse"].tolist() == [0.5] * len(first.keys())
    with sqlite3.connect(tmp_path / "s.sqlite") as conn, pytest.raises(sqlite3.IntegrityError):
        k = first.keys()[0]
        conn.execute("INSERT INTO results (dataset, method, bits, setting_id, phase, idx, seed, "
                     "metrics, device, versions, finished_at) VALUES (?,?,?,?,?,?,?,'{}','','{}','')",
                     (k.dataset, k.method, k.bits, k.setting_id, k.phase, k.index, k.seed))


def test_incompatible_or_foreign_store_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    ResultStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    before = path.read_bytes()
    with pytest.raises(SoftbitsError, match=f"schema version {SCHEMA_VERSION + 1}"):
        ResultStore(path)
    assert path.read_bytes() == before
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database at all, just text" * 100)
    with pytest.raises(SoftbitsError, match="not an SQLite database"):
        ResultStore(junk)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(SoftbitsError, match="not a softbits store"):
        ResultStore(foreign)


def test_choice_takes_lowest_mean_validation_mse(tmp_path: Path) -> None:
    protocol = Protocol(datasets=("diabetes",), methods=("fp", "lsq"), bits=(2,), n_folds=2, repeats=3)
    tasks = search_tasks(protocol, [A, B])
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.add_settings([A, B])
        # A wins for FP (mean 0.45 vs 0.5), B wins for LSQ (0.3 vs 0.6) although A has the best fold
        val = {("fp", A.id): [0.4, 0.5], ("fp", B.id): [0.5, 0.5],
               ("lsq", A.id): [0.1, 1.1], ("lsq", B.id): [0.3, 0.3]}
        for t in tasks:
            store.add_rows([_row(k, val[(k.method, k.setting_id)][k.index]) for k in t.keys()])
        chosen = choose_settings(protocol, [A, B], store.results())
    assert chosen[("diabetes", "fp", 2)] == (A, pytest.approx(0.45))
    assert chosen[("diabetes", "lsq", 2)] == (B, pytest.approx(0.3))
    final = final_tasks(protocol, {c: s for c, (s, _) in chosen.items()})
    assert len(final) == 2 * 3 and sorted({t.seed for t in final}) == [42, 43, 44]
    assert {t.phase for t in final} == {TEST_PHASE}


@pytest.mark.parametrize("n", [2, 3, 10])
def test_t_interval_matches_scipy(n: int) -> None:
    x = np.random.default_rng(n).normal(0.2, 0.05, n)
    mean, low, high = t_interval(x)
    ref_low, ref_high = stats.t.interval(0.95, n - 1, loc=x.mean(), scale=stats.sem(x))
    assert mean == pytest.approx(x.mean())
    assert (low, high) == (pytest.approx(ref_low), pytest.approx(ref_high))


def test_t_interval_single_run_is_nan() -> None:
    mean, low, high = t_interval(np.array([0.3]))
    assert mean == 0.3 and np.isnan(low) and np.isnan(high)


def test_report_columns_bold_and_compare(tmp_path: Path) -> None:
    protocol = Protocol(datasets=("diabetes",), methods=("fp", "po-qq", "bw-sq", "lsq"), bits=(2, 4),
                        n_folds=2, repeats=3)
    chosen = {c: A for c in protocol.cells()}
    values = {"fp": [0.1, 0.2, 0.3], "po-qq": [0.9, 1.0, 1.1], "bw-sq": [0.3, 0.4, 0.5],
              "lsq": [0.5, 0.5, 0.5]}
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.set_choices((d, m, b, s, "test", None) for (d, m, b), s in chosen.items())
        for t in final_tasks(protocol, chosen):
            store.add_rows([_row(k, values[k.method][k.index] * k.bits / 2) for k in t.keys()])
        table = summarize(store)
        assert list(table.columns) == [*TABLE_COLUMNS, *SETTING_COLUMNS]
        assert table["method"].tolist() == ["FP", "Po-QQ", "Bw-SQ", "LSQ"] * 2
        row = table[(table["method"] == "Bw-SQ") & (table["bits"] == 4)].iloc[0]
        ref = stats.t.interval(0.95, 2, loc=0.8, scale=stats.sem([0.6, 0.8, 1.0]))
        assert row["n_runs"] == 3 and row["test_mse_mean"] == pytest.approx(0.8)
        assert (row["ci95_low"], row["ci95_high"]) == (pytest.approx(ref[0]), pytest.approx(ref[1]))
        assert row["hidden_neurons"] == 8
        reference = tmp_path / "ref.csv"
        pd.DataFrame({"dataset": ["diabetes", "diabetes"], "method": ["Bw-SQ", "LSQ"], "bits": [2, 2],
                      "test_mse_mean": [0.5, 0.4], "ci95_low": [0.35, 0.3],
                      "ci95_high": [0.65, 0.45]}).to_csv(reference, index=False)
        paths = write_report(store, tmp_path / "report", reference)
    md = paths.table_md.read_text()
    # the best quantized method is bold, FP (lower still) is not
    assert "| diabetes | 2 | 0.20000 | 1.00000 | **0.40000** | 0.50000 |" in md
    assert paths.figure.stat().st_size > 1000
    cmp = pd.read_csv(paths.compare_csv)
    bw = cmp[cmp["method"] == "Bw-SQ"].iloc[0]
    lsq = cmp[cmp["method"] == "LSQ"].iloc[0]
    assert bw["ratio"] == pytest.approx(0.8) and bool(bw["inside_ref_ci"]) and not bool(bw["below_ref_ci"])
    assert lsq["ratio"] == pytest.approx(1.25) and not bool(lsq["inside_ref_ci"])
    # the spread columns: Bw-SQ at 2 bits ran 0.3, 0.4, 0.5
    assert (bw["test_mse_median"], bw["test_mse_max"]) == (pytest.approx(0.4), pytest.approx(0.5))
    assert bool(bw["median_inside_ref_ci"]) and not bool(lsq["median_inside_ref_ci"])
    assert "| 0.40000 (0.50000) |" in paths.compare_md.read_text()
    assert "compare" not in paths.table_md.name and "Bw-SQ" in paths.compare_md.read_text()
