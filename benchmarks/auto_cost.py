"""What ``--predictor auto`` costs against the MLP training whose thresholds it uses (issue 18's
cost goal: auto ≤ 4×), and what it reaches, on the paper's split for each seed.

Per dataset, seed and average width b bits per feature, one after the other in this process:

- ``mlp allocated``: ``bw-sq --budget-bits b·F`` with the MLP serving (the allocation's probe
  network, the search and the final training);
- ``auto allocated``: the same with ``--predictor auto`` (every candidate's allocation, the
  screened fixed-threshold candidates, two trained networks, the trees);
- ``uniform`` (``--kinds uniform``): ``bw-sq`` at b bits for every feature with the MLP and
  with ``auto`` (the method's own candidate and the screened fixed-threshold ones, two networks).

Seconds are whole calls; the ratio is taken per cell, so both sides of it ran under the same
load. Test MSE on the standardized target; ``auto_val_loss`` keeps every candidate's
validation loss (of the training part's validation share; the test rows reach no choice).

    python benchmarks/auto_cost.py --datasets cpu_act,california,fried --bits 2,4,8 \\
        --seeds 42,43,44,45,46 --out benchmarks/results/auto_cost.json
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
from softbits.training.allocation import train_allocated
from softbits.training.config import TrainConfig
from softbits.training.train import train_on_split


def cell(name: str, seed: int, bits: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    ds = load_dataset(name)
    split = split_and_scale(ds, seed=seed)
    n_features = split.X_train.shape[1]
    kw = dict(task=ds.task, feature_names=ds.feature_names, target_name=ds.target_name, dataset=ds.name)
    base = TrainConfig(method="bw-sq", bits=bits, layers=args.layers, neurons=args.neurons, epochs=args.epochs,
                       seed=seed, device="cpu")
    rows = []
    for kind in args.kinds.split(","):
        budget = kind == "allocated"
        seconds = {}
        for predictor in ("mlp", "auto"):
            config = replace(base, predictor=predictor)
            start = time.perf_counter()
            model = (train_allocated(split, config, bits * n_features, **kw) if budget
                     else train_on_split(split, config, **kw))
            seconds[predictor] = time.perf_counter() - start
            rows.append({"dataset": name, "seed": seed, "bits_per_feature": bits, "kind": kind,
                         "predictor": predictor, "test_mse": model.metrics["test_mse"],
                         "seconds": seconds[predictor], "auto_choice": model.metrics.get("auto_choice"),
                         "auto_val_loss": model.metrics.get("auto_val_loss")})
        rows[-1]["cost_vs_mlp"] = seconds["auto"] / seconds["mlp"]
        print(f"{name} seed {seed} {bits} bits {kind}: mlp {seconds['mlp']:.1f}s "
              f"{rows[-2]['test_mse']:.5f}, auto {seconds['auto']:.1f}s {rows[-1]['test_mse']:.5f} "
              f"({rows[-1]['auto_choice']}), {rows[-1]['cost_vs_mlp']:.2f}x", flush=True)
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    keys = sorted({(r["dataset"], r["kind"], r["bits_per_feature"]) for r in rows})
    for dataset, kind, bits in keys:
        mine = [r for r in rows if (r["dataset"], r["kind"], r["bits_per_feature"]) == (dataset, kind, bits)]
        auto = [r for r in mine if r["predictor"] == "auto"]
        mlp = [r for r in mine if r["predictor"] == "mlp"]
        ratios = [r["cost_vs_mlp"] for r in auto]
        out.append({"dataset": dataset, "kind": kind, "bits_per_feature": bits, "seeds": len(auto),
                    "auto_test_mse_mean": float(np.mean([r["test_mse"] for r in auto])),
                    "mlp_test_mse_mean": float(np.mean([r["test_mse"] for r in mlp])),
                    "auto_seconds_mean": float(np.mean([r["seconds"] for r in auto])),
                    "mlp_seconds_mean": float(np.mean([r["seconds"] for r in mlp])),
                    "cost_vs_mlp_mean": float(np.mean(ratios)), "cost_vs_mlp_max": float(np.max(ratios)),
                    "choices": sorted(r["auto_choice"] for r in auto)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="cpu_act,california,fried")
    parser.add_argument("--bits", default="2,4,8")
    parser.add_argument("--seeds", default="42,43,44,45,46")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--neurons", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--kinds", default="allocated", help="allocated (a budget of b·F bits), uniform, or both")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/auto_cost.json"))
    args = parser.parse_args()
    if not set(args.kinds.split(",")) <= {"allocated", "uniform"}:
        parser.error(f"--kinds takes allocated and/or uniform, got {args.kinds!r}")
    rows: list[dict[str, Any]] = []
    for name in args.datasets.split(","):
        for bits in map(int, args.bits.split(",")):
            for seed in map(int, args.seeds.split(",")):
                rows += cell(name, seed, bits, args)
                save_result({"settings": vars(args) | {"out": str(args.out)}, "machine": machine_info("torch", "lightgbm"),
                             "versions": runtime_info(torch.device("cpu")), "summary": summarize(rows), "rows": rows}, args.out)


if __name__ == "__main__":
    main()
