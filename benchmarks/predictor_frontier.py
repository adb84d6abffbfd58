"""Accuracy per transmitted bit against what a user would pick instead (issue 18, the goals).

For each dataset and seed (the paper's 90/10 split with that seed; the target standardized on
the training part) and each average width b bits per feature (the same b·F code bits for every
contender), on one network for every MLP:

- ``bw-sq mlp``: the paper's method at uniform b bits, the MLP serving (our run of it);
- ``quantile gbdt``: quantile codes (``bw-qq``) at uniform b bits, trees serving: a user's
  alternative without softbits's thresholds;
- ``auto``: ``bw-sq --predictor auto`` at uniform b bits;
- ``auto allocated``: ``bw-sq --predictor auto --budget-bits b·F`` (widths chosen by the trees);
- ``fp mlp`` and ``fp gbdt``: float32 features, the reference lines (one training).

The paper's own Bw-SQ numbers come from paper_results.csv (its table, b = 2..8). Test MSE on the
standardized target. The test split reaches no early stopping and no choice: they use a
validation share of the training part. Times are whole calls on this machine.

    python benchmarks/predictor_frontier.py --out benchmarks/results/predictor_frontier.json
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import torch
from common import save_result

from softbits.data import load_dataset, split_and_scale
from softbits.provenance import machine_info, runtime_info
from softbits.training.allocation import train_allocated
from softbits.training.config import TrainConfig
from softbits.training.train import train_on_split

WIDTHS = (1, 2, 3, 4, 6, 8)


def paper_table(path: Path) -> dict[tuple[str, int], float]:
    """(dataset, bits) → the paper's Bw-SQ test MSE."""
    with path.open() as f:
        return {(r["dataset"], int(r["bits"])): float(r["test_mse_mean"])
                for r in csv.DictReader(f) if r["method"] == "Bw-SQ"}


def run_seed(name: str, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    ds = load_dataset(name)
    split = split_and_scale(ds, seed=seed)
    base = TrainConfig(method="bw-sq", layers=args.layers, neurons=args.neurons, epochs=args.epochs,
                       seed=seed, device="cpu")
    kw = dict(task=ds.task, feature_names=ds.feature_names, target_name=ds.target_name, dataset=ds.name)
    rows: list[dict[str, Any]] = []

    def record(contender: str, b: float, model: Any, seconds: float, mse: float | None = None) -> None:
        m = model.metrics
        rows.append({"dataset": name, "seed": seed, "contender": contender, "bits": b,
                     "code_bits": None if b == 32 else (sum(model.config.bits_per_feature)
                                                        if model.config.bits_per_feature else b * ds.n_features),
                     "test_mse": m["test_mse"] if mse is None else mse, "seconds": seconds,
                     "predictor": m.get("predictor", "mlp"), "val_loss": m.get("predictor_val_loss"),
                     "mlp_seconds": m.get("train_seconds"), "gbdt_seconds": m.get("predictor_seconds")})

    clock = time.perf_counter()
    fp = train_on_split(split, replace(base, method="fp", predictor="gbdt"), **kw)
    seconds = time.perf_counter() - clock
    record("fp gbdt", 32, fp, seconds)
    record("fp mlp", 32, fp, seconds, mse=fp.metrics["test_mse_mlp"])
    for b in args.widths:
        uniform = (("bw-sq mlp", replace(base, bits=b)),
                   ("quantile gbdt", replace(base, method="bw-qq", bits=b, predictor="gbdt")),
                   ("auto", replace(base, bits=b, predictor="auto")))
        for contender, config in () if args.allocated_only else uniform:
            clock = time.perf_counter()
            model = train_on_split(split, config, **kw)
            record(contender, b, model, time.perf_counter() - clock)
        # auto's bw-bq candidate allocates from up to 12 bits, also at 8 bits on average
        clock = time.perf_counter()
        model = train_allocated(split, replace(base, bits=b, predictor="auto"), b * ds.n_features, **kw)
        record("auto allocated", b, model, time.perf_counter() - clock)
        rows[-1].update(auto_choice=model.metrics.get("auto_choice"), auto_seconds=model.metrics.get("auto_seconds"),
                        widths=model.allocation["bits_per_feature"])
    print(name, seed, {(r["contender"], r["bits"]): round(r["test_mse"], 4) for r in rows}, flush=True)
    return rows


def summarize(rows: list[dict[str, Any]], paper: dict[tuple[str, int], float]) -> list[dict[str, Any]]:
    """Mean test MSE per (dataset, contender, bits), and the goals' ratios."""
    out = []
    keys = sorted({(r["dataset"], r["contender"], r["bits"]) for r in rows})
    for dataset, contender, b in keys:
        values = [r["test_mse"] for r in rows if (r["dataset"], r["contender"], r["bits"]) == (dataset, contender, b)]
        secs = [r["seconds"] for r in rows if (r["dataset"], r["contender"], r["bits"]) == (dataset, contender, b)]
        out.append({"dataset": dataset, "contender": contender, "bits": b, "n_seeds": len(values),
                    "test_mse_mean": float(np.mean(values)), "test_mse_std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                    "seconds_mean": float(np.mean(secs)), "paper_bw_sq": paper.get((dataset, int(b)))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="california,cpu_act,fried")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 42, 43, ...")
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--neurons", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--allocated-only", action="store_true",
                        help="only float32 trees and auto allocated (a rerun after a change to auto)")
    parser.add_argument("--paper", type=Path, default=Path(__file__).parents[2] / "shared/reference/paper_results.csv")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/predictor_frontier.json"))
    args = parser.parse_args()
    args.widths = [int(b) for b in args.widths.split(",")]
    torch.set_num_threads(int(os.environ.get("SOFTBITS_BENCH_THREADS", "1")))
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name in args.datasets.split(","):
        for seed in range(42, 42 + args.seeds):
            rows.extend(run_seed(name, seed, args))
            save_result({"settings": vars(args) | {"paper": str(args.paper), "out": str(args.out)},
                         "machine": machine_info(),
                         "versions": runtime_info(torch.device("cpu")) | {"lightgbm": lightgbm.__version__},
                         "seconds": time.perf_counter() - started, "rows": rows,
                         "summary": summarize(rows, paper_table(args.paper))}, args.out)


if __name__ == "__main__":
    main()
