"""Does the quantizer want its own learning rate? ``threshold_lr_scale`` by K-fold CV on training data.

Same protocol as ``recipe_cv.py`` (whose summary and table this reuses): per cell, the paper's
Bw-SQ network and loop, the 90% training part of the paper's split cut into K shuffled folds,
scalers refit per training fold, hard-quantized MSE on the held-out fold; the 10% test part is
never used. Candidates differ only in ``threshold_lr_scale`` (the thresholds train at lr × scale);
the first, 1, is the paper's loop. Rows are saved after every training, so ``--time-cap`` keeps
what ran. ``python benchmarks/threshold_lr_cv.py --help`` lists the options.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from common import save_result
from recipe_cv import markdown, summarize
from sklearn.model_selection import KFold, train_test_split

from softbits.config import TrainConfig
from softbits.data import load_dataset, scale_split
from softbits.engine import target_tensor, to_tensor
from softbits.runtime import machine_info
from softbits.train import fit_module, score

#: (dataset, bits, layers, neurons, epochs, lr, decrease factor, dropout): the paper's Bw-SQ
#: settings; california's 6×512 is cut to 6×128 (CPU budget), as in recipe_cv.py
CELLS: list[tuple[str, int, int, int, int, float, float, float]] = [
    ("cpu_act", 2, 8, 32, 70, 1e-3, 1e-3, 0.0),
    ("cpu_act", 3, 5, 32, 70, 1e-3, 1e-4, 0.0),
    ("cpu_act", 4, 6, 128, 50, 1e-3, 1e-3, 0.0),
    ("cpu_act", 5, 5, 128, 70, 1e-3, 1e-3, 0.0),
    ("cpu_act", 6, 5, 128, 70, 1e-3, 1e-3, 0.0),
    ("cpu_act", 7, 6, 128, 50, 1e-3, 1e-3, 0.0),
    ("fried", 2, 5, 32, 70, 1e-3, 1e-4, 0.0),
    ("fried", 4, 5, 32, 70, 1e-3, 1e-4, 0.0),
    ("california", 2, 6, 128, 30, 1e-3, 1e-4, 0.4),
]

SCALES = [1.0, 3.0, 10.0, 30.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, folds and training")
    parser.add_argument("--cells", default=",".join(f"{c[0]}:{c[1]}" for c in CELLS if c[1] <= 4),
                        help="dataset:bits pairs from CELLS, comma-separated (default: the "
                             "six of the first study, bits <= 4; cpu_act 5-7 ran on their own)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-cap", type=float, default=30 * 60,
                        help="seconds; no training starts after this")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "threshold_lr_cv.json")
    parser.add_argument("--table", action="store_true",
                        help="print --out's summary as a Markdown table and exit (no training)")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(args.threads)
    wanted = args.cells.split(",")
    cells = [c for c in CELLS if f"{c[0]}:{c[1]}" in wanted]
    names = [f"scale{s:g}" for s in SCALES]
    result: dict[str, Any] = {
        "benchmark": "threshold_lr_cv", "machine": machine_info("torch", "numpy", "scikit-learn"),
        "torch_threads": args.threads, "seed": args.seed, "folds": args.folds,
        "protocol": "as recipe_cv.py; candidates differ only in threshold_lr_scale",
        "cells": [dict(zip(("dataset", "bits", "layers", "neurons", "epochs", "lr",
                            "decrease_factor", "dropout"), c, strict=True)) for c in cells],
        "candidates": [{"name": n, "threshold_lr_scale": s} for n, s in zip(names, SCALES, strict=True)],
        "rows": [], "complete": False,
    }
    start = time.perf_counter()
    stopped = False
    for dataset, bits, layers, neurons, epochs, lr, d, dropout in cells:
        ds = load_dataset(dataset)
        X, _, y, _ = train_test_split(ds.X, ds.y, test_size=0.1, random_state=args.seed)
        folds = list(KFold(n_splits=args.folds, shuffle=True, random_state=args.seed).split(X))
        for fold, (tr, va) in enumerate(folds):
            split = scale_split(X[tr], y[tr], X[va], y[va], ds.task)
            for name, scale in zip(names, SCALES, strict=True):
                if time.perf_counter() - start > args.time_cap:
                    stopped = True
                    break
                config = TrainConfig(method="bw-sq", bits=bits, layers=layers, neurons=neurons,
                                     epochs=epochs, lr=lr, decrease_factor=d, dropout=dropout,
                                     seed=args.seed, device="cpu", threshold_lr_scale=scale)
                fitted = fit_module(split.X_train, split.y_train, config, task=ds.task)
                X_va = to_tensor(split.X_test, torch.device("cpu"))
                y_va = target_tensor(split.y_test, torch.device("cpu"), ds.task)
                mse = score(fitted.module, X_va, y_va, ds.task).test_mse
                steps = -(-len(tr) // config.batch_size)
                result["rows"].append({"cell": f"{dataset}:{bits}", "fold": fold, "candidate": name,
                                       "val_mse": mse, "steps_per_epoch": steps,
                                       "train_seconds": fitted.fit.train_seconds,
                                       "settings": config.to_dict()})
                result["elapsed_seconds"] = time.perf_counter() - start
                result["summary"] = summarize(result["rows"], names)
                save_result(result, args.out)
                print(f"{dataset}:{bits} fold {fold} {name}: val MSE {mse:.5f}", flush=True)
            if stopped:
                break
        if stopped:
            break
    result["complete"] = not stopped
    result["elapsed_seconds"] = time.perf_counter() - start
    save_result(result, args.out)


if __name__ == "__main__":
    main()
