"""Hardening v2 (issue 19): what a hostile or careless user broke in names, seeds, gzip files,
integer fields, JSON and CSV widths files, encoder specs and stores. Each case is one line on
stderr and exit 2, or a DataError from the library, and nothing half-written."""

from __future__ import annotations

import gzip
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from softbits.data.names import MAX_NAME_BYTES, check_feature_names
from softbits.device.spec import EncoderSpec
from softbits.errors import DataError
from softbits.training.allocation import parse_widths
from softbits.training.trained_model import TrainedModel

from conftest import run_main

NET = ["--epochs", "1", "--layers", "1", "--neurons", "4", "--device", "cpu"]


def _one_line(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err


def _table(path, columns, rows=30):
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.standard_normal((rows, len(columns))), columns=columns).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("v2")
    path = _table(d / "t.csv", ["a", "b", "y"])
    from softbits.cli import main

    try:
        main(["train", "--data", str(path), *NET, "--bits", "2", "--save", str(d / "m.safetensors")])
    except SystemExit as exc:
        assert not exc.code
    return d / "m.safetensors"


def test_an_overlong_feature_name_is_refused_when_training(tmp_path, capsys):
    path = _table(tmp_path / "long.csv", ["x" * 70_000, "b", "y"])
    save = tmp_path / "m.safetensors"
    code, _, err = run_main(capsys, "train", "--data", path, *NET, "--save", save)
    _one_line(code, err, f"names are at most {MAX_NAME_BYTES} bytes")
    assert not save.exists()


def _rewrite_header(src, dst, change) -> None:
    with safe_open(str(src), framework="pt") as f:
        header = json.loads(f.metadata()["softbits"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    change(header)
    save_file(tensors, str(dst), metadata={"softbits": json.dumps(header)})


@pytest.mark.parametrize("names, message", [
    (["a", "a"], "appears twice"),
    (["a", ""], "is empty"),
    (["a", "n" * 5_000_000], "names are at most"),
])
def test_model_files_with_bad_names_are_refused(saved, tmp_path, capsys, names, message):
    bad = tmp_path / "bad.safetensors"
    _rewrite_header(saved, bad, lambda h: h.update(feature_names=names))
    with pytest.raises(DataError, match=message):
        TrainedModel.load(bad)
    for args in (["export", bad, "--out-dir", tmp_path / "out"], ["predict", bad, "--input", tmp_path / "x.csv"]):
        code, _, err = run_main(capsys, *args)
        _one_line(code, err, message)


def test_check_feature_names_refuses_unencodable_text():
    with pytest.raises(DataError, match="not valid Unicode"):
        check_feature_names(["a", "\udc80"])
    assert check_feature_names(["ä", "b"]) == ["ä", "b"]


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "diabetes", "--seed", str(2**32)], "seed must be in 0..4294967295"),
    (["train", "--dataset", "diabetes", "--seed", "-1"], "seed must be in 0..4294967295"),
    (["reproduce", "--datasets", "diabetes", "--methods", "fp", "--bits", "2", "--repeats", "2",
      "--seed", str(2**32 - 1)], "--seed 4294967295..4294967296 leaves 0..4294967295"),
    (["frontier", "--dataset", "diabetes", "--seeds", "2", "--seed", str(2**32 - 1)], "leaves 0..4294967295"),
])
def test_seeds_outside_32_bits_are_refused_before_any_work(tmp_path, capsys, args, message):
    store = tmp_path / "s.sqlite"
    extra = NET if args[0] == "train" else ["--store", store]
    code, _, err = run_main(capsys, *args, *extra)
    _one_line(code, err, message)
    assert not store.exists()


def test_a_truncated_gzip_file_says_so(tmp_path, capsys):
    whole = gzip.compress(("a,b,y\n" + "1,2,3\n" * 5000).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    code, _, err = run_main(capsys, "train", "--data", path, *NET)
    _one_line(code, err, "the compressed file is truncated")


def test_a_semicolon_file_gets_a_hint(tmp_path, capsys):
    path = tmp_path / "semi.csv"
    path.write_text("a;b;y\n1;2;3\n4;5;6\n")
    code, _, err = run_main(capsys, "train", "--data", path, *NET)
    _one_line(code, err, "separated by semicolons")


@pytest.mark.parametrize("text", ["a=²", "a=٣", "a=３"])
def test_widths_take_ascii_digits_only(text):
    with pytest.raises(Exception) as info:
        parse_widths(text, ["a", "b"], 2)
    assert "must be an integer in 0..16" in str(info.value)


def test_frontier_budgets_take_ascii_digits_only(capsys, tmp_path):
    for budget in ("²", "٢١"):
        code, _, err = run_main(capsys, "frontier", "--dataset", "diabetes", "--budgets", budget,
                                "--store", tmp_path / "f.sqlite")
        _one_line(code, err, "whole numbers")


@pytest.mark.parametrize("content, message", [
    ("[" * 100_000, "nested too deeply"),
    ('{"a": 2, "a": 3}', "appears twice"),
    ('\ufeff{"a": 3}', None),
])
def test_json_widths_files(tmp_path, content, message):
    path = tmp_path / "w.json"
    path.write_text(content, encoding="utf-8")
    if message is None:
        assert parse_widths(str(path), ["a", "b"], 2) == (3, 2)
        return
    with pytest.raises(DataError, match=message):
        parse_widths(str(path), ["a", "b"], 2)


def test_csv_widths_files_parse_quotes_and_a_bom(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text('"Med\nInc",4\n', encoding="utf-8")
    with pytest.raises(Exception, match="not a feature of the data"):
        parse_widths(str(path), ["MedInc", "b"], 2)
    path.write_text("\ufeffname,bits\nMedInc,4\n", encoding="utf-8")
    assert parse_widths(str(path), ["MedInc", "b"], 2) == (4, 2)


def test_model_file_metadata_nested_too_deeply(saved, tmp_path, capsys):
    with safe_open(str(saved), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    bad = tmp_path / "deep.safetensors"
    save_file(tensors, str(bad), metadata={"softbits": "[" * 100_000})
    code, _, err = run_main(capsys, "export", bad, "--out-dir", tmp_path / "o")
    _one_line(code, err, "nested too deeply")


@pytest.mark.parametrize("obj, message", [
    ([], "not an object"),
    ({"format": "softbits-encoder", "format_version": float("inf")}, "whole number"),
    ({"format": "softbits-encoder", "format_version": 1.9}, "whole number"),
    ({"format": "softbits-encoder", "format_version": 1, "features": [{"name": "a", "bits": 2.7, "thresholds": [0, 1, 2]}]},
     "whole number"),
    ({"format": "softbits-encoder", "format_version": 1, "features": [{"name": "x" * 70_000, "bits": 2, "thresholds": [0, 1, 2]}]},
     "names are at most"),
    ({"format": "softbits-encoder", "format_version": 1, "features": [{"name": "\udc80", "bits": 2, "thresholds": [0, 1, 2]}]},
     "not valid Unicode"),
    ({"format": "softbits-encoder", "format_version": 1, "features": "abc"}, "list of objects"),
])
def test_every_bad_encoder_spec_is_a_data_error(obj, message):
    with pytest.raises(DataError, match=message):
        EncoderSpec.from_dict(obj)


def test_a_truncated_store_says_what_to_do(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    with sqlite3.connect(store) as conn:
        conn.execute("CREATE TABLE t (x BLOB)")
        conn.executemany("INSERT INTO t VALUES (?)", [(bytes(3000),)] * 50)
    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 3])
    code, _, err = run_main(capsys, "report", "--store", store, "--out-dir", tmp_path / "r")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "restore a copy" in err and "start a new store" in err, err
