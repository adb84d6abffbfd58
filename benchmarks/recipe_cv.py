"""Choose the ``best`` recipe's defaults by K-fold cross-validation on training data only.

For each cell (dataset, bits, the paper's Bw-SQ network and loop for it), the 90% training part
of the paper's split (``random_state=seed``) is cut into K shuffled folds, as the experiments'
search does; every candidate recipe trains on K − 1 folds and is scored by hard-quantized MSE on
the held-out fold. The 10% test part is never loaded into a training or a score.

Rows are written to the JSON result after every training, so a run stopped by ``--time-cap``
keeps what it computed; candidates run fold by fold, so a partial run compares all of them on
the same folds. ``python benchmarks/recipe_cv.py --help`` lists the options.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import save_result
from sklearn.model_selection import KFold, train_test_split

from softbits.data import load_dataset, scale_split
from softbits.provenance import machine_info
from softbits.training.config import TrainConfig, resolve
from softbits.training.engine import target_tensor, to_tensor
from softbits.training.train import fit_module, score

#: a cell: (dataset, bits, layers, neurons, epochs, lr, decrease factor, dropout)
Cell = tuple[str, int, int, int, int, float, float, float]
CELL_FIELDS = ("dataset", "bits", "layers", "neurons", "epochs", "lr", "decrease_factor", "dropout")
PROTOCOL = ("90/10 train_test_split(random_state=seed); KFold(folds, shuffle, random_state=seed) "
            "on the 90% part; scalers fit per training fold; hard-quantized MSE on the held-out "
            "fold (standardized target)")


#: (dataset, bits, layers, neurons, epochs, lr, decrease factor, dropout): the paper's Bw-SQ
#: settings (reference/paper_results.csv); california's 6×512 network is cut to 6×128 to fit
#: the CPU budget, and that is recorded with the results.
CELLS: list[Cell] = [
    ("cpu_act", 2, 8, 32, 70, 1e-3, 1e-3, 0.0),
    ("cpu_act", 4, 6, 128, 50, 1e-3, 1e-3, 0.0),
    ("fried", 2, 5, 32, 70, 1e-3, 1e-4, 0.0),
    ("california", 2, 6, 128, 30, 1e-3, 1e-4, 0.4),
]

#: every (optimizer + learning-rate schedule, weight decay, validation checkpoint) combination
LOOPS = [("adam", "constant", 0.0), ("adamw", "cosine", 0.05)]
WEIGHT_DECAYS = [0.0, 1e-4, 1e-2]
VAL_FRACTIONS = [0.0, 0.1]


def candidates() -> list[dict[str, Any]]:
    """The recipes compared; the first is the paper's loop."""
    out = []
    for (opt, sched, warmup), wd, val in product(LOOPS, WEIGHT_DECAYS, VAL_FRACTIONS):
        name = f"{opt}-{sched}" + (f"-warmup{warmup:g}" if warmup else "") + f"-wd{wd:g}" + \
            ("-valckpt" if val else "")
        out.append({"name": name, "optimizer": opt, "lr_schedule": sched,
                    "warmup_fraction": warmup, "weight_decay": wd, "val_fraction": val})
    return out


def summarize(rows: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Per cell, each candidate's mean validation MSE over the folds every candidate finished;
    overall, the geometric mean over cells of the ratio to the paper's loop (lower is better)."""
    cells: dict[str, Any] = {}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for cell in dict.fromkeys(r["cell"] for r in rows):
        mine = [r for r in rows if r["cell"] == cell]
        folds = sorted(set.intersection(*[{r["fold"] for r in mine if r["candidate"] == n}
                                          for n in names]))
        if not folds:
            continue
        table = {}
        for n in names:
            mses = [r["val_mse"] for r in mine if r["candidate"] == n and r["fold"] in folds]
            table[n] = {"mean_val_mse": float(np.mean(mses)), "std_val_mse": float(np.std(mses)),
                        "folds": len(mses)}
        paper = table[names[0]]["mean_val_mse"]
        for n in names:
            table[n]["ratio_to_paper"] = table[n]["mean_val_mse"] / paper
            ratios[n].append(table[n]["ratio_to_paper"])
        cells[cell] = {"folds": folds, "candidates": table}
    overall = {n: math.exp(float(np.mean(np.log(r)))) for n, r in ratios.items() if r}
    ranking = sorted(overall, key=overall.get)
    return {"cells": cells, "geomean_ratio_to_paper": overall, "ranking": ranking,
            "best": ranking[0] if ranking else None}


def markdown(result: dict[str, Any]) -> str:
    """The summary as a Markdown table: mean ± std validation MSE per cell, the geometric mean
    of the ratios to the paper's loop, best first."""
    summary = result["summary"]
    cells = list(summary["cells"])
    lines = ["| candidate | " + " | ".join(cells) + " | geomean ratio to paper |",
             "|---|" + "---:|" * (len(cells) + 1)]
    for name in summary["ranking"]:
        row = [f"{summary['cells'][c]['candidates'][name]['mean_val_mse']:.4f} ± "
               f"{summary['cells'][c]['candidates'][name]['std_val_mse']:.4f}" for c in cells]
        lines.append(f"| {name} | " + " | ".join(row) +
                     f" | {summary['geomean_ratio_to_paper'][name]:.3f} |")
    return "\n".join(lines)


def study_parser(description: str, cells: str, out: Path, time_cap: float,
                 cells_help: str = "dataset:bits pairs from CELLS, comma-separated") -> argparse.ArgumentParser:
    """The options every cross-validation study takes (this one and threshold_lr_cv.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, folds and training")
    parser.add_argument("--cells", default=cells, help=cells_help)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-cap", type=float, default=time_cap,
                        help="seconds; no training starts after this")
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--table", action="store_true",
                        help="print --out's summary as a Markdown table and exit (no training)")
    return parser


def run_study(args: argparse.Namespace, all_cells: list[Cell], cands: list[dict[str, Any]],
              configure: Callable[[Cell, dict[str, Any], int], TrainConfig], benchmark: str,
              protocol: str = PROTOCOL) -> None:
    """Train ``configure(cell, candidate, seed)`` on every fold of every selected cell, candidates
    fold by fold, and score it on the held-out fold; the JSON result (rows, summary) is saved
    after every training, so ``--time-cap`` keeps what ran. With ``--table`` only print it."""
    if args.table:
        print(markdown(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(args.threads)
    wanted = args.cells.split(",")
    cells = [c for c in all_cells if f"{c[0]}:{c[1]}" in wanted]
    names = [c["name"] for c in cands]
    result: dict[str, Any] = {
        "benchmark": benchmark, "machine": machine_info("torch", "numpy", "scikit-learn"),
        "torch_threads": args.threads, "seed": args.seed, "folds": args.folds, "protocol": protocol,
        "cells": [dict(zip(CELL_FIELDS, c, strict=True)) for c in cells],
        "candidates": cands, "rows": [], "complete": False,
    }
    start = time.perf_counter()
    stopped = False
    for cell in cells:
        dataset, bits = cell[0], cell[1]
        ds = load_dataset(dataset)
        X, _, y, _ = train_test_split(ds.X, ds.y, test_size=0.1, random_state=args.seed)
        folds = list(KFold(n_splits=args.folds, shuffle=True, random_state=args.seed).split(X))
        for fold, (tr, va) in enumerate(folds):
            split = scale_split(X[tr], y[tr], X[va], y[va], ds.task)
            for cand in cands:
                if time.perf_counter() - start > args.time_cap:
                    stopped = True
                    break
                config = configure(cell, cand, args.seed)
                fitted = fit_module(split.X_train, split.y_train, config, task=ds.task)
                X_va = to_tensor(split.X_test, torch.device("cpu"))
                y_va = target_tensor(split.y_test, torch.device("cpu"), ds.task)
                mse = score(fitted.module, X_va, y_va, ds.task).test_mse
                result["rows"].append({"cell": f"{dataset}:{bits}", "fold": fold,
                                       "candidate": cand["name"], "val_mse": mse,
                                       "steps_per_epoch": -(-len(tr) // config.batch_size),
                                       "train_seconds": fitted.fit.train_seconds,
                                       "best_epoch": fitted.fit.best_epoch,
                                       "settings": config.to_dict()})
                result["elapsed_seconds"] = time.perf_counter() - start
                result["summary"] = summarize(result["rows"], names)
                save_result(result, args.out)
                print(f"{dataset}:{bits} fold {fold} {cand['name']}: val MSE {mse:.5f}", flush=True)
            if stopped:
                break
        if stopped:
            break
    result["complete"] = not stopped
    result["elapsed_seconds"] = time.perf_counter() - start
    save_result(result, args.out)


def _recipe_config(cell: Cell, cand: dict[str, Any], seed: int) -> TrainConfig:
    """The paper's Bw-SQ setting of ``cell`` trained with candidate recipe ``cand``."""
    _, bits, layers, neurons, epochs, lr, d, dropout = cell
    return resolve("paper", method="bw-sq", bits=bits, layers=layers, neurons=neurons,
                   epochs=epochs, lr=lr, decrease_factor=d, dropout=dropout, seed=seed,
                   device="cpu", optimizer=cand["optimizer"], lr_schedule=cand["lr_schedule"],
                   warmup_epochs=round(cand["warmup_fraction"] * epochs),
                   weight_decay=cand["weight_decay"], val_fraction=cand["val_fraction"])


def main() -> None:
    parser = study_parser(__doc__.splitlines()[0], ",".join(f"{c[0]}:{c[1]}" for c in CELLS),
                          Path(__file__).parent / "results" / "recipe_cv.json", 35 * 60)
    run_study(parser.parse_args(), CELLS, candidates(), _recipe_config, "recipe_cv")


if __name__ == "__main__":
    main()
