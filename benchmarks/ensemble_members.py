"""Choose bw-sq-ens' default number of members by cross-validation on training data only.

Per cell (dataset, bits, the paper's Bw-SQ network and loop for it), the 90% training part of the
paper's split is cut into K shuffled folds as in ``recipe_cv.py``; plain Bw-SQ and bw-sq-ens with
2, 4 and 8 members train on K − 1 folds and are scored by hard-quantized MSE on the held-out fold,
with their training seconds (one thread, so the ratios compare like with like). The test part is
never used. ``python benchmarks/ensemble_members.py --help`` lists the options.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import save_result
from recipe_cv import markdown, summarize
from sklearn.model_selection import KFold, train_test_split

from softbits.data import load_dataset, scale_split
from softbits.provenance import machine_info
from softbits.training.config import TrainConfig
from softbits.training.engine import target_tensor, to_tensor
from softbits.training.train import fit_module, score

#: (dataset, bits, layers, neurons, epochs, lr, decrease factor): the paper's Bw-SQ settings
#: for cells whose networks are small enough for a CPU study
CELLS = [("cpu_act", 2, 8, 32, 70, 1e-3, 1e-3), ("cpu_act", 3, 5, 32, 70, 1e-3, 1e-4),
         ("cpu_act", 4, 6, 128, 50, 1e-3, 1e-3), ("fried", 2, 5, 32, 70, 1e-3, 1e-4),
         ("fried", 4, 5, 32, 70, 1e-3, 1e-4)]
MEMBERS = [1, 2, 4, 8, 16]  # 1: plain bw-sq, the paper's method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--use-folds", type=int, default=2, help="how many of the folds to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-cap", type=float, default=20 * 60, help="seconds; no training starts after this")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ensemble_members.json")
    parser.add_argument("--table", action="store_true", help="print --out's summary as Markdown and exit")
    args = parser.parse_args()
    if args.table:
        result = json.loads(args.out.read_text())
        print(markdown(result))
        print("\n| candidate | mean train seconds | ratio to bw-sq |\n|---|---:|---:|")
        for name, (secs, ratio) in result["seconds"].items():
            print(f"| {name} | {secs:.1f} | {ratio:.2f} |")
        return
    torch.set_num_threads(1)
    names = ["bw-sq" if k == 1 else f"bw-sq-ens-K{k}" for k in MEMBERS]
    result: dict[str, Any] = {
        "benchmark": "ensemble_members", "machine": machine_info("torch", "numpy", "scikit-learn"),
        "torch_threads": 1, "seed": args.seed, "folds": args.folds,
        "protocol": "as recipe_cv.py: 90/10 split, KFold on the 90% part, hard MSE on the held-out fold",
        "cells": [dict(zip(("dataset", "bits", "layers", "neurons", "epochs", "lr", "decrease_factor"), c,
                           strict=True)) for c in CELLS],
        "rows": [], "complete": False,
    }
    start = time.perf_counter()
    for dataset, bits, layers, neurons, epochs, lr, d in CELLS:
        ds = load_dataset(dataset)
        X, _, y, _ = train_test_split(ds.X, ds.y, test_size=0.1, random_state=args.seed)
        folds = list(KFold(n_splits=args.folds, shuffle=True, random_state=args.seed).split(X))
        for fold, (tr, va) in enumerate(folds[:args.use_folds]):
            split = scale_split(X[tr], y[tr], X[va], y[va], ds.task)
            for k, name in zip(MEMBERS, names, strict=True):
                if time.perf_counter() - start > args.time_cap:
                    break
                config = TrainConfig(method="bw-sq" if k == 1 else "bw-sq-ens", members=None if k == 1 else k,
                                     bits=bits, layers=layers, neurons=neurons, epochs=epochs, lr=lr,
                                     decrease_factor=d, seed=args.seed, device="cpu")
                fitted = fit_module(split.X_train, split.y_train, config, task=ds.task)
                cpu = torch.device("cpu")
                mse = score(fitted.module, to_tensor(split.X_test, cpu),
                            target_tensor(split.y_test, cpu, ds.task), ds.task).test_mse
                result["rows"].append({"cell": f"{dataset}:{bits}", "fold": fold, "candidate": name,
                                       "val_mse": mse, "train_seconds": fitted.fit.train_seconds,
                                       "settings": config.to_dict()})
                result["summary"] = summarize(result["rows"], names)
                result["seconds"] = {
                    n: (float(np.mean(s := [r["train_seconds"] for r in result["rows"] if r["candidate"] == n])),
                        float(np.mean(s)) / float(np.mean([r["train_seconds"] for r in result["rows"]
                                                           if r["candidate"] == "bw-sq"])))
                    for n in names if any(r["candidate"] == n for r in result["rows"])}
                result["elapsed_seconds"] = time.perf_counter() - start
                save_result(result, args.out)
                print(f"{dataset}:{bits} fold {fold} {name}: val MSE {mse:.5f}, "
                      f"{fitted.fit.train_seconds:.1f} s", flush=True)
    result["complete"] = time.perf_counter() - start <= args.time_cap
    save_result(result, args.out)


if __name__ == "__main__":
    main()
