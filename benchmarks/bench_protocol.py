"""Runs per hour of the protocol executor: the same small sweep with ``--jobs 1`` and ``--jobs 2``.

Each variant is a fresh ``softbits reproduce`` subprocess on its own store (so nothing is
skipped); a "run" is one training. Prints one JSON object and writes it to
``benchmarks/results/protocol_jobs.json`` with the machine it ran on.

    SOFTBITS_DATA_DIR=../shared/data python benchmarks/bench_protocol.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from softbits.provenance import machine_info

RESULTS = Path(__file__).resolve().parent / "results" / "protocol_jobs.json"

#: small nets and few epochs: the sweep measures the runner, not one big training
SWEEP_GRID = {"learning_rate": [1e-3], "hidden_layers": [2, 3], "hidden_neurons": [32, 64],
              "num_epochs": [20], "decrease_factor": [1e-3], "dropout_rate": [0.0],
              "weight_decay": [0.0]}


def sweep_args(dataset: str, grid: Path, store: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "softbits", "reproduce", "--datasets", dataset,
            "--methods", "fp,po-qq,pr-qq,bw-sq,lsq", "--bits", "2,4", "--grid", str(grid),
            "--n-settings", "3", "--folds", "2", "--repeats", "2", "--store", str(store),
            "--jobs", str(jobs), "--json"]


def measure(dataset: str, jobs: int, workdir: Path, grid: Path) -> dict[str, float]:
    """Wall seconds of one fresh sweep and its trainings per hour."""
    store = workdir / f"jobs{jobs}.sqlite"
    done = subprocess.run(sweep_args(dataset, grid, store, jobs), capture_output=True, text=True,
                          check=True)
    summary = json.loads(done.stdout)
    return {"jobs": jobs, "runs": summary["runs"], "seconds": round(summary["seconds"], 2),
            "runs_per_hour": round(summary["runs"] / summary["seconds"] * 3600, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cpu_act",
                        help="a dataset reachable offline (needs SOFTBITS_DATA_DIR for cpu_act)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        grid = workdir / "grid.json"
        grid.write_text(json.dumps(SWEEP_GRID))
        variants = [measure(args.dataset, jobs, workdir, grid) for jobs in (1, 2)]
    result = {
        "benchmark": "protocol runner, runs (trainings) per hour",
        "sweep": {"dataset": args.dataset, "methods": "fp,po-qq,pr-qq,bw-sq,lsq", "bits": "2,4",
                  "settings": 3, "folds": 2, "repeats": 2, "grid": SWEEP_GRID},
        "variants": variants,
        "speedup_jobs2_over_jobs1": round(variants[1]["runs_per_hour"] / variants[0]["runs_per_hour"], 2),
        "machine": {**machine_info("torch"),
                    "torch_threads_default": torch.get_num_threads(),
                    "load_average_1_5_15_min_before": [round(v, 2) for v in load_before]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
