"""``softbits reproduce``/``report`` end to end: bad input, kill and resume, Dask equals local.

Everything runs for real (subprocesses, SQLite, a LocalCluster) on the offline ``diabetes`` set
with one-layer nets, so the whole file stays well under a minute of training.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from softbits.cli import main
from softbits.experiments.report import TABLE_COLUMNS
from softbits.experiments.settings import SETTING_COLUMNS
from softbits.experiments.store import SCHEMA_VERSION

TINY_GRID = {"learning_rate": [1e-3], "hidden_layers": [1], "hidden_neurons": [8, 16],
             "num_epochs": [2, 3], "decrease_factor": [1e-3], "dropout_rate": [0.0],
             "weight_decay": [0.0]}


@pytest.fixture
def tiny_grid(tmp_path: Path) -> Path:
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(TINY_GRID))
    return path


def _tiny_args(grid: Path, store: Path, *extra: str) -> list[str]:
    return ["reproduce", "--datasets", "diabetes", "--methods", "fp,po-qq,bw-sq,lsq", "--bits", "2,3",
            "--grid", str(grid), "--n-settings", "2", "--folds", "2", "--repeats", "2",
            "--store", str(store), "--json", *extra]


def _results(store: Path) -> pd.DataFrame:
    with sqlite3.connect(store) as conn:
        return pd.read_sql_query("SELECT dataset, method, bits, setting_id, phase, idx, seed, test_mse "
                                 "FROM results", conn)


def test_reproduce_then_report_tables(tmp_path: Path, tiny_grid: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s.sqlite"
    main(_tiny_args(tiny_grid, store, "--jobs", "1"))
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    # stderr is not a terminal here: progress comes as plain lines, the last of each phase complete
    assert re.search(r"^search · .*: 0/(\d+) runs$", captured.err, re.M)
    done = re.findall(r"^(search|test) · .*: (\d+)/(\d+) runs, elapsed \d+:\d\d:\d\d, ETA 0:00:00$",
                      captured.err, re.M)
    assert [d[0] for d in done] == ["search", "test"] and all(d[1] == d[2] for d in done), captured.err
    # search: 2 settings × 2 folds × (FP serving FP+Po-QQ at 2 widths: 4 rows; 2 methods × 2 widths)
    # final: 2 repeats × (8 rows), the FP training shared when FP and Po-QQ chose the same setting
    df = _results(store)
    assert summary["rows_added"] == len(df) == 2 * 2 * 8 + 2 * 8
    assert not df.duplicated(["dataset", "method", "bits", "setting_id", "phase", "idx", "seed"]).any()
    table = pd.read_csv(Path(summary["report"]) / "table.csv")
    assert list(table.columns) == [*TABLE_COLUMNS, *SETTING_COLUMNS]
    assert set(table["method"]) == {"FP", "Po-QQ", "Bw-SQ", "LSQ"} and (table["n_runs"] == 2).all()
    assert (table["ci95_low"] <= table["test_mse_mean"]).all()
    # a rerun of the same command trains nothing; with --compare the report adds the comparison
    # (here against our own table: every mean lies inside its own interval)
    ref = tmp_path / "ref.csv"
    table.to_csv(ref, index=False)
    main(_tiny_args(tiny_grid, store, "--jobs", "1", "--compare", str(ref)))
    rerun = json.loads(capsys.readouterr().out)
    assert rerun["rows_added"] == 0
    cmp = pd.read_csv(rerun["compare"])
    assert len(cmp) == len(table) and cmp["inside_ref_ci"].all() and (cmp["ratio"] == 1.0).all()
    out = tmp_path / "R"
    main(["report", "--store", str(store), "--out-dir", str(out)])
    assert {p.name for p in out.iterdir()} == {"table.csv", "table.md", "figure4.png", "provenance.json"}
    prov = json.loads((out / "provenance.json").read_text())
    assert len(prov["cells"]) == len(table) and prov["devices"] and prov["versions"][0]["torch"]
    assert all(cell["seeds"] == [42, 43] and cell["chosen_by"] == "search" for cell in prov["cells"])
    pd.testing.assert_frame_equal(pd.read_csv(out / "table.csv"), table)


@pytest.mark.slow
def test_kill_and_resume(tmp_path: Path, tiny_grid: Path, cli_env: dict[str, str]) -> None:
    grid = json.loads(tiny_grid.read_text())
    grid["num_epochs"] = [40, 60]
    tiny_grid.write_text(json.dumps(grid))
    store = tmp_path / "kill.sqlite"
    args = [sys.executable, "-m", "softbits", *_tiny_args(tiny_grid, store, "--jobs", "1", "--n-settings", "3",
                                                         "--methods", "fp,po-qq,pr-qq,bw-sq,lsq")]
    proc = subprocess.Popen(args, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        landed = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if store.exists():
                try:
                    with sqlite3.connect(store) as conn:
                        landed = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                except sqlite3.OperationalError:
                    landed = 0
            if landed >= 10:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed; make it longer"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = _results(store)
    assert 10 <= len(partial)
    rerun = subprocess.run(args, env=cli_env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    full = _results(store)
    assert not full.duplicated(["dataset", "method", "bits", "setting_id", "phase", "idx", "seed"]).any()
    # 3 settings × 2 folds × (4 FP-shared + 6) rows, then 2 repeats of every cell
    assert len(full[full["phase"] == "cv2"]) == 3 * 2 * 10
    assert len(full[full["phase"] == "test"]) >= 2 * 10
    assert json.loads(rerun.stdout)["rows_added"] == len(full) - len(partial)
    merged = partial.merge(full, on=["dataset", "method", "bits", "setting_id", "phase", "idx", "seed"])
    assert len(merged) == len(partial) and (merged["test_mse_x"] == merged["test_mse_y"]).all()


def _is_worker(psutil, process) -> bool:
    """A loky worker (not its resource tracker); children that exit while being looked at are not."""
    try:
        return "popen_loky" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def _busy(psutil, process) -> bool:
    try:
        return process.cpu_times().user > 0.5
    except psutil.Error:
        return False


@pytest.mark.slow
def test_sigterm_stops_reproduce_and_its_workers(tmp_path: Path, tiny_grid: Path, cli_env: dict[str, str]) -> None:
    """SIGTERM unwinds like Ctrl-C: exit 143 with one line, and the worker processes stop with
    the run instead of finishing trainings whose results nobody will store."""
    psutil = pytest.importorskip("psutil")
    grid = json.loads(tiny_grid.read_text())
    grid["num_epochs"] = [20000]  # each training lasts many seconds: the workers are busy when killed
    tiny_grid.write_text(json.dumps(grid))
    args = [sys.executable, "-m", "softbits", *_tiny_args(tiny_grid, tmp_path / "s.sqlite", "--jobs", "2",
                                                         "--stack", "1", "--methods", "bw-sq")]
    proc = subprocess.Popen(args, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        parent, workers = psutil.Process(proc.pid), []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            workers = [c for c in parent.children(recursive=True) if _is_worker(psutil, c)]
            if len(workers) >= 2 and all(_busy(psutil, w) for w in workers):
                break
            time.sleep(0.2)
        assert proc.poll() is None and len(workers) >= 2, "no busy workers to stop"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "terminated" and "Traceback" not in err
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, f"workers still running after the run ended: {[w.pid for w in alive]}"


@pytest.mark.slow
def test_dask_equals_local(tmp_path: Path, tiny_grid: Path, capsys: pytest.CaptureFixture[str]) -> None:
    distributed = pytest.importorskip("distributed")
    local, remote = tmp_path / "local.sqlite", tmp_path / "dask.sqlite"
    main(_tiny_args(tiny_grid, local, "--jobs", "2"))
    with distributed.LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1,
                                  processes=True, dashboard_address=None) as cluster:
        main(_tiny_args(tiny_grid, remote, "--scheduler", cluster.scheduler_address))
    capsys.readouterr()
    key = ["dataset", "method", "bits", "setting_id", "phase", "idx", "seed"]
    a, b = _results(local).sort_values(key), _results(remote).sort_values(key)
    assert len(a) == len(b) == 2 * 2 * 8 + 2 * 8
    pd.testing.assert_frame_equal(a[key].reset_index(drop=True), b[key].reset_index(drop=True))
    pd.testing.assert_series_equal(a["test_mse"].reset_index(drop=True), b["test_mse"].reset_index(drop=True),
                                   rtol=1e-6, atol=1e-9)


def _bad_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    partial = tmp_path / "partial.csv"
    partial.write_text("dataset,method,bits,learning_rate\ndiabetes,LSQ,2,0.001\n")
    other_rows = tmp_path / "other_rows.csv"
    other_rows.write_text(f"dataset,method,bits,{','.join(SETTING_COLUMNS)}\n"
                          "cpu_act,LSQ,2,0.001,1,8,2,0.001,0.0,0.0\n")
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION + 1),))
    base = ["reproduce", "--datasets", "diabetes", "--methods", "lsq", "--bits", "2"]
    fresh = ["--store", str(tmp_path / "fresh.sqlite")]
    return {
        "dataset": (["reproduce", "--datasets", "nope", *fresh], "unknown dataset 'nope'; choose one of"),
        "method": ([*base, "--methods", "lsq,magic", *fresh], "unknown method 'magic'; choose one of"),
        "bits range": ([*base, "--bits", "9-2", *fresh], "bits range 9-2 is empty"),
        "min bits": ([*base, "--bits", "1-2", *fresh], "method lsq needs bits >= 2"),
        "settings rows": ([*base, "--settings", str(other_rows), *fresh], "lacks 1 needed"),
        "settings columns": ([*base, "--settings", str(partial), *fresh], "lacks columns"),
        "scheduler": ([*base, "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "1", *fresh],
                      "cannot reach the Dask scheduler"),
        "store": ([*base, "--store", str(old)], f"schema version {SCHEMA_VERSION + 1}"),
        "report store": (["report", "--store", str(tmp_path / "none.sqlite"), "--out-dir", str(tmp_path / "R")],
                         "does not exist"),
        "compare file": ([*base, "--compare", str(tmp_path / "none.csv"), *fresh],
                         "reference file"),
        "compare columns": ([*base, "--compare", str(partial), *fresh], "reference file"),
    }


#: checked in a subprocess (exit code, stderr, no traceback); the rest through main() in-process
SUBPROCESS_CASES = ("dataset", "bits range", "settings rows", "scheduler", "store")


def test_bad_input_is_one_line_before_training(tmp_path: Path, cli_env: dict[str, str]) -> None:
    cases = _bad_cases(tmp_path)
    old = tmp_path / "old.sqlite"
    before = old.read_bytes()
    procs = {name: subprocess.Popen([sys.executable, "-m", "softbits", *cases[name][0]], env=cli_env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in SUBPROCESS_CASES}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (name, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert cases[name][1] in lines[0], (name, lines[0])
        assert "Traceback" not in err and out == ""
    assert not (tmp_path / "fresh.sqlite").exists()
    assert old.read_bytes() == before


def test_bad_input_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = _bad_cases(tmp_path)
    for name, (args, message) in cases.items():
        if name in SUBPROCESS_CASES:
            continue
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert exit_info.value.code == 2, name
        assert len(lines) == 1 and message in lines[0], (name, captured.err)
    assert not (tmp_path / "fresh.sqlite").exists()
