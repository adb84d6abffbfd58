"""Where should the tree-scored allocation search start? Chosen on training parts only.

``allocation.TREE_HEADROOM_BITS``: for fixed thresholds scored by trees (``auto``'s ``bw-bq``
and ``bw-tq`` candidates, ``--predictor gbdt``) the search starts every feature that many bits
above the mean width (at most ``TREE_MAX_START_BITS``) and only narrows, so no feature can end
wider than the start. For each dataset, seed (the paper's split; seeds other than the frontier's
42–46) and budget, each fixed-threshold family is allocated from each headroom, and the widths
are scored as ``auto`` scores a candidate (:func:`~softbits.training.train.screen_loss`: the
serving trees on the training part's validation share). The test split is never read.

    python benchmarks/tree_headroom_cv.py --out benchmarks/results/tree_headroom_cv.json
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
from softbits.training import allocation
from softbits.training.config import TrainConfig
from softbits.training.train import screen_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="cpu_act,california,fried")
    parser.add_argument("--bits", default="2,4,6")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--headrooms", default="4,6")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tree_headroom_cv.json"))
    args = parser.parse_args()
    headrooms = [int(h) for h in args.headrooms.split(",")]
    default = allocation.TREE_HEADROOM_BITS
    rows: list[dict[str, Any]] = []
    for name in args.datasets.split(","):
        ds = load_dataset(name)
        for seed in map(int, args.seeds.split(",")):
            split = split_and_scale(ds, seed=seed)
            n_features = split.X_train.shape[1]
            for bits in map(int, args.bits.split(",")):
                for method in ("bw-bq", "bw-tq"):
                    config = TrainConfig(method=method, bits=bits, seed=seed, predictor="auto", device="cpu")
                    for headroom in headrooms:
                        allocation.TREE_HEADROOM_BITS = headroom
                        start = time.perf_counter()
                        chosen = allocation.allocate(split.X_train, split.y_train, config, bits * n_features,
                                                     task=ds.task)
                        seconds = time.perf_counter() - start
                        loss, _ = screen_loss(split, replace(config, bits=max(chosen.widths),
                                                          bits_per_feature=chosen.widths),
                                           task=ds.task, n_outputs=1)
                        rows.append({"dataset": name, "seed": seed, "bits_per_feature": bits, "method": method,
                                     "headroom": headroom, "start_bits": chosen.start_bits, "val_loss": loss,
                                     "seconds": seconds, "widths": list(chosen.widths)})
                        print(f"{name} seed {seed} {bits} bits {method} headroom {headroom} "
                              f"(start {chosen.start_bits}): val {loss:.5f} {seconds:.1f}s", flush=True)
    allocation.TREE_HEADROOM_BITS = default
    keys = ("dataset", "seed", "bits_per_feature", "method")
    summary = []
    for headroom in headrooms:
        pairs = [(r, d) for r in rows if r["headroom"] == headroom for d in rows
                 if d["headroom"] == default and all(d[k] == r[k] for k in keys)]
        ratios = [r["val_loss"] / d["val_loss"] for r, d in pairs]
        per_dataset = {name: float(np.exp(np.mean(np.log([r["val_loss"] / d["val_loss"] for r, d in pairs
                                                          if r["dataset"] == name]))))
                       for name in args.datasets.split(",")}
        summary.append({"headroom": headroom, "val_loss_vs_default_geomean": float(np.exp(np.mean(np.log(ratios)))),
                        "val_loss_vs_default_min": float(np.min(ratios)),
                        "val_loss_vs_default_max": float(np.max(ratios)),
                        "val_loss_vs_default_geomean_per_dataset": per_dataset,
                        "seconds_vs_default_mean": float(np.mean([r["seconds"] / d["seconds"] for r, d in pairs]))})
        print(summary[-1])
    save_result({"settings": vars(args) | {"out": str(args.out)}, "machine": machine_info("torch", "lightgbm"),
                 "versions": runtime_info(torch.device("cpu")), "summary": summary, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
