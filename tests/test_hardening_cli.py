"""Hostile output paths and stores: every one is a one-line error with exit code 2, found before
any training, and a read-only command leaves its input byte for byte as it was.

All cases run the real console command in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from softbits.experiments.protocol import Protocol, final_tasks
from softbits.experiments.settings import Setting
from softbits.experiments.store import ResultStore
from softbits.experiments.tasks import ResultRow, RunMetrics
from softbits.training.train import TestMetrics

SETTING = Setting(1e-3, 1, 8, 2, 1e-3, 0.0, 0.0)
TINY_GRID = {"learning_rate": [1e-3], "hidden_layers": [1], "hidden_neurons": [8], "num_epochs": [2],
             "decrease_factor": [1e-3], "dropout_rate": [0.0], "weight_decay": [0.0]}


def run(cmd: list[str], env: dict[str, str], *args: object, timeout: float = 120,
        **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *[str(a) for a in args]], env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def assert_one_line_error(r: subprocess.CompletedProcess[str], needle: str) -> None:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert needle in lines[0], lines[0]


def filled_store(path: Path) -> Path:
    """A real store with chosen settings and final-test rows for 2 methods × 2 widths × 20 repeats."""
    protocol = Protocol(datasets=("diabetes",), methods=("fp", "bw-sq"), bits=(2, 3), n_folds=2, repeats=20)
    chosen = {c: SETTING for c in protocol.cells()}
    with ResultStore(path) as store:
        store.set_choices((d, m, b, s, "test", None) for (d, m, b), s in chosen.items())
        for task in final_tasks(protocol, chosen):
            store.add_rows([ResultRow(k, RunMetrics(TestMetrics(0.1 * (1 + k.index % 3), None, None, 0.0),
                                                    0.1, 0.0, 90, 10, 1), 0.1, "cpu:test", {"torch": "x"})
                            for k in task.keys()])
    return path


def corrupt(path: Path) -> None:
    """Overwrite 512 bytes in the middle of the file, as a bad disk sector would."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 512] = b"\xa5" * 512
    path.write_bytes(bytes(data))


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, diabetes_models) -> Path:
    directory = tmp_path_factory.mktemp("hardening_models")
    diabetes_models(directory, ("bw-sq",), seed=0, n_rows=20)
    return directory


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A regular file: nothing can be created below it."""
    path = tmp_path / "plain.txt"
    path.write_text("I am a file\n")
    return path


# --- train --save ---------------------------------------------------------------------------------

@pytest.mark.parametrize("below", ["m.safetensors", "sub/m.safetensors"])
def test_train_save_below_a_file_fails_before_training(softbits_cmd, cli_env, a_file, below):
    # 10^5 epochs would take many minutes: the error must come before training starts
    r = run(softbits_cmd, cli_env, "train", "--dataset", "diabetes", "--epochs", "100000",
            "--device", "cpu", "--save", a_file / below, timeout=60)
    assert_one_line_error(r, "is not a directory")
    assert r.stdout == "" and a_file.read_text() == "I am a file\n"


# --- export --out-dir / encode --out ---------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "c"])
def test_export_out_below_a_file(softbits_cmd, cli_env, models, a_file, fmt):
    r = run(softbits_cmd, cli_env, "export", models / "bw-sq.safetensors", "--format", fmt,
            "--out-dir", a_file / "enc")
    assert_one_line_error(r, "is not a directory")


def test_export_target_file_is_a_directory(softbits_cmd, cli_env, models, tmp_path):
    (tmp_path / "out" / "encoder.json").mkdir(parents=True)
    r = run(softbits_cmd, cli_env, "export", models / "bw-sq.safetensors", "--out-dir", tmp_path / "out")
    assert_one_line_error(r, "encoder.json")


@pytest.mark.parametrize("fmt", ["bin", "hex"])
def test_encode_out_is_a_directory(softbits_cmd, cli_env, models, tmp_path, fmt):
    r = run(softbits_cmd, cli_env, "encode", models / "bw-sq.safetensors", "--input", models / "rows.csv",
            "--format", fmt, "--out", tmp_path)
    assert_one_line_error(r, "is a directory")


def test_encode_out_below_a_file(softbits_cmd, cli_env, models, a_file):
    r = run(softbits_cmd, cli_env, "encode", models / "bw-sq.safetensors", "--input", models / "rows.csv",
            "--out", a_file / "p.bin")
    assert_one_line_error(r, "is not a directory")


# --- report ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["file", "below file"])
def test_report_out_is_a_file(softbits_cmd, cli_env, tmp_path, a_file, where):
    store = filled_store(tmp_path / "s.sqlite")
    before = snapshot(store)
    out = a_file if where == "file" else a_file / "R"
    r = run(softbits_cmd, cli_env, "report", "--store", store, "--out-dir", out)
    assert_one_line_error(r, "is not a directory")
    assert a_file.read_text() == "I am a file\n" and snapshot(store) == before


def test_report_leaves_the_store_untouched(softbits_cmd, cli_env, tmp_path):
    store = filled_store(tmp_path / "s.sqlite")
    before = snapshot(store)
    r = run(softbits_cmd, cli_env, "report", "--store", store, "--out-dir", tmp_path / "R", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["rows"]) == 4
    assert snapshot(store) == before


@pytest.mark.parametrize("content, needle", [
    (b"", "is empty"),
    (b"not a database, just text\n" * 300, "not an SQLite database"),
])
def test_report_refuses_a_non_store_and_leaves_it_untouched(softbits_cmd, cli_env, tmp_path, content, needle):
    store = tmp_path / "s.sqlite"
    store.write_bytes(content)
    before = snapshot(store)
    r = run(softbits_cmd, cli_env, "report", "--store", store, "--out-dir", tmp_path / "R")
    assert_one_line_error(r, needle)
    assert snapshot(store) == before and not (tmp_path / "R").exists()


def test_report_on_a_corrupted_store(softbits_cmd, cli_env, tmp_path):
    store = filled_store(tmp_path / "s.sqlite")
    corrupt(store)
    before = snapshot(store)
    r = run(softbits_cmd, cli_env, "report", "--store", store, "--out-dir", tmp_path / "R")
    assert_one_line_error(r, "malformed")
    assert snapshot(store) == before


# --- reproduce ------------------------------------------------------------------------------------

def reproduce_args(directory: Path, store: Path, *extra: object) -> list[object]:
    grid = directory / "grid.json"
    grid.write_text(json.dumps(TINY_GRID))
    return ["reproduce", "--datasets", "diabetes", "--methods", "fp", "--bits", "2", "--grid", grid,
            "--n-settings", "1", "--folds", "2", "--repeats", "1", "--jobs", "1", "--device", "cpu",
            "--store", store, *extra]


@pytest.mark.parametrize("where", ["file", "below file"])
def test_reproduce_out_is_a_file_fails_before_training(softbits_cmd, cli_env, tmp_path, a_file, where):
    store = tmp_path / "s.sqlite"
    out = a_file if where == "file" else a_file / "R"
    r = run(softbits_cmd, cli_env, *reproduce_args(tmp_path, store, "--out-dir", out))
    assert_one_line_error(r, "is not a directory")
    assert not store.exists(), "the store was opened, so the check came after training started"


@pytest.mark.parametrize("damage, needle", [
    ("corrupt", "malformed"),
    ("text", "not an SQLite database"),
])
def test_reproduce_refuses_a_damaged_store_untouched(softbits_cmd, cli_env, tmp_path, damage, needle):
    store = tmp_path / "s.sqlite"
    if damage == "corrupt":
        filled_store(store)
        corrupt(store)
    else:
        store.write_text("not a database, just text\n" * 300)
    before = snapshot(store)
    r = run(softbits_cmd, cli_env, *reproduce_args(tmp_path, store))
    assert_one_line_error(r, needle)
    assert snapshot(store) == before


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[Path]:
    """A real store that SQLite can open but not write. A user cannot write a mode-0444 file;
    root can, so as root the file is made immutable (``chattr +i``), which binds root too."""
    store = filled_store(tmp_path / "ro.sqlite")
    if os.geteuid() != 0:
        store.chmod(0o444)
        yield store
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(store)], capture_output=True).returncode != 0:
        pytest.skip("running as root, and this file system or container refuses chattr +i")
    try:
        yield store
    finally:
        subprocess.run([chattr, "-i", str(store)], check=True)


def test_reproduce_refuses_a_read_only_store(softbits_cmd, cli_env, tmp_path, read_only_store):
    """SQLite opens a file it may not write read-only and fails only at the first write
    ("attempt to write a readonly database"): the command must refuse it up front."""
    before = snapshot(read_only_store)
    r = run(softbits_cmd, cli_env, *reproduce_args(tmp_path, read_only_store))
    assert_one_line_error(r, "cannot write")
    assert snapshot(read_only_store) == before


def test_a_write_refused_after_opening_is_one_line(tmp_path):
    """A write SQLite refuses once the store is open (lost permission, read-only remount) is a
    SoftbitsError naming the store, not a raw sqlite3 error: here the connection is swapped for
    a read-only one, so SQLite itself raises "attempt to write a readonly database"."""
    import sqlite3

    from softbits.errors import SoftbitsError

    path = filled_store(tmp_path / "s.sqlite")
    with ResultStore(path) as store:
        store._conn.close()
        store._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        with pytest.raises(SoftbitsError, match="readonly database"):
            store.add_settings([Setting(1e-2, 1, 8, 2, 1e-3, 0.0, 0.0)])
