"""How bw-tq places thresholds at trees' split points: K-fold CV on training parts only.

For each dataset the paper's split with seed 42 is made and only its training part is used, in
4 folds. On three folds float32 trees are fitted (early-stopping on 15 % of them) and their split
points give thresholds at 1, 2 and 4 bits per feature by two rules: *weighted*, the gain-weighted
quantiles of the split values (``softbits.nn.quantizers.split_thresholds``), and *top*, the
2^n − 1 split values of the highest summed gain. Trees on each rule's codes of the same three
folds (and on ``bw-bq`` bins, for reference) are scored on the fourth. A rule's score is its
mean CV MSE relative to the best rule of the same (dataset, bits), averaged; the lowest wins.
No test split is read.

    python benchmarks/split_thresholds_cv.py --out benchmarks/results/split_thresholds_cv.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import torch
from common import codes_of, save_result
from sklearn.model_selection import KFold

from softbits.data import load_dataset, split_and_scale
from softbits.nn.quantizers import SplitPoints, bin_thresholds, split_thresholds
from softbits.provenance import machine_info, runtime_info
from softbits.training.predictors import GBDTPredictor, split_points

RULES = ("weighted", "top", "bins")


def top_thresholds(x: np.ndarray, bits: int, splits: SplitPoints) -> np.ndarray:
    """The 2^n − 1 split values of the highest summed gain per feature (repeating the last when
    there are fewer; bins where there is no split)."""
    m = (1 << bits) - 1
    out = np.empty((x.shape[1], m))
    for f, (values, gains) in enumerate(splits):
        if values.size == 0:
            out[f] = bin_thresholds(x[:, f:f + 1], bits)[0]
            continue
        chosen = np.sort(values[np.argsort(-gains)[:m]])
        out[f] = np.concatenate([chosen, np.full(m - chosen.size, chosen[-1])])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="california,cpu_act,fried")
    parser.add_argument("--bits", default="1,2,4")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/split_thresholds_cv.json"))
    args = parser.parse_args()
    widths = [int(b) for b in args.bits.split(",")]
    started = time.perf_counter()
    cells: list[dict[str, Any]] = []
    for name in args.datasets.split(","):
        split = split_and_scale(load_dataset(name), seed=42)
        X, y = split.X_train.astype(np.float64), np.asarray(split.y_train, dtype=np.float64).ravel()
        folds = list(KFold(args.folds, shuffle=True, random_state=42).split(X))
        scores: dict[tuple[int, str], list[float]] = {}
        for k, (fit, held) in enumerate(folds):
            splits = split_points(X[fit], y[fit], task="regression", n_outputs=1, seed=42 + k)
            n_val = int(round(0.15 * fit.size))
            order = np.random.default_rng(k).permutation(fit.size)
            stop, rest = fit[order[:n_val]], fit[order[n_val:]]
            for b in widths:
                for rule in RULES:
                    th = (split_thresholds(X[fit], b, splits) if rule == "weighted" else
                          top_thresholds(X[fit], b, splits) if rule == "top" else bin_thresholds(X[fit], b))
                    C = codes_of(X, th)
                    trees = GBDTPredictor.fit(C[rest], y[rest], C[stop], y[stop], task="regression", n_outputs=1,
                                              inputs="codes", seed=42, max_code=(1 << b) - 1)
                    scores.setdefault((b, rule), []).append(trees.loss(C[held], y[held]))
            print(name, "fold", k, {f"{r}{b}": round(v[-1], 5) for (b, r), v in scores.items()}, flush=True)
        for b in widths:
            means = {r: float(np.mean(scores[(b, r)])) for r in RULES}
            best = min(means[r] for r in ("weighted", "top"))
            cells.append({"dataset": name, "bits": b, "cv_mse": means,
                          "relative": {r: means[r] / best for r in RULES}})
    summary = {r: float(np.mean([c["relative"][r] for c in cells])) for r in ("weighted", "top")}
    save_result({"settings": vars(args) | {"out": str(args.out)}, "machine": machine_info(),
                 "versions": runtime_info(torch.device("cpu")) | {"lightgbm": lightgbm.__version__},
                 "seconds": time.perf_counter() - started, "cells": cells,
                 "mean_relative": summary, "chosen": min(summary, key=summary.__getitem__)}, args.out)


if __name__ == "__main__":
    main()
