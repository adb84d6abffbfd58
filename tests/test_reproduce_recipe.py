"""``reproduce --recipe/--members``: what trains, which store keys it gets, what the report says.

Runs are real (in-process ``main`` and one CLI subprocess, SQLite stores) on the offline
``diabetes`` set with one-layer nets of 2–3 epochs, so each test takes seconds.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from softbits.experiments.protocol import Protocol, choose_settings
from softbits.experiments.report import TABLE_COLUMNS, VARIANT_COLUMNS
from softbits.experiments.settings import SETTING_COLUMNS, Setting, draw_settings
from softbits.training.config import MAX_MEMBERS
from softbits.training.methods import DEFAULT_MEMBERS

from conftest import run_main

GRID = {"learning_rate": [1e-3], "hidden_layers": [1], "hidden_neurons": [8, 16],
        "num_epochs": [2, 3], "decrease_factor": [1e-3], "dropout_rate": [0.0],
        "weight_decay": [0.0]}
#: the paper's Bw-SQ row shape for a settings file (bw-sq-ens borrows it)
SETTINGS_HEADER = "dataset,method,bits," + ",".join(SETTING_COLUMNS) + "\n"


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(GRID))
    return path


def _search(grid: Path, store: Path, methods: str, *extra: str) -> list[str]:
    return ["reproduce", "--datasets", "diabetes", "--methods", methods, "--bits", "2",
            "--grid", str(grid), "--n-settings", "2", "--folds", "2", "--repeats", "2",
            "--jobs", "1", "--store", str(store), "--json", *extra]


def _reproduce(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = run_main(capsys, *args)
    assert code == 0, err
    return json.loads(out)


def _query(store: Path, sql: str) -> pd.DataFrame:
    with sqlite3.connect(store) as conn:
        return pd.read_sql_query(sql, conn)


def _params(store: Path) -> dict[str, dict]:
    rows = _query(store, "SELECT setting_id, params FROM settings")
    return {r.setting_id: json.loads(r.params) for r in rows.itertuples()}


# ---- setting ids and the weight-decay rule -------------------------------------------------

def test_default_trained_setting_keeps_todays_id_and_values() -> None:
    """The id of a plain setting is pinned (as the code before --recipe computed it), and the
    paper recipe with the default members gives every method exactly that id and those values."""
    plain = Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 0.0)
    assert plain.id == "f6cb44dde07e"
    for method in ("fp", "bw-sq", "bw-sq-ens", "lsq"):
        trained = plain.trained_as(method)
        assert trained.id == plain.id and trained.to_dict() == plain.to_dict()
        assert trained.train_config(method, 3, 7) == plain.train_config(method, 3, 7)
    assert plain.trained_as("bw-sq-ens").members == DEFAULT_MEMBERS
    # a member count given for a single-network method is ignored, as documented
    assert plain.trained_as("bw-sq", members=8).id == plain.id


def test_non_default_recipe_or_members_never_share_an_id() -> None:
    """(The method is part of the store key, so only one method's ids need to differ.)"""
    plain = Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 0.0)
    ids = {plain.trained_as("bw-sq-ens").id, plain.trained_as("bw-sq-ens", "best").id,
           plain.trained_as("bw-sq-ens", members=2).id, plain.trained_as("bw-sq-ens", "best", 2).id}
    assert len(ids) == 4
    assert plain.trained_as("bw-sq", "best").id != plain.id
    assert plain.trained_as("bw-sq-ens", members=2).to_dict()["members"] == 2
    # the same plain values with weight decay 1e-4 under paper are another training's id too
    assert Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 1e-4).trained_as("bw-sq").id \
        != plain.trained_as("bw-sq", "best").id


def test_weight_decay_of_a_grid_or_table_wins_unless_it_is_zero() -> None:
    """0 (the paper's grid and tables) takes the recipe's weight decay; any other value is an
    explicit choice and wins over the recipe. The recipe fills the rest of the loop."""
    zero = Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 0.0)
    chosen = Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 5e-4)
    assert zero.trained_as("bw-sq", "paper").train_config("bw-sq", 3, 0).weight_decay == 0.0
    best = zero.trained_as("bw-sq", "best")
    config = best.train_config("bw-sq", 3, 0)
    assert (best.weight_decay, config.weight_decay, config.recipe) == (1e-4, 1e-4, "best")
    assert chosen.trained_as("bw-sq", "best").train_config("bw-sq", 3, 0).weight_decay == 5e-4
    assert chosen.trained_as("bw-sq", "paper").train_config("bw-sq", 3, 0).weight_decay == 5e-4
    # applying the protocol's recipe to an already trained setting changes nothing
    assert best.trained_as("bw-sq", "best") == best


def test_tasks_train_with_the_protocols_recipe_and_members() -> None:
    """What a worker trains (tasks.prepare) for each method of one protocol."""
    from softbits.experiments.protocol import final_tasks, search_tasks
    from softbits.experiments.tasks import prepare

    protocol = Protocol(datasets=("diabetes",), methods=("fp", "bw-sq", "bw-sq-ens"), bits=(2,),
                        n_folds=2, repeats=1, recipe="best", members=2)
    setting = Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 0.0)
    for tasks in (search_tasks(protocol, [setting]),
                  final_tasks(protocol, {c: setting for c in protocol.cells()})):
        configs = {t.train_method: prepare(t)[2] for t in tasks}
        assert {m: (c.recipe, c.weight_decay, c.members) for m, c in configs.items()} == {
            "fp": ("best", 1e-4, 1), "bw-sq": ("best", 1e-4, 1), "bw-sq-ens": ("best", 1e-4, 2)}


def test_search_choice_counts_only_this_protocols_runs() -> None:
    """A store holding the same settings under two recipes: each protocol chooses among its own
    rows, even when the other recipe's rows have lower MSE."""
    settings = draw_settings(2, grid=GRID)
    paper = Protocol(datasets=("diabetes",), methods=("bw-sq",), bits=(2,), n_folds=2)
    best = Protocol(datasets=("diabetes",), methods=("bw-sq",), bits=(2,), n_folds=2, recipe="best")
    rows = []
    for protocol, mses in ((paper, (0.5, 0.4)), (best, (0.1, 0.2))):
        for s, mse in zip(settings, mses, strict=True):
            rows += [{"dataset": "diabetes", "method": "bw-sq", "bits": 2, "phase": "cv2",
                      "setting_id": protocol.trained(s, "bw-sq").id, "test_mse": mse}] * 2
    results = pd.DataFrame(rows)
    chosen_paper, mse_paper = choose_settings(paper, settings, results)[("diabetes", "bw-sq", 2)]
    chosen_best, mse_best = choose_settings(best, settings, results)[("diabetes", "bw-sq", 2)]
    assert (chosen_paper, mse_paper) == (settings[1], 0.4)
    assert (chosen_best, mse_best) == (settings[0], 0.1)


# ---- reproduce end to end --------------------------------------------------------------------

def test_default_rerun_skips_all_and_other_recipe_keeps_its_own_rows(
        tmp_path: Path, grid: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s.sqlite"
    first = _reproduce(capsys, *_search(grid, store, "fp,bw-sq"))
    assert (first["recipe"], first["members"]) == ("paper", {})
    paper_rows = _query(store, "SELECT * FROM results")
    # default keys are the plain settings' ids and values, as before the option existed
    plain = {s.id: s.to_dict() for s in draw_settings(2, seed=42, grid=GRID)}
    assert set(paper_rows["setting_id"]) <= set(plain)
    assert _params(store) == plain
    assert set(pd.read_csv(tmp_path / "s_report" / "table.csv").columns) \
        == {*TABLE_COLUMNS, *SETTING_COLUMNS}

    # the same command, and the defaults spelled out, train nothing
    for extra in ((), ("--recipe", "paper", "--members", str(DEFAULT_MEMBERS))):
        again = _reproduce(capsys, *_search(grid, store, "fp,bw-sq", *extra))
        assert (again["rows_added"], again["runs"]) == (0, 0)

    best = _reproduce(capsys, *_search(grid, store, "fp,bw-sq", "--recipe", "best"))
    assert best["recipe"] == "best" and best["rows_added"] == len(paper_rows)
    rows = _query(store, "SELECT * FROM results")
    assert len(rows) == 2 * len(paper_rows)
    best_ids = set(rows["setting_id"]) - set(paper_rows["setting_id"])
    assert best_ids and all(_params(store)[i]["recipe"] == "best" for i in best_ids)
    assert all(_params(store)[i]["weight_decay"] == 1e-4 for i in best_ids)

    # the table shows the latest choices (best), each mean over its own 2 repeats only
    table = pd.read_csv(tmp_path / "s_report" / "table.csv")
    assert list(table.columns) == [*TABLE_COLUMNS, *SETTING_COLUMNS, *VARIANT_COLUMNS]
    assert (table["recipe"] == "best").all() and (table["n_runs"] == 2).all()
    assert (table["weight_decay"] == 1e-4).all()
    test_rows = rows[(rows["phase"] == "test") & rows["setting_id"].isin(best_ids)]
    for r in table.itertuples():
        mine = test_rows[(test_rows["method"] == r.method.lower()) & (test_rows["bits"] == r.bits)]
        assert r.test_mse_mean == pytest.approx(mine["test_mse"].mean())
    markdown = (tmp_path / "s_report" / "table.md").read_text()
    assert "| FP (best) | Bw-SQ (best) |" in markdown

    # back to paper: nothing trains, and the table is the paper run's again, without the columns
    back = _reproduce(capsys, *_search(grid, store, "fp,bw-sq"))
    assert (back["rows_added"], back["runs"]) == (0, 0)
    table = pd.read_csv(tmp_path / "s_report" / "table.csv")
    assert list(table.columns) == [*TABLE_COLUMNS, *SETTING_COLUMNS]
    assert (table["n_runs"] == 2).all() and (table["weight_decay"] == 0.0).all()


def test_members_and_recipe_with_a_settings_file_lent_by_bw_sq(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """bw-sq-ens takes the Bw-SQ row of the file; --members reaches the ensemble only; a
    non-zero weight decay of the file wins over recipe best."""
    settings = tmp_path / "chosen.csv"
    settings.write_text(SETTINGS_HEADER + "diabetes,Bw-SQ,2,0.001,1,8,2,0.001,0.0,0.0005\n")
    store = tmp_path / "s.sqlite"

    def run(*extra: str) -> dict:
        return _reproduce(capsys, "reproduce", "--datasets", "diabetes", "--methods", "bw-sq,bw-sq-ens",
                          "--bits", "2", "--settings", str(settings), "--repeats", "2", "--jobs", "1",
                          "--store", str(store), "--json", *extra)

    plain = run()
    assert plain["members"] == {"bw-sq-ens": DEFAULT_MEMBERS} and plain["rows_added"] == 4
    plain_ids = set(_query(store, "SELECT setting_id FROM results")["setting_id"])
    assert len(plain_ids) == 1  # bw-sq and bw-sq-ens with 4 members: today's one id

    two = run("--members", "2", "--recipe", "best")
    assert (two["members"], two["recipe"], two["rows_added"]) == ({"bw-sq-ens": 2}, "best", 4)
    rows = _query(store, "SELECT method, setting_id FROM results")
    new = rows[~rows["setting_id"].isin(plain_ids)]
    assert len(new) == 4 and new.groupby("method")["setting_id"].nunique().to_dict() \
        == {"bw-sq": 1, "bw-sq-ens": 1}
    params = _params(store)
    ens = params[new[new["method"] == "bw-sq-ens"]["setting_id"].iloc[0]]
    single = params[new[new["method"] == "bw-sq"]["setting_id"].iloc[0]]
    assert (ens["members"], ens["recipe"], ens["hidden_neurons"], ens["weight_decay"]) == (2, "best", 8, 5e-4)
    assert "members" not in single and single["recipe"] == "best"

    table = pd.read_csv(tmp_path / "s_report" / "table.csv").set_index("method")
    assert table.loc["Bw-SQ-Ens", "members"] == 2 and table.loc["Bw-SQ", "members"] == 1
    assert (table["recipe"] == "best").all() and (table["n_runs"] == 2).all()
    prov = json.loads((tmp_path / "s_report" / "provenance.json").read_text())
    assert {(c["method"], c["recipe"], c["members"]) for c in prov["cells"]} \
        == {("Bw-SQ", "best", 1), ("Bw-SQ-Ens", "best", 2)}
    assert "| Bw-SQ (best) | Bw-SQ-Ens (best, 2 members) |" \
        in (tmp_path / "s_report" / "table.md").read_text()


def test_members_without_an_ensemble_is_ignored_with_a_note(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / "chosen.csv"
    settings.write_text(SETTINGS_HEADER + "diabetes,Bw-SQ,2,0.001,1,8,2,0.001,0.0,0.0\n")
    code, out, err = run_main(capsys, "reproduce", "--datasets", "diabetes", "--methods", "bw-sq",
                              "--bits", "2", "--settings", settings, "--repeats", "1", "--jobs", "1",
                              "--store", tmp_path / "s.sqlite", "--members", "3", "--json")
    assert code == 0, err
    assert "note: --members 3 is ignored: none of the methods is an ensemble" in err
    assert json.loads(out)["members"] == {}
    ids = _query(tmp_path / "s.sqlite", "SELECT setting_id FROM results")["setting_id"]
    assert set(ids) == {Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 0.0).id}


# ---- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "message"), [
    (("--members", "0"), f"--members must be an integer in 1..{MAX_MEMBERS}, got 0"),
    (("--members", str(MAX_MEMBERS + 1)), f"--members must be an integer in 1..{MAX_MEMBERS}"),
    (("--recipe", "fancy"), "unknown recipe 'fancy'; choose one of: paper, best"),
])
def test_bad_members_or_recipe_is_one_line_before_the_store(
        tmp_path: Path, grid: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...],
        message: str) -> None:
    store = tmp_path / "s.sqlite"
    code, out, err = run_main(capsys, *_search(grid, store, "bw-sq-ens", *extra))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not store.exists() and not (tmp_path / "s_report").exists()


def test_absurd_members_refused_by_the_memory_estimate(
        tmp_path: Path, cli_env: dict[str, str], softbits_cmd: list[str]) -> None:
    """The real command line: an ensemble that cannot fit memory fails in about a second, with
    exit 2 and one line, before any training and before the store exists."""
    huge = {**GRID, "hidden_layers": [10], "hidden_neurons": [8192]}
    grid = tmp_path / "huge.json"
    grid.write_text(json.dumps(huge))
    store = tmp_path / "s.sqlite"
    proc = subprocess.run([*softbits_cmd, *_search(grid, store, "bw-sq,bw-sq-ens", "--members", "1024")],
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: training 1024 networks of"), proc.stderr
    assert "lower members" in lines[0]
    assert not store.exists()
