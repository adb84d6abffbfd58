"""Allocated per-feature widths against uniform widths at the same code bits (issue 12, item 3).

For each dataset and seed (the paper's 90/10 split with that seed), Bw-SQ trains with the same
network and epochs at uniform 2, 3 and 4 bits per feature, and through the allocator
(:func:`softbits.training.allocation.train_allocated`) at the code bits of uniform 2 and 3 bits (2·F and 3·F;
2·F is also half the code bits of uniform 4). Test MSE on the standardized target, as the paper
reports it. Variants run interleaved within each seed, one torch thread; an allocated training's
time is the whole call (probe, search and final training) and is compared with the uniform
training it competes with.

    python benchmarks/allocation.py --out benchmarks/results/allocation_cpu.json
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
from softbits.provenance import machine_info
from softbits.training.allocation import train_allocated
from softbits.training.config import TrainConfig
from softbits.training.train import train_on_split

#: (name, allocated code bits per feature, uniform bits it is compared with, goal on the MSE ratio)
CELLS = [("uniform 2 bits", 2, 2, 0.90), ("uniform 3 bits", 3, 3, 0.90), ("half of uniform 4 bits", 2, 4, 1.05)]


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    ds = load_dataset(name)
    n_features = ds.n_features
    runs = []
    for seed in range(args.seeds):
        split = split_and_scale(ds, seed=seed)
        config = TrainConfig(method="bw-sq", layers=args.layers, neurons=args.neurons, epochs=args.epochs,
                             seed=seed, device="cpu")
        kw = dict(task=ds.task, feature_names=ds.feature_names, target_name=ds.target_name, dataset=ds.name)
        row: dict[str, Any] = {"seed": seed, "uniform": {}, "allocated": {}}
        for bits in (2, 3, 4):
            clock = time.perf_counter()
            model = train_on_split(split, replace(config, bits=bits), **kw)
            row["uniform"][bits] = {"test_mse": model.metrics["test_mse"], "seconds": time.perf_counter() - clock}
            if bits in (2, 3):
                budget = bits * n_features
                clock = time.perf_counter()
                model = train_allocated(split, config, budget, **kw)
                seconds = time.perf_counter() - clock
                a = model.allocation
                row["allocated"][bits] = {"test_mse": model.metrics["test_mse"], "seconds": seconds,
                                          "budget_bits": budget, "code_bits": a["code_bits"],
                                          "widths": list(a["bits_per_feature"].values()),
                                          "probe_seconds": a["probe_seconds"], "search_seconds": a["search_seconds"]}
        print(name, seed, {b: round(v["test_mse"], 4) for b, v in row["uniform"].items()},
              {b: (round(v["test_mse"], 4), v["widths"]) for b, v in row["allocated"].items()}, flush=True)
        runs.append(row)
    cells = []
    for label, per_feature, uniform_bits, goal in CELLS:
        alloc = np.array([r["allocated"][per_feature]["test_mse"] for r in runs])
        uni = np.array([r["uniform"][uniform_bits]["test_mse"] for r in runs])
        t_alloc = np.array([r["allocated"][per_feature]["seconds"] for r in runs])
        t_uni = np.array([r["uniform"][uniform_bits]["seconds"] for r in runs])
        ratio = float(alloc.mean() / uni.mean())
        cells.append({
            "cell": label, "code_bits": per_feature * n_features, "uniform_bits": uniform_bits,
            "uniform_code_bits": uniform_bits * n_features,
            "mean_test_mse_uniform": float(uni.mean()), "mean_test_mse_allocated": float(alloc.mean()),
            "std_test_mse_uniform": float(uni.std(ddof=1)), "std_test_mse_allocated": float(alloc.std(ddof=1)),
            "mse_ratio": ratio, "per_seed_ratios": (alloc / uni).tolist(), "goal": goal, "goal_met": ratio <= goal,
            "time_ratio": float(t_alloc.mean() / t_uni.mean()), "time_ratio_goal": 3.0,
            "time_goal_met": float(t_alloc.mean() / t_uni.mean()) <= 3.0,
        })
    return {"dataset": name, "n_features": n_features, "n_train": int(len(split.y_train)), "cells": cells,
            "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["california", "cpu_act"])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--neurons", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/allocation_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    datasets = [run_dataset(name, args) for name in args.datasets]
    result = {
        "benchmark": "allocation",
        "what": "Bw-SQ test MSE (standardized target), allocated per-feature widths vs uniform widths, "
                "same network and epochs; allocated time = probe + search + final training",
        "settings": {"method": "bw-sq", "layers": args.layers, "neurons": args.neurons, "epochs": args.epochs,
                     "seeds": args.seeds, "torch_threads": args.threads, "recipe": "paper", "split": "paper 90/10"},
        "machine": machine_info("torch", "numpy"),
        "seconds": time.perf_counter() - start,
        "datasets": datasets,
    }
    save_result(result, args.out)
    for d in datasets:
        for c in d["cells"]:
            print(f"{d['dataset']:<11} {c['cell']:<24} {c['code_bits']:>3} bits: allocated/uniform MSE "
                  f"{c['mse_ratio']:.3f} (goal {c['goal']}) time {c['time_ratio']:.2f}x")


if __name__ == "__main__":
    main()
