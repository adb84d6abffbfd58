"""Trainings per hour, one at a time (``fit_module``) against stacked (``fit_stacked``).

Every training is Bw-SQ on cpu_act's paper split (about 7.4k rows × 21 features), members differing
in seed and learning rate as a seed sweep does. For each network width, one single training is
timed and K of them stacked for each K (fastest of ``--repeats`` interleaved rounds), so trainings per hour compare
3600·1/t_single with 3600·K/t_stack. Member 0 of the largest stack is checked against its single
training (largest parameter difference), so the speed is that of trainings that match.

    python benchmarks/bench_stack.py --out benchmarks/results/stack_cpu.json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from common import save_result

from softbits.config import TrainConfig
from softbits.data import load_dataset, split_and_scale
from softbits.engine import resolve_device
from softbits.runtime import machine_info, runtime_info
from softbits.stack import fit_stacked
from softbits.train import fit_module

T = TypeVar("T")


def _configs(k: int, neurons: int, args: argparse.Namespace) -> list[TrainConfig]:
    return [TrainConfig(method="bw-sq", bits=args.bits, layers=args.layers, neurons=neurons,
                        epochs=args.epochs, batch_size=args.batch_size, device=args.device,
                        seed=seed, lr=1e-3 * (1 + seed % 4)) for seed in range(k)]


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="cpu_act")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--neurons", type=int, nargs="+", default=[32, 128])
    p.add_argument("--members", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="torch thread counts to measure, each a full pass (on a shared machine two "
                        "threads that wait for each other stall whenever a neighbour takes a core)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    device = resolve_device(args.device)
    split = split_and_scale(load_dataset(args.dataset), seed=0)
    data = (split.X_train, split.y_train)
    warm = _configs(2, 8, argparse.Namespace(**{**vars(args), "epochs": 1}))
    fit_module(*data, warm[0], task="regression")  # first-call imports (torch._dynamo) out of the timings
    fit_stacked(warm, [data] * 2, task="regression")
    rows = []
    for threads, neurons in ((t, n) for t in args.threads for n in args.neurons):
        torch.set_num_threads(threads)
        # rounds interleave the single training and every stack, and each keeps its fastest round:
        # drift of a shared machine hits all variants alike, and noise only ever adds time
        single, stacks = float("inf"), dict.fromkeys(args.members, float("inf"))
        for _ in range(args.repeats):
            seconds, alone = _timed(lambda n=neurons: fit_module(*data, _configs(1, n, args)[0], task="regression"))
            single = min(single, seconds)
            for k in args.members:
                configs = _configs(k, neurons, args)
                seconds, members = _timed(lambda c=configs, k=k: fit_stacked(c, [data] * k, task="regression"))
                stacks[k] = min(stacks[k], seconds)
        ours, theirs = members[0].module.state_dict(), alone.module.state_dict()
        row: dict[str, Any] = {
            "torch_threads": threads, "neurons": neurons, "single_seconds": single, "single_trainings_per_hour": 3600 / single,
            "stacked": [{"members": k, "seconds": t, "trainings_per_hour": 3600 * k / t, "speedup": single * k / t}
                        for k, t in stacks.items()],
            "member0_max_param_difference": max(float((ours[n] - theirs[n]).abs().max()) for n in theirs),
        }
        rows.append(row)
        print(row)
    result = {
        "benchmark": "stacked_training",
        "dataset": args.dataset, "rows": int(data[0].shape[0]), "features": int(data[0].shape[1]),
        "method": "bw-sq", "bits": args.bits, "layers": args.layers, "epochs": args.epochs,
        "batch_size": args.batch_size, "repeats": args.repeats,
        "timing": "fastest of interleaved rounds, whole training call (build, init, epochs); members differ in seed and lr",
        "results": rows,
        "machine": machine_info("torch", "numpy"),
        "device": runtime_info(device)["device"],
    }
    if args.out:
        save_result(result, args.out)


if __name__ == "__main__":
    main()
