"""Table 2 and Figure 4 from a results store: means, 95% t-intervals, comparison to a reference.

``table.csv`` has exactly the columns dataset, method, bits, n_runs, test_mse_mean, ci95_low,
ci95_high and then the chosen setting (the paper's column names); when a chosen setting trained
under another recipe than ``paper`` or with another member count than 4, also ``recipe`` and
``members`` (:data:`VARIANT_COLUMNS`) for every row, and the Markdown table's method columns say
which. The interval is the 95% Student-t interval of the mean over the final-test repeats,
df = n − 1; with a single run it is undefined and written as NaN (empty in the CSV).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from softbits.errors import DataError, SoftbitsError
from softbits.experiments.settings import SETTING_COLUMNS, UNKEYED_MEMBERS, read_csv_table, threshold_lr_scale_of
from softbits.experiments.store import ResultStore
from softbits.experiments.tasks import TEST_PHASE
from softbits.training.methods import METHODS

__all__ = ["TABLE_COLUMNS", "VARIANT_COLUMNS", "ReportPaths", "summarize", "t_interval", "compare", "read_reference",
           "write_report"]

TABLE_COLUMNS = ("dataset", "method", "bits", "n_runs", "test_mse_mean", "ci95_low", "ci95_high")
#: what a row trained with, added after the setting's columns when some row is not paper/4 members
VARIANT_COLUMNS = ("recipe", "members")


@dataclass(frozen=True)
class ReportPaths:
    """Files one report wrote."""

    table_csv: Path
    table_md: Path
    figure: Path
    compare_csv: Path | None = None
    compare_md: Path | None = None
    provenance: Path | None = None


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the t-interval with df = n − 1; NaN bounds when n < 2."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    mean = float(values.mean()) if n else float("nan")
    if n < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half


def _display(key: str) -> str:
    """A store's method name as the tables print it: the paper's name, with ``+predictor``
    for rows a tree or auto predictor served (``bw-sq+gbdt`` → ``Bw-SQ+gbdt``)."""
    method, plus, predictor = key.partition("+")
    return METHODS[method].display + plus + predictor


def _base(display: str) -> str:
    """The paper's method name of a table row (``Bw-SQ+gbdt`` → ``Bw-SQ``)."""
    return str(display).partition("+")[0]


def _rank(display: str) -> tuple[int, str]:
    """Where a table row's method sorts: the registry's order, a method's predictor rows after
    its MLP row; unknown names last."""
    order = {m.display: i for i, m in enumerate(METHODS.values())}
    return order.get(_base(display), len(order)), str(display).partition("+")[2]


#: per chosen (dataset, method, bits) with results: the choice and its final-test rows
ChosenRuns = list[tuple[dict[str, Any], pd.DataFrame]]


def _chosen_runs(store: ResultStore) -> ChosenRuns:
    """Read the store once: (choice, final-test rows of its chosen setting) per cell."""
    results = store.results()
    results = results[results["phase"] == TEST_PHASE]
    runs = []
    for c in store.choices().to_dict("records"):
        mine = results[(results["dataset"] == c["dataset"]) & (results["method"] == c["method"])
                       & (results["bits"] == c["bits"]) & (results["setting_id"] == c["setting_id"])]
        if not mine.empty:
            runs.append((c, mine))
    return runs


def _variant(choice: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The recipe and member count a chosen setting trained with, and whether its stored values
    name them (they do only where they differ from the ``paper`` recipe and 4 members)."""
    recipe, members = choice.get("recipe"), choice.get("members")
    named_recipe = isinstance(recipe, str)
    if isinstance(members, (int, float)) and not np.isnan(members):  # NaN: no value for this row
        count, named_members = int(members), True
    else:
        count, named_members = UNKEYED_MEMBERS if METHODS[_base(choice["method"])].ensemble else 1, False
    return {"recipe": recipe if named_recipe else "paper", "members": count}, named_recipe or named_members


def _mses(rows: pd.DataFrame) -> np.ndarray:
    return rows["test_mse"].to_numpy(dtype=np.float64)


def summarize(store: ResultStore) -> pd.DataFrame:
    """One row per chosen (dataset, method, bits) with final-test results, paper names."""
    return _summary(_chosen_runs(store))


def _summary(runs: ChosenRuns) -> pd.DataFrame:
    rows = []
    varied = scaled = False
    for c, mine in runs:
        mses = _mses(mine)
        mean, low, high = t_interval(mses)
        row = {"dataset": c["dataset"], "method": _display(c["method"]), "bits": int(c["bits"]),
               "n_runs": len(mses), "test_mse_mean": mean, "ci95_low": low, "ci95_high": high}
        row.update({k: c[k] for k in SETTING_COLUMNS})
        variant, named = _variant(c)
        row.update(variant)
        varied = varied or named
        row["threshold_lr_scale"] = threshold_lr_scale_of(c)
        scaled = scaled or row["threshold_lr_scale"] != 1.0
        rows.append(row)
    columns = [*TABLE_COLUMNS, *SETTING_COLUMNS, *(("threshold_lr_scale",) if scaled else ()),
               *(VARIANT_COLUMNS if varied else ())]
    table = pd.DataFrame(rows, columns=columns)
    if table.empty:
        return table
    datasets = list(dict.fromkeys(table["dataset"]))
    table["_d"] = table["dataset"].map(datasets.index)
    table["_m"] = table["method"].map(lambda name: _rank(name)[0])
    table["_p"] = table["method"].map(lambda name: _rank(name)[1])
    return table.sort_values(["_d", "bits", "_m", "_p"]).drop(columns=["_d", "_m", "_p"]).reset_index(drop=True)


def _fmt(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{x:.5f}"


def _column(row: dict[str, Any]) -> str:
    """A row's column title in table.md: the method, and with :data:`VARIANT_COLUMNS` the recipe
    and (ensembles) the members it trained with, so rows of different runs never share a column.
    (A threshold learning-rate scale is a setting, chosen per cell like the network's size:
    ``table.csv`` holds it, the titles do not.)"""
    if "recipe" not in row:
        return str(row["method"])
    ensemble = next(m.ensemble for m in METHODS.values() if m.display == _base(row["method"]))
    return f"{row['method']} ({row['recipe']}" + (f", {row['members']} members)" if ensemble else ")")


def _markdown_table(table: pd.DataFrame) -> str:
    """Rows dataset × bits, columns methods; best quantized method per row in bold."""
    records = table.to_dict("records")
    columns = sorted({_column(r): r["method"] for r in records}.items(),
                     key=lambda item: (_rank(item[1]), item[0]))
    titles = [title for title, _ in columns]
    lines = ["| dataset | bits | " + " | ".join(titles) + " |",
             "|---|---:|" + "---:|" * len(titles)]
    for (dataset, bits), group in table.groupby(["dataset", "bits"], sort=False):
        group_rows = group.to_dict("records")
        means = {_column(r): r["test_mse_mean"] for r in group_rows}
        quantized = {_column(r): r["test_mse_mean"] for r in group_rows
                     if _base(r["method"]) != "FP" and np.isfinite(r["test_mse_mean"])}
        best = min(quantized, key=quantized.__getitem__) if quantized else None
        cells = []
        for title in titles:
            text = _fmt(means[title]) if title in means else ""
            cells.append(f"**{text}**" if title == best else text)
        lines.append(f"| {dataset} | {bits} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _figure(table: pd.DataFrame, path: Path) -> None:
    """MSE vs bits per dataset: quantized methods with CI bands, FP as a dashed line."""
    try:
        import matplotlib
    except ImportError:
        raise SoftbitsError("figure4.png needs matplotlib: pip install 'softbits[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        part = table[table["dataset"] == dataset]
        for method in sorted(part["method"].unique(), key=_rank):
            m = part[part["method"] == method].sort_values("bits")
            if _base(method) == "FP":
                ax.axhline(float(m["test_mse_mean"].mean()), color="black", linestyle="--" if method == "FP" else ":",
                           label=method)
                continue
            line, = ax.plot(m["bits"], m["test_mse_mean"], marker="o", label=method)
            ok = np.isfinite(m["ci95_low"]) & np.isfinite(m["ci95_high"])
            if ok.any():
                ax.fill_between(m["bits"][ok], m["ci95_low"][ok], m["ci95_high"][ok],
                                color=line.get_color(), alpha=0.2)
        ax.set_title(dataset)
        ax.set_xlabel("bits per feature")
        ax.set_ylabel("test MSE (standardized target)")
        ax.set_xticks(sorted(part["bits"].unique()))
        if (part["test_mse_mean"] > 0).all():
            ax.set_yscale("log")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: what a reference table must have for ``--compare``
_REFERENCE_COLUMNS = ["dataset", "method", "bits", "test_mse_mean", "ci95_low", "ci95_high"]


def read_reference(reference: Path) -> pd.DataFrame:
    """A reference table (e.g. paper_results.csv) with the columns a comparison needs; one-line
    :class:`ConfigError` when it is missing, unreadable or lacks a column."""
    return read_csv_table(reference, "reference file", required=_REFERENCE_COLUMNS)


def _spread(runs: ChosenRuns) -> pd.DataFrame:
    """Median and worst final-test MSE per (dataset, method, bits): a mean pulled out of a
    reference interval by one bad repeat shows as a median that stays inside it."""
    rows = [{"dataset": c["dataset"], "method": _display(c["method"]), "bits": int(c["bits"]),
             "test_mse_median": float(np.median(_mses(mine))), "test_mse_max": float(_mses(mine).max())}
            for c, mine in runs]
    return pd.DataFrame(rows, columns=["dataset", "method", "bits", "test_mse_median", "test_mse_max"])


def compare(table: pd.DataFrame, reference: Path, spread: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ours vs a reference table of the same layout: ratio of means, inside/below its CI; with
    ``spread`` (median and worst run per cell) also those, and whether the median is inside."""
    ref = read_reference(reference)[_REFERENCE_COLUMNS].rename(
        columns={"test_mse_mean": "ref_mean", "ci95_low": "ref_ci95_low", "ci95_high": "ref_ci95_high"})
    ref["bits"] = ref["bits"].astype(int)
    key = ["dataset", "method", "bits"]
    out = table[[*key, "n_runs", "test_mse_mean", "ci95_low", "ci95_high"]].merge(ref, on=key, how="inner")
    out["ratio"] = out["test_mse_mean"] / out["ref_mean"]
    out["inside_ref_ci"] = (out["test_mse_mean"] >= out["ref_ci95_low"]) & (
        out["test_mse_mean"] <= out["ref_ci95_high"])
    out["below_ref_ci"] = out["test_mse_mean"] < out["ref_ci95_low"]
    if spread is not None:
        out = out.merge(spread, on=key, how="left")
        out["median_inside_ref_ci"] = (out["test_mse_median"] >= out["ref_ci95_low"]) & (
            out["test_mse_median"] <= out["ref_ci95_high"])
    return out


def _compare_markdown(cmp: pd.DataFrame) -> str:
    lines = ["| dataset | bits | method | ours | reference [95% CI] | ours/ref | inside CI | below CI "
             "| our median (worst run) |",
             "|---|---:|---|---:|---|---:|:---:|:---:|---:|"]
    for r in cmp.to_dict("records"):
        spread = (f"{_fmt(r['test_mse_median'])} ({_fmt(r['test_mse_max'])})"
                  if "test_mse_median" in r else "")
        lines.append(
            f"| {r['dataset']} | {r['bits']} | {r['method']} | {_fmt(r['test_mse_mean'])} | "
            f"{_fmt(r['ref_mean'])} [{_fmt(r['ref_ci95_low'])}, {_fmt(r['ref_ci95_high'])}] | "
            f"{r['ratio']:.3f} | {'yes' if r['inside_ref_ci'] else 'no'} | "
            f"{'yes' if r['below_ref_ci'] else 'no'} | {spread} |")
    return "\n".join(lines) + "\n"


def _provenance(runs: ChosenRuns, store_path: Path) -> dict[str, Any]:
    """Where the reported numbers came from: per cell the chosen setting, how it was chosen and
    the seeds of its repeats; over all of them the devices and library versions that ran them."""
    from softbits import __version__

    cells, devices, versions = [], set(), set()
    for c, mine in runs:
        cells.append({"dataset": c["dataset"], "method": _display(c["method"]),
                      "bits": int(c["bits"]), "setting_id": c["setting_id"], **_variant(c)[0],
                      "chosen_by": c["source"],
                      "seeds": sorted(int(s) for s in mine["seed"]),
                      "finished": [str(mine["finished_at"].min()), str(mine["finished_at"].max())]})
        devices.update(mine["device"])
        versions.update(mine["versions"])
    return {"store": str(store_path), "report_by": f"softbits {__version__}", "cells": cells,
            "devices": sorted(devices), "versions": [json.loads(v) for v in sorted(versions)]}


def write_report(store: ResultStore, out: Path, reference: Path | None = None) -> ReportPaths:
    """Write table.csv, table.md, figure4.png (and compare.csv/.md with a reference) to ``out``."""
    runs = _chosen_runs(store)
    table = _summary(runs)
    if table.empty:
        raise DataError(f"store {store.path} has no final-test results to report yet")
    cmp = compare(table, reference, _spread(runs)) if reference is not None else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    provenance = out / "provenance.json"
    paths = ReportPaths(out / "table.csv", out / "table.md", out / "figure4.png", provenance=provenance)
    table.to_csv(paths.table_csv, index=False)
    provenance.write_text(json.dumps(_provenance(runs, store.path), indent=1) + "\n")
    paths.table_md.write_text("Mean test MSE over the final-test repeats (standardized target); "
                              "best quantized method per row in bold.\n\n" + _markdown_table(table))
    _figure(table, paths.figure)
    if cmp is not None and reference is not None:
        compare_md = out / "compare.md"
        paths = ReportPaths(paths.table_csv, paths.table_md, paths.figure,
                            out / "compare.csv", compare_md, paths.provenance)
        cmp.to_csv(out / "compare.csv", index=False)
        compare_md.write_text(f"Ours vs {Path(reference).name}: ratio of means and whether "
                                    "our mean lies inside (or below) the reference 95% CI.\n\n"
                                    + _compare_markdown(cmp))
    return paths
