"""Faster trees for the tree-scored allocation search? Chosen on training parts only.

The search (``allocation.allocate`` with trees scoring) fits trees on the probe's wide codes and
predicts the validation rows once per tried narrowing; those trees only rank the steps. For
each dataset, seed (the paper's split) and budget, each fixed-threshold family (bins ``bw-bq``,
split points ``bw-tq``) is allocated with the predictor's own tree settings and with faster ones
(a larger learning rate, fewer patience rounds); the widths each chooses are then scored as
``auto`` scores a candidate (:func:`~softbits.training.train.screen_loss`: the serving trees on
the training part's validation share). The test split is never read. ``default`` is the
serving trees' own settings (``GBDT_PARAMS``, what the search used before ``lr0.1-es50`` was
taken as ``allocation.PROBE_GBDT_PARAMS`` on these results).

    python benchmarks/probe_trees_cv.py --out benchmarks/results/probe_trees_cv.json
    python benchmarks/probe_trees_cv.py --seeds 2,3,4 --settings default,lr0.1-es50 \\
        --out benchmarks/results/probe_trees_cv_seeds2-4_lr01.json
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import save_result

from softbits.data import load_dataset, split_and_scale
from softbits.provenance import machine_info, runtime_info
from softbits.training import allocation, predictors
from softbits.training.config import TrainConfig
from softbits.training.predictors import GBDTParams
from softbits.training.train import screen_loss

SETTINGS: dict[str, GBDTParams | None] = {
    "default": None,
    "lr0.1-es50": GBDTParams(learning_rate=0.1, early_stopping_rounds=50),
    "lr0.2-es30": GBDTParams(learning_rate=0.2, early_stopping_rounds=30),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="cpu_act,california,fried")
    parser.add_argument("--bits", default="2,4,8")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated labels to compare (default: all of {', '.join(SETTINGS)})")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/probe_trees_cv.json"))
    args = parser.parse_args()
    labels = args.settings.split(",")
    unknown = sorted(set(labels) - set(SETTINGS))
    if unknown or "default" not in labels:
        parser.error(f"--settings takes labels of {', '.join(SETTINGS)}, including default; got {args.settings!r}")
    rows: list[dict[str, Any]] = []
    taken = allocation.PROBE_GBDT_PARAMS
    for name in args.datasets.split(","):
        ds = load_dataset(name)
        for seed in map(int, args.seeds.split(",")):
            split = split_and_scale(ds, seed=seed)
            n_features = split.X_train.shape[1]
            for bits in map(int, args.bits.split(",")):
                for method in ("bw-bq", "bw-tq"):
                    config = TrainConfig(method=method, bits=bits, seed=seed, predictor="auto", device="cpu")
                    for label in labels:
                        params = SETTINGS[label]
                        allocation.PROBE_GBDT_PARAMS = params
                        predictors._SPLITS.clear()  # each setting fits bw-tq's float32 trees itself
                        start = time.perf_counter()
                        chosen = allocation.allocate(split.X_train, split.y_train, config, bits * n_features,
                                                     task=ds.task)
                        seconds = time.perf_counter() - start
                        loss, _ = screen_loss(split, replace(config, bits=max(chosen.widths),
                                                          bits_per_feature=chosen.widths),
                                           task=ds.task, n_outputs=1)
                        rows.append({"dataset": name, "seed": seed, "bits_per_feature": bits, "method": method,
                                     "settings": label, "val_loss": loss, "seconds": seconds,
                                     "widths": list(chosen.widths)})
                        print(f"{name} seed {seed} {bits} bits {method} {label}: val {loss:.5f} "
                              f"{seconds:.1f}s", flush=True)
    allocation.PROBE_GBDT_PARAMS = taken
    summary = []
    for label in labels:
        ratios = [r["val_loss"] / d["val_loss"] for r in rows if r["settings"] == label
                  for d in rows if d["settings"] == "default"
                  and all(d[k] == r[k] for k in ("dataset", "seed", "bits_per_feature", "method"))]
        seconds = [r["seconds"] / d["seconds"] for r in rows if r["settings"] == label
                   for d in rows if d["settings"] == "default"
                   and all(d[k] == r[k] for k in ("dataset", "seed", "bits_per_feature", "method"))]
        summary.append({"settings": label, "val_loss_vs_default_geomean": float(np.exp(np.mean(np.log(ratios)))),
                        "val_loss_vs_default_max": float(np.max(ratios)),
                        "seconds_vs_default_mean": float(np.mean(seconds))})
        print(summary[-1])
    save_result({"settings": vars(args) | {"out": str(args.out)}, "machine": machine_info("torch", "lightgbm"),
                 "versions": runtime_info(torch.device("cpu")), "summary": summary, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
