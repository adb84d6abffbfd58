"""How the tree predictor's defaults were chosen: K-fold CV on training parts only.

For each dataset the paper's split with seed 42 is made and only its training part is used: its
quantile codes at 2, 4 and 8 bits per feature (thresholds from the training part), and 4 folds.
Each LightGBM setting fits on three folds, early-stopping on 15 % of them, and is scored on the
fourth. A setting's score is its mean CV MSE relative to the best setting of the same
(dataset, bits), averaged over all of them; the lowest wins. No test split is read.

    python benchmarks/gbdt_cv.py --out benchmarks/results/gbdt_cv.json
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import torch
from common import codes_of, save_result
from sklearn.model_selection import KFold

from softbits.data import load_dataset, split_and_scale
from softbits.nn.quantizers import quantile_thresholds
from softbits.provenance import machine_info, runtime_info
from softbits.training.predictors import GBDT_PARAMS, GBDTPredictor

GRID = {"learning_rate": (0.05, 0.1), "num_leaves": (15, 31, 63), "min_data_in_leaf": (20, 50)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="california,cpu_act,fried")
    parser.add_argument("--bits", default="2,4,8")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gbdt_cv.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    cells: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name in args.datasets.split(","):
        split = split_and_scale(load_dataset(name), seed=42)
        X, y = split.X_train, split.y_train
        for bits in map(int, args.bits.split(",")):
            thresholds = quantile_thresholds(X, bits)
            codes = codes_of(X, thresholds)
            scores = []
            for setting in settings:
                params = replace(GBDT_PARAMS, **setting)
                mses = []
                for fit_idx, held_idx in KFold(args.folds, shuffle=True, random_state=0).split(codes):
                    rng = np.random.default_rng(0)
                    order = rng.permutation(fit_idx)
                    n_val = round(0.15 * len(order))
                    val, fit = order[:n_val], order[n_val:]
                    trees = GBDTPredictor.fit(codes[fit], y[fit], codes[val], y[val], task="regression", n_outputs=1,
                                              inputs="codes", seed=0, max_code=(1 << bits) - 1, params=params)
                    mses.append(trees.loss(codes[held_idx], y[held_idx]))
                scores.append(float(np.mean(mses)))
            best = min(scores)
            cells.append({"dataset": name, "bits": bits, "cv_mse": scores, "relative": [s / best for s in scores]})
            print(name, bits, {str(s): round(v, 4) for s, v in zip(settings, scores, strict=True)}, flush=True)
    mean_relative = np.mean([c["relative"] for c in cells], axis=0)
    ranking = sorted(zip(mean_relative.tolist(), settings, strict=True), key=lambda item: item[0])
    result = {"benchmark": "gbdt defaults by CV on training parts", "settings": vars(args) | {"out": str(args.out)},
              "grid": GRID, "base": asdict(GBDT_PARAMS), "machine": machine_info(),
              "versions": runtime_info(torch.device("cpu")) | {"lightgbm": lightgbm.__version__},
              "seconds": time.perf_counter() - started, "cells": cells,
              "ranking": [{"mean_relative_cv_mse": r, **s} for r, s in ranking]}
    print("best:", ranking[0])
    save_result(result, args.out)


if __name__ == "__main__":
    main()
