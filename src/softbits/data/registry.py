"""The paper's datasets (and two bundled sklearn ones) by name."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DatasetInfo", "DATASETS", "dataset_names", "get_dataset_info"]


@dataclass(frozen=True)
class DatasetInfo:
    """Where a named dataset comes from and what its target is."""

    name: str
    openml_id: int | None
    target: str
    task: str = "regression"
    rows: int | None = None
    features: int | None = None
    sklearn_loader: str | None = None  # bundled with scikit-learn: always offline
    note: str = ""


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo("california", 44025, "price", rows=20640, features=8,
                    note="target is log1p(median house value)"),
        DatasetInfo("cpu_act", 197, "usr", rows=8192, features=21),
        DatasetInfo("fried", 564, "Y", rows=40768, features=10,
                    note="Friedman #1; generated from its formula when no copy is reachable"),
        DatasetInfo("superconduct", 43174, "critical_temp", rows=21263, features=81),
        DatasetInfo("sulfur", 23515, "y1", rows=10081, features=6),
        DatasetInfo("wine_quality", 287, "quality", rows=6497, features=11),
        DatasetInfo("breast_cancer", None, "target", task="classification", rows=569,
                    features=30, sklearn_loader="load_breast_cancer"),
        DatasetInfo("digits", None, "target", task="classification", rows=1797,
                    features=64, sklearn_loader="load_digits"),
        DatasetInfo("diabetes", None, "target", rows=442, features=10,
                    sklearn_loader="load_diabetes"),
    ]
}

PAPER_DATASETS = ("california", "cpu_act", "fried", "superconduct", "sulfur", "wine_quality")


def dataset_names() -> list[str]:
    return list(DATASETS)


def get_dataset_info(name: str) -> DatasetInfo:
    from softbits.errors import DataError

    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)} "
            "(or pass --data PATH for your own file)"
        ) from None
