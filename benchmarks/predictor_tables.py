"""Markdown tables of ``predictor_frontier.py`` results, with the goals' ratios (issue 18).

    python benchmarks/predictor_tables.py benchmarks/results/predictor_frontier*.json

"softbits" is fixed before looking at any test number: ``bw-sq --predictor auto`` with the
allocator at b·F code bits (at 8 bits the allocator's widest start already fits, so it is the
uniform model). Its ratios: to the best of the paper's Bw-SQ (its table) and quantile codes +
trees at uniform b bits, and to float32 trees.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np

CONTENDERS = ("bw-sq mlp", "quantile gbdt", "auto", "auto allocated")


def main(paths: list[str]) -> None:
    rows, machines = [], set()
    for path in paths:
        data = json.load(open(path))
        rows += data["rows"]
        machines.add(f"{data['machine']['cpu']} ({data['machine']['logical_cpus']} logical CPUs), "
                     f"torch {data['versions'].get('torch')}, lightgbm {data['versions'].get('lightgbm', '?')}")
    paper = {}
    for path in paths:
        for s in json.load(open(path))["summary"]:
            if s["paper_bw_sq"] is not None:
                paper[(s["dataset"], int(s["bits"]))] = s["paper_bw_sq"]
    values: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    seconds: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    for r in rows:
        values[(r["dataset"], r["contender"], r["bits"])].append(r["test_mse"])
        seconds[(r["dataset"], r["contender"], r["bits"])].append(r["seconds"])
    print("Machine: " + "; ".join(sorted(machines)))
    for dataset in sorted({r["dataset"] for r in rows}):
        fp_gbdt = float(np.mean(values[(dataset, "fp gbdt", 32)]))
        fp_mlp = float(np.mean(values[(dataset, "fp mlp", 32)]))
        seeds = len(values[(dataset, "fp gbdt", 32)])
        print(f"\n### {dataset} ({seeds} seeds; float32: MLP {fp_mlp:.4g}, trees {fp_gbdt:.4g})\n")
        print("| bits/feature | paper Bw-SQ | Bw-SQ MLP (ours) | quantile + trees | auto | auto allocated | softbits "
              "/ best other | softbits / fp trees |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for b in sorted({r["bits"] for r in rows if r["dataset"] == dataset and r["bits"] != 32}):
            means = {c: float(np.mean(values[(dataset, c, b)])) if values[(dataset, c, b)] else None for c in CONTENDERS}
            ours = means["auto allocated"] if means["auto allocated"] is not None else means["auto"]
            others = [v for v in (paper.get((dataset, int(b))), means["quantile gbdt"]) if v is not None]
            cell = lambda v: "—" if v is None else f"{v:.4g}"  # noqa: E731
            print(f"| {b:g} | {cell(paper.get((dataset, int(b))))} | {cell(means['bw-sq mlp'])} | "
                  f"{cell(means['quantile gbdt'])} | {cell(means['auto'])} | {cell(means['auto allocated'])} | "
                  f"{ours / min(others):.3f} | {ours / fp_gbdt:.3f} |")
        mlp_s = {b: np.mean(seconds[(dataset, "bw-sq mlp", b)]) for b in {r["bits"] for r in rows} if seconds[(dataset, "bw-sq mlp", b)]}
        for contender in ("quantile gbdt", "auto"):
            ratios = [np.mean(seconds[(dataset, contender, b)]) / s for b, s in mlp_s.items() if seconds[(dataset, contender, b)]]
            print(f"\n{contender} training time / Bw-SQ MLP training time: {min(ratios):.2f}–{max(ratios):.2f}×", end="")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
