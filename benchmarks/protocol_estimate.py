"""GPU-hours of the paper's full protocol, one training at a time and with ``reproduce --stack auto``,
from measured step times (``bench_stack.py --device cuda`` results).

A cost model per optimizer step, fitted by non-negative least squares to every measured point
(single trainings and stacks of K members, all widths):

    t_step = a + a_L·L + b·FLOP + c·ELEM

with L the hidden layers (kernel launches grow with depth), FLOP = 6·B·K·params (forward and
backward of K members on a batch of B rows) and ELEM = B·K·d_in (the quantizer's soft outputs:
memory-bound elementwise work). The protocol is enumerated as ``reproduce`` runs it: the six
paper datasets (row counts from the registry), every method of Table 2, bits 2–8, the 100
settings ``draw_settings`` draws, 4 folds on 90 % of the rows, then 10 repeats per cell at a
chosen setting (its cost taken as the mean over the 100 settings). Stacks form as
:func:`softbits.experiments.stacking.plan` forms them (same dataset, method, bits, layers,
neurons); a stack runs as long as its longest member; LSQ and LLT run alone.

    python benchmarks/protocol_estimate.py benchmarks/results/gpu_h200_2026-11-27/stack_cuda_*.json \\
        --out benchmarks/results/protocol_estimate_h200.json
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import save_result
from scipy.optimize import nnls

from softbits.codes import n_thresholds
from softbits.data import PAPER_DATASETS, get_dataset_info
from softbits.experiments.protocol import shares_fp_training
from softbits.experiments.reproduce import FULL_PRESET
from softbits.experiments.settings import draw_settings
from softbits.experiments.stacking import auto_size
from softbits.training.config import TrainConfig
from softbits.training.methods import get_method
from softbits.training.train import training_memory

BATCH = 512
#: dense peak rates of an H100/H200 (SXM) by precision; softbits trains in float32
PEAK_TFLOPS = {"fp32": 67, "tf32": 495, "bf16": 989}
_CONFIG = TrainConfig(method="bw-sq", device="cpu")
_CUDA = torch.device("cuda")
BITWISE = ("bw-mq", "bw-qq", "bw-sq")


@functools.cache
def params(layers: int, neurons: int, d_in: int) -> int:
    """Parameters of one network, counted by the trainer's own builder (on the meta device)."""
    config = TrainConfig(layers=layers, neurons=neurons, batch_size=BATCH, device="cpu")
    return training_memory(config, d_in, 1, None, batch_rows=BATCH)[1]


def _features(k: int, layers: int, neurons: int, d_in: int) -> list[float]:
    return [1.0, float(layers), 6.0 * BATCH * k * params(layers, neurons, d_in), float(BATCH * k * d_in)]


def measured_points(paths: list[Path]) -> list[dict[str, Any]]:
    """(K, L, N, d_in, seconds per step) of every single and stacked variant in the results."""
    points = []
    for path in paths:
        result = json.loads(path.read_text())
        steps = math.ceil(result["rows"] / result["batch_size"]) * result["epochs"]
        d_in = result["features"] * n_thresholds(result["bits"])
        for row in result["results"]:
            common = {"layers": result["layers"], "neurons": row["neurons"], "d_in": d_in}
            points.append({**common, "k": 1, "step_seconds": row["single_loop_seconds"] / steps})
            points.extend({**common, "k": s["members"], "step_seconds": s["loop_seconds"] / steps}
                          for s in row["stacked"])
    return points


def fit(points: list[dict[str, Any]]) -> np.ndarray:
    A = np.array([_features(p["k"], p["layers"], p["neurons"], p["d_in"]) for p in points])
    t = np.array([p["step_seconds"] for p in points])
    scale = A.max(axis=0)
    coef, _ = nnls(A / scale, t)
    return coef / scale


def step_seconds(coef: np.ndarray, k: int, layers: int, neurons: int, d_in: int) -> float:
    return float(np.dot(coef, _features(k, layers, neurons, d_in)))


def _d_in(method: str, bits: int, n_features: int) -> int:
    return n_features * n_thresholds(bits) if method in BITWISE else n_features


def estimate(coef: np.ndarray, max_neurons: int | None = None) -> dict[str, Any]:
    """Seconds of the search and of the final tests, alone and stacked, per dataset and width."""
    settings = [s for s in draw_settings(100, seed=42)
                if max_neurons is None or s.hidden_neurons <= max_neurons]
    trained = ["fp"] + [m for m in FULL_PRESET.methods if not shares_fp_training(m)]
    out: dict[str, Any] = {"alone": 0.0, "stacked": 0.0, "trainings": 0, "flop": 0.0, "by_neurons_alone": defaultdict(float),
                           "by_neurons_stacked": defaultdict(float)}
    for dataset in PAPER_DATASETS:
        info = get_dataset_info(dataset)
        rows, n_features = int(info.rows or 0), int(info.features or 0)
        for method in trained:
            bit_list = [2] if method == "fp" else list(FULL_PRESET.bits)
            stackable = get_method(method).name not in ("lsq", "llt4", "llt9")
            for bits in bit_list:
                d_in = _d_in(method, bits, n_features)
                for phase, n_train, members in (("search", 0.9 * 0.75 * rows, 4), ("test", 0.9 * rows, 10)):
                    steps = math.ceil(n_train / BATCH)
                    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
                    for s in settings:
                        groups[(s.hidden_layers, s.hidden_neurons)] += [s.num_epochs] * members
                    # the final test runs one setting per cell: the mean over the settings
                    weight = 1.0 if phase == "search" else 1.0 / len(settings)
                    for (layers, neurons), epochs in groups.items():
                        alone = sum(e * steps * step_seconds(coef, 1, layers, neurons, d_in) for e in epochs)
                        if stackable:
                            epochs = sorted(epochs, reverse=True)  # as plan() sorts a group
                            size = auto_size(replace(_CONFIG, neurons=neurons), _CUDA)
                            chunks = [epochs[i:i + size] for i in range(0, len(epochs), size)]
                            stacked = sum(max(c) * steps * step_seconds(coef, len(c), layers, neurons, d_in)
                                          for c in chunks)
                            if phase == "test":  # one cell's stack of 10 repeats of one setting
                                stacked = sum(e * steps * step_seconds(coef, members, layers, neurons, d_in)
                                              for e in epochs[::members])
                        else:
                            stacked = alone
                        out["alone"] += weight * alone
                        out["stacked"] += weight * stacked
                        out["by_neurons_alone"][neurons] += weight * alone
                        out["by_neurons_stacked"][neurons] += weight * stacked
                        out["trainings"] += weight * len(epochs)
                        out["flop"] += weight * sum(epochs) * 6 * n_train * params(layers, neurons, d_in)
    hours = {k: v / 3600 for k, v in out.items() if k in ("alone", "stacked")}
    return {"gpu_hours_one_at_a_time": round(hours["alone"], 1), "gpu_hours_stacked": round(hours["stacked"], 1),
            "trainings": round(out["trainings"]),
            "flop": float(f"{out['flop']:.3g}"),
            # the arithmetic alone at a dense rate: what no scheduling can beat
            "gpu_hours_floor": {f"{name} {rate} TFLOP/s": round(out["flop"] / (rate * 1e12) / 3600, 1)
                                for name, rate in PEAK_TFLOPS.items()},
            "gpu_hours_by_width_one_at_a_time": {n: round(v / 3600, 2) for n, v in sorted(out["by_neurons_alone"].items())},
            "gpu_hours_by_width_stacked": {n: round(v / 3600, 2) for n, v in sorted(out["by_neurons_stacked"].items())}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, nargs="+", help="bench_stack.py JSON results measured on one GPU")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    points = measured_points(args.results)
    coef = fit(points)
    residuals = [p["step_seconds"] / step_seconds(coef, p["k"], p["layers"], p["neurons"], p["d_in"]) for p in points]
    devices = sorted({json.loads(path.read_text())["device"] for path in args.results})
    result = {
        "estimate": "GPU-hours of the full protocol (6 datasets, 12 methods, bits 2-8, 100 settings, 4 folds, "
                    "10 repeats) from a per-step cost model fitted to measured step times",
        "device": devices,
        "model": {"a_seconds": coef[0], "a_per_layer_seconds": coef[1], "seconds_per_flop": coef[2],
                  "effective_tflops": round(1e-12 / coef[2], 1) if coef[2] else None,
                  "seconds_per_quantizer_element": coef[3],
                  "measured_over_model": {"min": round(min(residuals), 2), "max": round(max(residuals), 2)},
                  "points": points},
        "full_grid": estimate(coef),
        "grid_up_to_1024_neurons": estimate(coef, max_neurons=1024),
        "sources": [str(p) for p in args.results],
    }
    print(json.dumps({k: result[k] for k in ("device", "full_grid", "grid_up_to_1024_neurons")}, indent=1))
    print("model:", {k: v for k, v in result["model"].items() if k != "points"})
    if args.out:
        save_result(result, args.out)


if __name__ == "__main__":
    main()
