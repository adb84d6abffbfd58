"""How low can any n-bit threshold quantizer go on fried? The Bayes floor of the test MSE.

fried is Friedman #1: y = 10 sin(π x1 x2) + 20 (x3 − ½)² + 10 x4 + 5 x5 + ε, x_i ~ U(0, 1)
independent, x6..x10 unused. A server that sees only each feature's code (the bin between its
thresholds) can at best predict E[y | bins]; its MSE is Var(ε) + E[Var(f(x) | bins)]. The terms
depend on disjoint independent features, so the within-bin variances add: the linear terms'
optimum is uniform bins (w²/12 per bin of width w), x3's and the (x1, x2) term's are found
numerically (Nelder–Mead / Powell from uniform starts, midpoint grids of GRID points per axis).
Var(ε) and Var(y) come from the data file (residual of the formula), and everything is divided
by Var(y), as the paper standardizes the target.

So: ``noise`` is a hard floor for every method and bit width; ``linear_bound`` (noise plus the
linear terms at their optimum) is a provable floor for n bits; ``best_found`` is the floor at the
best thresholds found, an estimate of the true one from above. The results say which paper cells
no quantizer of that width can beat by a given ratio. Writes benchmarks/results/fried_floor.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import save_result
from scipy.optimize import minimize

from softbits.data import load_dataset
from softbits.experiments.report import read_reference
from softbits.provenance import machine_info

GRID = 600
AXIS = (np.arange(GRID) + 0.5) / GRID


def _within_1d(values: np.ndarray, cuts: np.ndarray) -> float:
    """E[Var(values | bin)] over the grid, bins cut at ``cuts``."""
    bins = np.searchsorted(np.sort(np.clip(cuts, 0, 1)), AXIS)
    return float(sum(values[bins == b].var() * np.count_nonzero(bins == b)
                     for b in np.unique(bins)) / GRID)


def _within_2d(values: np.ndarray, cuts1: np.ndarray, cuts2: np.ndarray) -> float:
    b1 = np.searchsorted(np.sort(np.clip(cuts1, 0, 1)), AXIS)
    b2 = np.searchsorted(np.sort(np.clip(cuts2, 0, 1)), AXIS)
    total = 0.0
    for a in np.unique(b1):
        for b in np.unique(b2):
            cell = values[np.ix_(b1 == a, b2 == b)]
            total += cell.var() * cell.size
    return float(total / values.size)


def floors(bits: int, noise: float, var_y: float, optimize: bool) -> dict[str, Any]:
    """The three floors at ``bits`` (``best_found`` = uniform thresholds unless ``optimize``)."""
    levels = 2 ** bits
    uniform = np.arange(1, levels) / levels
    linear = (10.0 ** 2 + 5.0 ** 2) / (12 * levels ** 2)  # 10 x4 and 5 x5 in uniform bins
    quad = 20 * (AXIS - 0.5) ** 2
    sine = 10 * np.sin(np.pi * AXIS[:, None] * AXIS[None, :])
    quad_var, sine_var = _within_1d(quad, uniform), _within_2d(sine, uniform, uniform)
    row = {"bits": bits, "noise": noise / var_y, "linear_bound": (noise + linear) / var_y,
           "uniform_thresholds": (noise + linear + quad_var + sine_var) / var_y, "optimized": optimize}
    if optimize:
        q = minimize(lambda c: _within_1d(quad, c), uniform, method="Nelder-Mead",
                     options={"maxiter": 4000, "xatol": 1e-4, "fatol": 1e-8})
        s = minimize(lambda c: _within_2d(sine, c[:levels - 1], c[levels - 1:]),
                     np.concatenate([uniform, uniform]), method="Powell",
                     options={"maxiter": 20000, "xtol": 1e-3})
        quad_var, sine_var = min(q.fun, quad_var), min(s.fun, sine_var)
    row["best_found"] = (noise + linear + quad_var + sine_var) / var_y
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimize-bits", default="2,3,4",
                        help="widths whose thresholds are optimized (the others: uniform)")
    parser.add_argument("--reference", type=Path, required=True, help="paper_results.csv")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fried_floor.json")
    args = parser.parse_args()
    ds = load_dataset("fried", download=False)
    X, y = ds.X.astype(np.float64), ds.y.astype(np.float64)
    f = 10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2 + 10 * X[:, 3] + 5 * X[:, 4]
    noise, var_y = float(np.var(y - f)), float(np.var(y))
    optimize = {int(b) for b in args.optimize_bits.split(",")}
    reference = read_reference(args.reference)
    paper = reference[(reference["dataset"] == "fried") & (reference["method"] == "Bw-SQ")]
    start = time.perf_counter()
    rows = []
    for bits in range(2, 9):
        row = floors(bits, noise, var_y, bits in optimize)
        mean = paper[paper["bits"] == bits]["test_mse_mean"]
        if not mean.empty:
            row["paper_bw_sq"] = float(mean.iloc[0])
            row["best_found_ratio_to_paper"] = row["best_found"] / row["paper_bw_sq"]
            row["provable_ratio_to_paper"] = row["linear_bound"] / row["paper_bw_sq"]
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    save_result({"benchmark": "fried_floor", "machine": machine_info("numpy", "scipy"),
                 "var_y": var_y, "noise_var": noise, "grid": GRID, "rows": rows,
                 "seconds": time.perf_counter() - start}, args.out)


if __name__ == "__main__":
    main()
