"""How many rows a tree prediction needs before it uses every thread, measured where it matters:
the tree-scored allocation search (``allocation.allocate`` for ``bw-tq`` and ``bw-bq`` with trees
serving), which predicts the validation rows a tried narrowing changes — a few hundred per step
on cpu_act, thousands on california and fried.

Per dataset and budget (seed 42, the paper's split), the two searches run with each threshold of
``--from-rows``, in alternating rounds so that every setting sees the same load; the widths
chosen must be the same for every setting (the trees predict each row alike on any number of
threads). Reported: the searches' seconds (``Allocation.search_seconds``), best of the rounds,
and the ratio to ``--baseline``.

    python benchmarks/search_threads.py --out benchmarks/results/search_threads.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from common import save_result

from softbits.data import load_dataset, split_and_scale
from softbits.provenance import machine_info, runtime_info
from softbits.training import predictors
from softbits.training.allocation import allocate
from softbits.training.config import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default="cpu_act:2,cpu_act:4,california:4,fried:2",
                        help="dataset:bits per feature on average, comma-separated")
    parser.add_argument("--from-rows", default="1024,256,128,64")
    parser.add_argument("--baseline", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_threads.json"))
    args = parser.parse_args()
    settings = [int(v) for v in args.from_rows.split(",")]
    if args.baseline not in settings:
        parser.error(f"--baseline {args.baseline} is not one of --from-rows {args.from_rows}")
    default = predictors.PREDICT_THREADS_FROM_ROWS
    rows: list[dict[str, Any]] = []
    for cell in args.cells.split(","):
        name, bits = cell.split(":")
        ds = load_dataset(name)
        split = split_and_scale(ds, seed=42)
        n_features = split.X_train.shape[1]
        seconds: dict[int, list[float]] = {s: [] for s in settings}
        widths: dict[int, list[tuple[int, ...]]] = {s: [] for s in settings}
        for _ in range(args.rounds):
            for setting in settings:
                predictors.PREDICT_THREADS_FROM_ROWS = setting
                total = 0.0
                for method in ("bw-tq", "bw-bq"):
                    config = TrainConfig(method=method, bits=int(bits), epochs=1, seed=42, device="cpu",
                                         predictor="gbdt")
                    chosen = allocate(split.X_train, split.y_train, config, int(bits) * n_features, task=ds.task)
                    total += chosen.search_seconds
                    widths[setting].append(chosen.widths)
                seconds[setting].append(total)
        predictors.PREDICT_THREADS_FROM_ROWS = default
        same = all(w == widths[args.baseline] for w in widths.values())
        for setting in settings:
            rows.append({"dataset": name, "bits_per_feature": int(bits), "from_rows": setting,
                         "search_seconds_best": min(seconds[setting]), "search_seconds": seconds[setting],
                         "vs_baseline": min(seconds[setting]) / min(seconds[args.baseline]),
                         "same_widths_as_baseline": same})
            print(f"{name} {bits} bits, threads from {setting} rows: {min(seconds[setting]):.2f}s "
                  f"({rows[-1]['vs_baseline']:.2f}x), same widths: {same}", flush=True)
        save_result({"settings": vars(args) | {"out": str(args.out)}, "machine": machine_info("torch", "lightgbm"),
                     "versions": runtime_info(torch.device("cpu")), "rows": rows}, args.out)


if __name__ == "__main__":
    main()
