"""Loaders: registry, data directory, user files, bad input; the paper's split and scaling."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from softbits.data import (
    DATASETS,
    PAPER_DATASETS,
    generate_friedman1,
    load_dataset,
    load_table,
    split_and_scale,
)
from softbits.errors import DataError


def test_registry_has_the_papers_datasets_with_openml_ids():
    ids = {n: DATASETS[n].openml_id for n in PAPER_DATASETS}
    assert ids == {"california": 44025, "cpu_act": 197, "fried": 564, "superconduct": 43174,
                   "sulfur": 23515, "wine_quality": 287}
    assert DATASETS["superconduct"].target == "critical_temp"
    with pytest.raises(DataError, match="choose one of"):
        load_dataset("mnist")


@pytest.mark.parametrize("name,rows,features,target", [
    ("fried", 40768, 10, "Y"), ("cpu_act", 8192, 21, "usr"), ("california", 20640, 8, "price"),
])
def test_data_dir_copies(data_dir, name, rows, features, target):
    ds = load_dataset(name, data_dir=data_dir)
    assert (ds.n_samples, ds.n_features, ds.target_name) == (rows, features, target)
    assert ds.task == "regression" and ds.source.endswith(f"{name}.csv.gz")
    assert np.isfinite(ds.X).all()


def test_data_dir_from_environment(data_dir, monkeypatch):
    monkeypatch.setenv("SOFTBITS_DATA_DIR", str(data_dir))
    assert load_dataset("cpu_act").n_samples == 8192


def test_fried_is_generated_when_unavailable_and_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("SOFTBITS_DATA_DIR", raising=False)
    ds = load_dataset("fried", data_dir=tmp_path, download=False)
    assert ds.source == "generated"
    assert (ds.n_samples, ds.n_features) == (40768, 10)
    assert any("GENERATED" in n for n in ds.notes)
    frame = generate_friedman1(2000, seed=3)
    x = frame.iloc[:, :10].to_numpy()
    noise_free = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2
                  + 10 * x[:, 3] + 5 * x[:, 4])
    residual = frame["Y"].to_numpy() - noise_free
    assert abs(residual.std() - 1.0) < 0.1 and abs(residual.mean()) < 0.1


def test_unavailable_dataset_without_network_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("SOFTBITS_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="not available"):
        load_dataset("sulfur", data_dir=tmp_path, download=False)


def test_sklearn_bundled_datasets_are_offline():
    bc = load_dataset("breast_cancer")
    assert bc.task == "classification" and bc.classes == ["0", "1"] and bc.n_features == 30
    assert load_dataset("diabetes").task == "regression"


def _frame(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 5, size=n),
                         "label": rng.choice(["x", "y"], size=n), "t": rng.normal(size=n)})


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_user_files(tmp_path, suffix):
    frame = _frame()
    path = tmp_path / f"table{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    with pytest.warns(UserWarning, match="label"):
        ds = load_table(path)
    assert ds.feature_names == ["a", "b"] and ds.target_name == "t"
    assert ds.task == "regression" and ds.n_samples == 50
    assert any("label" in n for n in ds.notes)
    ds2 = load_table(path, target="label")
    assert ds2.task == "classification" and ds2.feature_names == ["a", "b", "t"]


def test_bad_user_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_table(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_table(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    with pytest.raises(DataError, match="no rows"):
        load_table(header_only)
    path = tmp_path / "t.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(DataError, match="target column 'nope' not in"):
        load_table(path, target="nope")
    with pytest.raises(DataError, match="not numeric"):
        load_table(path, target="label", task="regression")
    sheet = tmp_path / "x.xlsx"
    sheet.write_text("")
    with pytest.raises(DataError, match="unsupported file type"):
        load_table(sheet)


def test_nan_and_inf_are_named_or_dropped(tmp_path):
    frame = _frame().drop(columns=["label"]).astype(float)
    frame.loc[3, "a"] = np.nan
    frame.loc[7, "b"] = np.inf
    frame.loc[7, "a"] = np.nan
    frame.loc[9, "t"] = np.nan
    path = tmp_path / "nan.csv.gz"
    with gzip.open(path, "wt") as fh:
        frame.to_csv(fh, index=False)
    with pytest.raises(DataError, match=r"3 rows contain NaN/inf in columns: a, b, t"):
        load_table(path)
    ds = load_table(path, dropna=True)
    assert ds.n_samples == 47 and np.isfinite(ds.X).all() and np.isfinite(ds.y).all()


def test_split_is_90_10_and_scalers_fit_on_training_part(data_dir):
    ds = load_dataset("cpu_act", data_dir=data_dir)
    split = split_and_scale(ds, seed=42)
    assert len(split.y_train) == 7372 and len(split.y_test) == 820
    np.testing.assert_allclose(split.X_train.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(split.y_train.mean(), 0, atol=1e-9)
    np.testing.assert_allclose(split.y_train.std(), 1, atol=1e-9)
    assert abs(split.y_test.mean()) > 1e-6  # test part is scaled with the training statistics
    again = split_and_scale(ds, seed=42)
    np.testing.assert_array_equal(split.X_test, again.X_test)
    other = split_and_scale(ds, seed=43)
    assert not np.array_equal(split.X_test, other.X_test)
