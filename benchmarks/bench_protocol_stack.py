"""Trainings per hour of ``softbits reproduce``, one at a time against stacked (``--stack``).

Two slices of the paper's protocol (issue #10):

- ``search``: the K-fold search of one (dataset, method, bits) cell over ``--n-settings`` settings
  of the paper's grid (or of the grid restricted to ``--neurons``), e.g. cpu_act, Bw-SQ, 4 bits;
- ``paper``: the final test of one cell at the paper's chosen setting (paper_results.csv), e.g.
  california, Bw-SQ, 4 bits, ``--repeats`` repeats.

Each variant (``jobs,stack``; e.g. ``2,1`` and ``2,auto``) is a fresh ``softbits reproduce``
subprocess on its own store, so nothing is skipped; a "run" is one training. A variant that
exceeds ``--timeout`` is stopped and its rate computed from the trainings its store holds. The
tables of the variants are compared key by key (largest relative test-MSE difference).

    SOFTBITS_DATA_DIR=../shared/data python benchmarks/bench_protocol_stack.py --slice search \\
        --dataset cpu_act --neurons 32 64 --n-settings 8 --variants 2,1 2,auto \\
        --out benchmarks/results/protocol_stack_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import save_result

from softbits.experiments.settings import PAPER_GRID
from softbits.provenance import machine_info, runtime_info
from softbits.training.engine import resolve_device

REFERENCE = Path(os.environ.get("SOFTBITS_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference"
                                / "paper_results.csv"))


def _args(a: argparse.Namespace, store: Path, grid: Path, jobs: str, stack: str) -> list[str]:
    common = [sys.executable, "-m", "softbits", "reproduce", "--datasets", a.dataset, "--methods", a.method,
              "--bits", str(a.bits), "--store", str(store), "--jobs", jobs, "--stack", stack,
              "--device", a.device, "--json"]
    if a.slice == "search":
        # the search phase alone: one repeat of the chosen setting follows it and is counted too
        return [*common, "--grid", str(grid), "--n-settings", str(a.n_settings), "--folds", str(a.folds),
                "--repeats", "1"]
    return [*common, "--settings", str(a.reference), "--repeats", str(a.repeats)]


def _rows(store: Path) -> list[tuple[Any, ...]]:
    if not store.exists():
        return []
    with sqlite3.connect(store) as conn:
        return sorted(conn.execute("SELECT dataset, method, bits, setting_id, phase, idx, seed, test_mse "
                                   "FROM results"))


def _variant(a: argparse.Namespace, workdir: Path, grid: Path, spec: str) -> dict[str, Any]:
    jobs, stack = spec.split(",")
    store = workdir / f"jobs{jobs}_stack{stack}.sqlite"
    start = time.perf_counter()
    try:
        done = subprocess.run(_args(a, store, grid, jobs, stack), capture_output=True, text=True,
                              timeout=a.timeout)
        finished = done.returncode == 0
        if not finished:
            print(done.stderr[-2000:], file=sys.stderr)
    except subprocess.TimeoutExpired:
        finished = False
    seconds = time.perf_counter() - start
    rows = _rows(store)
    return {"jobs": int(jobs), "stack": stack, "finished": finished, "trainings": len(rows),
            "seconds": round(seconds, 2), "trainings_per_hour": round(len(rows) / seconds * 3600, 1),
            "_rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slice", choices=("search", "paper"), default="search")
    p.add_argument("--dataset", default="cpu_act")
    p.add_argument("--method", default="bw-sq")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--n-settings", type=int, default=100)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--neurons", type=int, nargs="*", help="restrict the paper grid's widths (e.g. 32 64)")
    p.add_argument("--dropout", type=float, nargs="*",
                   help="restrict the paper grid's dropout rates (0: stacked members then match their "
                        "single trainings up to rounding; with dropout only in distribution)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--reference", type=Path, default=REFERENCE)
    p.add_argument("--variants", nargs="+", default=["2,1", "2,auto"], help="jobs,stack per variant")
    p.add_argument("--device", default="cpu")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per variant")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    grid_values = {k: list(v) for k, v in PAPER_GRID.items()}
    if args.neurons:
        grid_values["hidden_neurons"] = args.neurons
    if args.dropout:
        grid_values["dropout_rate"] = args.dropout
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        grid = workdir / "grid.json"
        grid.write_text(json.dumps(grid_values))
        variants = [_variant(args, workdir, grid, spec) for spec in args.variants]
    base = {r[:7]: r[7] for r in variants[0].pop("_rows")}
    for v in variants[1:]:
        rows = {r[:7]: r[7] for r in v.pop("_rows")}
        shared = [k for k in rows if k in base]
        v["keys_compared"] = len(shared)
        v["max_relative_mse_difference"] = max((abs(rows[k] - base[k]) / abs(base[k]) for k in shared
                                                if base[k]), default=None)
        v["speedup"] = round(v["trainings_per_hour"] / variants[0]["trainings_per_hour"], 2)
    result = {
        "benchmark": "protocol trainings per hour, one at a time vs stacked",
        "slice": {k: getattr(args, k) for k in ("slice", "dataset", "method", "bits", "n_settings", "folds",
                                                 "neurons", "dropout", "repeats", "device", "timeout")},
        "grid": grid_values if args.slice == "search" else f"paper setting from {args.reference.name}",
        "variants": variants,
        "machine": {**machine_info("torch"), "load_average_1_5_15_min_before": list(os.getloadavg())},
        "device": runtime_info(resolve_device(args.device))["device"],
    }
    print(json.dumps(result, default=str))
    if args.out:
        save_result(result, args.out)


if __name__ == "__main__":
    main()
