"""Two ``softbits reproduce`` runners on one store share the work (issue 19): every unit is
claimed in the store before it trains, so together they train each unit once and store every
row once; a dead runner's expired claims are taken over."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from test_experiments_cli import TINY_GRID

ARGS = ["reproduce", "--datasets", "diabetes", "--methods", "fp,po-qq,bw-sq,lsq", "--bits", "2,3",
        "--n-settings", "2", "--folds", "2", "--repeats", "2", "--jobs", "1", "--stack", "1", "--json"]
KEY = ["dataset", "method", "bits", "setting_id", "phase", "idx", "seed"]


def _runner(tmp_path: Path, store: Path, name: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "softbits", *ARGS, "--grid", str(tmp_path / "grid.json"),
                             "--store", str(store), "--out-dir", str(tmp_path / f"report_{name}")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(store: Path) -> pd.DataFrame:
    with sqlite3.connect(store) as conn:
        return pd.read_sql_query("SELECT * FROM results", conn)


def test_two_runners_share_the_work_and_store_every_row_once(tmp_path, cli_env):
    (tmp_path / "grid.json").write_text(json.dumps(TINY_GRID))
    alone = tmp_path / "alone.sqlite"
    single = _runner(tmp_path, alone, "alone", cli_env)
    out, err = single.communicate(timeout=600)
    assert single.returncode == 0, err
    expected = json.loads(out)

    shared = tmp_path / "shared.sqlite"
    runners = [_runner(tmp_path, shared, name, cli_env) for name in ("a", "b")]
    outcomes = []
    for runner in runners:
        out, err = runner.communicate(timeout=600)
        assert runner.returncode == 0, err
        outcomes.append(json.loads(out))
    assert sum(o["runs"] for o in outcomes) == expected["runs"]  # no training twice
    assert all(o["runs"] > 0 for o in outcomes), outcomes  # both trained
    assert sum(o["rows_added"] for o in outcomes) == expected["rows_added"]
    rows = _rows(shared)
    assert not rows.duplicated(KEY).any() and len(rows) == len(_rows(alone))
    a = pd.read_csv(tmp_path / "report_a" / "table.csv")
    b = pd.read_csv(tmp_path / "report_b" / "table.csv")
    pd.testing.assert_frame_equal(a, b)  # both saw the whole protocol
    with sqlite3.connect(shared) as conn:
        assert conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # released at the end


def test_a_killed_runners_claims_expire_and_are_taken_over(tmp_path, cli_env):
    """SIGKILL leaves a runner's claims in the store; the process is gone from this machine, so
    the next runner takes its units over at once instead of waiting for the leases."""
    (tmp_path / "grid.json").write_text(json.dumps(TINY_GRID))
    store = tmp_path / "s.sqlite"
    victim = _runner(tmp_path, store, "victim", cli_env)
    deadline = time.monotonic() + 300
    claims = 0
    while time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.2)
        try:
            with sqlite3.connect(store, timeout=30) as conn:
                done = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                claims = conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
        except sqlite3.OperationalError:
            continue  # the store or its claims table is not there yet
        if done >= 3 and claims:
            break
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert claims, "the runner held no claim when it was killed"
    started = time.monotonic()
    heir = _runner(tmp_path, store, "heir", cli_env)
    out, err = heir.communicate(timeout=600)
    assert heir.returncode == 0, err
    assert time.monotonic() - started < 100  # well under the 120 s lease it would otherwise wait
    alone = tmp_path / "alone.sqlite"
    reference = _runner(tmp_path, alone, "alone", cli_env)
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err
    rows = _rows(store)
    assert not rows.duplicated(KEY).any()
    assert sorted(map(tuple, rows[KEY].to_numpy().tolist())) == sorted(map(tuple, _rows(alone)[KEY].to_numpy().tolist()))


def test_claims_of_live_or_foreign_runners_hold_until_their_lease_ends(tmp_path):
    from softbits.experiments.store import ResultStore
    from softbits.experiments.tasks import ResultKey

    key = [ResultKey("d", "fp", 32, "s", "test", 0, 42)]
    with ResultStore(tmp_path / "s.sqlite") as store:
        assert store.claim("u", key, f"elsewhere:{os.getpid()}:a", 60)
        assert not store.claim("u", key, "me:1:b", 60)  # held, lease running
        assert store.claim("u", key, f"elsewhere:{os.getpid()}:a", 60)  # its owner renews
        assert store.claim("v", key, "farhost:1:c", -1)  # a lease already over
        assert store.claim("v", key, "me:1:b", 60)  # is taken over
