"""Turn a dataset name or a user's file into numeric arrays, saying where they came from.

Order for a named dataset: a data directory (``--data-dir`` or ``SOFTBITS_DATA_DIR``) holding
``<name>.csv.gz``/``<name>.csv``, then OpenML through :func:`sklearn.datasets.fetch_openml` with a
local cache, then (``fried`` only) the Friedman #1 formula.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from softbits.data.names import check_feature_names
from softbits.data.registry import DatasetInfo, get_dataset_info
from softbits.errors import DataError

__all__ = [
    "Dataset",
    "DATA_DIR_ENV",
    "CACHE_DIR_ENV",
    "load_dataset",
    "load_table",
    "frame_to_dataset",
    "generate_friedman1",
]

DATA_DIR_ENV = "SOFTBITS_DATA_DIR"
CACHE_DIR_ENV = "SOFTBITS_CACHE_DIR"


@dataclass
class Dataset:
    """Features and target of one table, plus what a user needs to know about its origin."""

    name: str
    X: np.ndarray  # float64 [N, F]
    y: np.ndarray  # float64 [N] for regression, int64 class index for classification
    feature_names: list[str]
    target_name: str
    task: str  # "regression" | "classification"
    source: str  # where the rows came from: a path, "openml:<id>", "sklearn", "generated"
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])


def _default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "softbits")


def generate_friedman1(n_samples: int = 40768, seed: int = 0) -> pd.DataFrame:
    """Friedman #1: x ~ U[0,1]^10, y = 10 sin(pi x1 x2) + 20 (x3 - 1/2)^2 + 10 x4 + 5 x5 + N(0,1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n_samples, 10))
    y = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2
         + 10 * x[:, 3] + 5 * x[:, 4] + rng.normal(size=n_samples))
    frame = pd.DataFrame(x, columns=[f"X{i}" for i in range(1, 11)])
    frame["Y"] = y
    return frame


def _read_file(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"expected a file, got a directory: {path}")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz", ".txt", ".tsv", ".gz")):
            return pd.read_csv(path, sep="\t" if ".tsv" in name else ",")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except EOFError:  # gzip's end-of-stream marker is missing
        raise DataError(f"cannot read {path}: the compressed file is truncated") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    raise DataError(f"unsupported file type {path.name!r}: use .csv, .csv.gz or .parquet")


def _check_text_target(y_raw: pd.Series, target: str, task: str) -> None:
    """Refuse a text target that cannot be what the user meant.

    Rule for ``task="auto"``: a target with text cells is classification only when at most half
    of its non-empty cells parse as numbers. When most do, the text cells are typos or
    placeholders in a numeric column: training a many-class classifier on it would be silent
    garbage, so it is an error naming the first such cell. ``task="regression"`` refuses any
    text cell the same way.
    """
    present = y_raw.dropna()
    text = pd.to_numeric(present, errors="coerce").isna().to_numpy()
    n_text = int(text.sum())
    if n_text == 0:
        return
    first = int(np.flatnonzero(text)[0])
    row = int(np.flatnonzero(y_raw.notna().to_numpy())[first]) + 1
    where = f"first {present.iloc[first]!r} in data row {row}"
    if 2 * n_text < len(present):
        raise DataError(
            f"target column {target!r} is numeric but for {n_text} cells ({where}); fix or drop "
            "those rows, or pass --task classification to use every value as a class label")
    if task == "regression":
        raise DataError(f"target column {target!r} is not numeric ({n_text} non-numeric values, {where}); "
                        "use --task classification or pick another --target")


def frame_to_dataset(
    frame: pd.DataFrame,
    *,
    name: str,
    source: str,
    target: str | None = None,
    task: str = "auto",
    dropna: bool = False,
) -> Dataset:
    """Validate a table and split it into numeric features and a target.

    Non-numeric feature columns are dropped with a warning (the paper uses numeric columns only);
    NaN/inf are an error unless ``dropna`` removes those rows.
    """
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"{source} has no rows or no columns")
    if frame.shape[1] < 2:
        header = str(frame.columns[0])
        hint = next((f" (its header holds {sep!r}: is the file separated by {name}? softbits reads "
                     "comma-separated files; convert it)" for sep, name in ((";", "semicolons"), ("\t", "tabs"),
                                                                           ("|", "pipes")) if sep in header), "")
        raise DataError(f"{source} needs at least one feature column and a target column{hint}")
    check_feature_names([str(c) for c in frame.columns], source)
    target = frame.columns[-1] if target is None else target
    if target not in frame.columns:
        raise DataError(
            f"target column {target!r} not in {source}; columns are: {', '.join(map(str, frame.columns))}"
        )
    notes: list[str] = []
    y_raw = frame[target]
    features = frame.drop(columns=[target])
    numeric = features.select_dtypes(include=["number", "bool"])
    dropped = [str(c) for c in features.columns if c not in numeric.columns]
    if dropped:
        msg = f"dropped non-numeric feature columns: {', '.join(dropped)}"
        warnings.warn(msg, stacklevel=2)
        notes.append(msg)
    if numeric.shape[1] == 0:
        raise DataError(f"{source} has no numeric feature columns")

    if task not in ("auto", "regression", "classification"):
        raise DataError(f"unknown task {task!r}; choose auto, regression or classification")
    target_numeric = pd.api.types.is_numeric_dtype(y_raw) or pd.api.types.is_bool_dtype(y_raw)
    if not target_numeric and task != "classification":
        _check_text_target(y_raw, str(target), task)
    auto_classification = task == "auto" and not target_numeric
    if task == "auto":
        task = "regression" if target_numeric else "classification"

    X = numeric.to_numpy(dtype=np.float64)
    bad_x = ~np.isfinite(X)
    bad_y = y_raw.isna().to_numpy().copy()
    if target_numeric:
        bad_y |= ~np.isfinite(y_raw.to_numpy(dtype=np.float64, na_value=np.nan))
    bad_rows = bad_x.any(axis=1) | bad_y
    if bad_rows.any():
        cols = [str(c) for c, b in zip(numeric.columns, bad_x.any(axis=0), strict=True) if b]
        if bad_y.any():
            cols.append(str(target))
        if not dropna:
            raise DataError(
                f"{int(bad_rows.sum())} rows contain NaN/inf in columns: {', '.join(cols)} "
                "(pass --dropna to drop those rows)"
            )
        notes.append(f"dropped {int(bad_rows.sum())} rows with NaN/inf in: {', '.join(cols)}")
        X = X[~bad_rows]
        y_raw = y_raw[~bad_rows]
        if X.shape[0] == 0:
            raise DataError(f"{source}: no rows left after dropping NaN/inf")

    classes = None
    if task == "classification":
        codes, uniques = pd.factorize(y_raw, sort=True)
        y = codes.astype(np.int64)
        classes = [str(u) for u in uniques]
        if len(classes) < 2:
            raise DataError(f"target column {target!r} has a single class; nothing to classify")
        if auto_classification:
            notes.append(f"target column {target!r} holds text labels, so the task is classification "
                         f"({len(classes)} classes)")
    else:
        y = y_raw.to_numpy(dtype=np.float64)
    return Dataset(
        name=name, X=X, y=y, feature_names=[str(c) for c in numeric.columns],
        target_name=str(target), task=task, source=source, classes=classes, notes=notes,
    )


def load_table(path: str | os.PathLike[str], target: str | None = None, *, task: str = "auto",
               dropna: bool = False) -> Dataset:
    """Load a user's CSV, CSV.GZ or Parquet file; the target defaults to the last column."""
    p = Path(path)
    frame = _read_file(p)
    return frame_to_dataset(frame, name=p.name.split(".")[0], source=str(p), target=target,
                            task=task, dropna=dropna)


def _from_openml(info: DatasetInfo, cache_dir: Path) -> pd.DataFrame | None:
    from sklearn.datasets import fetch_openml

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bunch = fetch_openml(data_id=info.openml_id, data_home=str(cache_dir / "openml"),
                                 as_frame=True, n_retries=1, delay=0.1, parser="auto")
    except Exception:  # noqa: BLE001 - any network/parse failure means "not reachable"
        return None
    frame = bunch.frame
    if info.target not in frame.columns:
        return None
    return pd.concat([frame.drop(columns=[info.target]), frame[info.target]], axis=1)


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    task: str = "auto",
    dropna: bool = False,
    download: bool = True,
) -> Dataset:
    """Load a registered dataset by name (see :data:`softbits.data.DATASETS`)."""
    info = get_dataset_info(name)
    task = info.task if task == "auto" else task
    if info.sklearn_loader:
        import sklearn.datasets

        frame = getattr(sklearn.datasets, info.sklearn_loader)(as_frame=True).frame
        return frame_to_dataset(frame, name=name, source="sklearn", target=info.target,
                                task=task, dropna=dropna)

    data_dir = data_dir or os.environ.get(DATA_DIR_ENV)
    if data_dir:
        d = Path(data_dir)
        if not d.is_dir():
            raise DataError(f"data directory not found: {d}")
        for candidate in (d / f"{name}.csv.gz", d / f"{name}.csv", d / f"{name}.parquet"):
            if candidate.exists():
                frame = _read_file(candidate)
                target = info.target if info.target in frame.columns else None
                return frame_to_dataset(frame, name=name, source=str(candidate), target=target,
                                        task=task, dropna=dropna)

    frame = _from_openml(info, Path(cache_dir) if cache_dir else _default_cache_dir()) if download else None
    if frame is not None:
        return frame_to_dataset(frame, name=name, source=f"openml:{info.openml_id}",
                                target=info.target, task=task, dropna=dropna)
    if name == "fried":
        ds = frame_to_dataset(generate_friedman1(info.rows or 40768), name=name,
                              source="generated", target="Y", task=task)
        ds.notes.append("fried was GENERATED from the Friedman #1 formula (seed 0): "
                        "no copy in the data directory and OpenML unreachable")
        return ds
    where = f"not in data directory {data_dir}" if data_dir else f"no data directory given (set {DATA_DIR_ENV} or --data-dir)"
    raise DataError(
        f"dataset {name!r} not available: {where}, and OpenML id {info.openml_id} "
        "could not be fetched"
    )
