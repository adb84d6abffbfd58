"""How close trees on fixed-threshold codes come to float32 trees, by width: what bounds issue
18's 4-bit goal (≤ 1.05 × the float32 trees at 4 bits per feature on average).

Per dataset and seed (the paper's 90/10 split), the tree predictor is trained on the codes of
``bw-tq`` (float32 trees' split points) and ``bw-bq`` (tie-aware bins), every feature at each of
``--widths`` bits, and allocated at ``--budgets`` bits per feature on average (tree-scored widths,
as ``auto``'s fixed-threshold candidates get them; ``--tree-headroom`` sets how far above the
mean width the search starts), beside ``fp --predictor gbdt``. The network is not trained (the
codes of fixed thresholds do not depend on it), so only the trees' test MSE is reported.

This reads the test split: it is a report of what a width costs, nothing is chosen from it.

    python benchmarks/code_floor.py --datasets cpu_act --out benchmarks/results/code_floor.json
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import save_result

from softbits.data import load_dataset, split_and_scale
from softbits.provenance import machine_info, runtime_info
from softbits.training import allocation
from softbits.training.allocation import allocate
from softbits.training.config import TrainConfig
from softbits.training.train import train_single

METHODS = ("bw-tq", "bw-bq")


def cell(name: str, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    ds = load_dataset(name)
    split = split_and_scale(ds, seed=seed)
    n_features = split.X_train.shape[1]
    base = TrainConfig(method="fp", bits=4, layers=1, neurons=8, epochs=1, seed=seed, device="cpu",
                       predictor="gbdt")

    def trees(config: TrainConfig) -> float:
        model = train_single(split, config, task=ds.task, feature_names=ds.feature_names)
        return float(model.metrics["test_mse"])

    rows = [{"dataset": name, "seed": seed, "method": "fp", "kind": "float32", "code_bits": 32 * n_features,
             "test_mse": trees(base)}]
    for method in METHODS:
        for bits in args.widths:
            rows.append({"dataset": name, "seed": seed, "method": method, "kind": "uniform", "bits": bits,
                         "code_bits": bits * n_features, "test_mse": trees(replace(base, method=method, bits=bits))})
        for bits in args.budgets:
            for headroom in args.tree_headroom:
                allocation.TREE_HEADROOM_BITS = headroom
                config = replace(base, method=method, bits=bits)
                chosen = allocate(split.X_train, split.y_train, config, bits * n_features, task=ds.task)
                rows.append({"dataset": name, "seed": seed, "method": method, "kind": "allocated", "bits": bits,
                             "tree_headroom": headroom, "start_bits": chosen.start_bits,
                             "code_bits": sum(chosen.widths), "widths": list(chosen.widths),
                             "search_seconds": chosen.search_seconds,
                             "test_mse": trees(replace(config, bits_per_feature=chosen.widths))})
    allocation.TREE_HEADROOM_BITS = DEFAULT_HEADROOM
    for row in rows[1:]:
        row["vs_float32_trees"] = row["test_mse"] / rows[0]["test_mse"]
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = sorted({(r["dataset"], r["method"], r["kind"], r.get("bits", 32), r.get("tree_headroom", 0))
                   for r in rows})
    out = []
    for dataset, method, kind, bits, headroom in keys:
        mine = [r for r in rows if (r["dataset"], r["method"], r["kind"], r.get("bits", 32),
                                    r.get("tree_headroom", 0)) == (dataset, method, kind, bits, headroom)]
        fp = np.mean([r["test_mse"] for r in rows if r["dataset"] == dataset and r["method"] == "fp"])
        mean = float(np.mean([r["test_mse"] for r in mine]))
        out.append({"dataset": dataset, "method": method, "kind": kind, "bits": bits,
                    **({"tree_headroom": headroom} if kind == "allocated" else {}), "seeds": len(mine),
                    "test_mse_mean": mean, "vs_float32_trees_of_means": mean / float(fp)})
    return out


DEFAULT_HEADROOM = allocation.TREE_HEADROOM_BITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="cpu_act")
    parser.add_argument("--seeds", default="42,43,44,45,46")
    parser.add_argument("--widths", default="4,6,8,10,12", help="uniform widths, bits per feature")
    parser.add_argument("--budgets", default="4", help="allocated budgets, bits per feature on average")
    parser.add_argument("--tree-headroom", default=str(DEFAULT_HEADROOM),
                        help="bits above the mean width where the tree-scored search starts (comma list)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/code_floor.json"))
    args = parser.parse_args()
    args.widths, args.budgets, args.tree_headroom = ([int(v) for v in text.split(",")] for text in
                                                     (args.widths, args.budgets, args.tree_headroom))
    rows: list[dict[str, Any]] = []
    for name in args.datasets.split(","):
        for seed in map(int, args.seeds.split(",")):
            rows += cell(name, seed, args)
            save_result({"settings": vars(args) | {"out": str(args.out)}, "machine": machine_info("torch", "lightgbm"),
                         "versions": runtime_info(torch.device("cpu")), "summary": summarize(rows), "rows": rows},
                        args.out)


if __name__ == "__main__":
    main()
