"""Trainings per hour, one at a time (``fit_module``) against stacked (``fit_stacked``).

Every training is Bw-SQ on cpu_act's paper split (about 7.4k rows × 21 features), members differing
in seed and learning rate as a seed sweep does. For each network width, one single training is
timed and K of them stacked for each K (fastest of ``--repeats`` interleaved rounds), so trainings per hour compare
3600·1/t_single with 3600·K/t_stack. Member 0 of the largest stack is checked against its single
training (largest parameter difference), so the speed is that of trainings that match.

Two clocks per variant: the whole call (building and initialising every member included) and the
epoch loop alone (``FitResult.train_seconds``), whose model-epochs per second are the engine's
rate. Stacks whose memory bound exceeds half the device's free memory are skipped.

    python benchmarks/bench_stack.py --out benchmarks/results/stack_cpu.json
    python benchmarks/bench_stack.py --device cuda --neurons 32 256 --members 64 256 1024 --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from common import save_result

from softbits.codes import n_thresholds
from softbits.data import load_dataset, split_and_scale
from softbits.provenance import machine_info, runtime_info
from softbits.training.config import TrainConfig
from softbits.training.engine import resolve_device
from softbits.training.stacked import fit_stacked
from softbits.training.train import available_memory, fit_module, training_memory

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
    p.add_argument("--max-seconds", type=float, default=float("inf"),
                   help="skip the remaining larger stacks of a width once one variant took this long")
    p.add_argument("--tf32", action="store_true",
                   help="let CUDA matmuls use TF32 (10-bit mantissa products; softbits trains in full "
                        "float32 by default): measures what reduced precision would buy")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = args.tf32

    device = resolve_device(args.device)
    split = split_and_scale(load_dataset(args.dataset), seed=0)
    data = (split.X_train, split.y_train)
    warm = _configs(2, 8, argparse.Namespace(**{**vars(args), "epochs": 1}))
    fit_module(*data, warm[0], task="regression")  # first-call imports (torch._dynamo) out of the timings
    fit_stacked(warm, [data] * 2, task="regression")
    rows = []
    for threads, neurons in ((t, n) for t in args.threads for n in args.neurons):
        torch.set_num_threads(threads)
        config = _configs(1, neurons, args)[0]
        one, _ = training_memory(config, data[0].shape[1] * n_thresholds(args.bits), 1, 1, batch_rows=args.batch_size)
        free = available_memory(device)
        sizes = [k for k in args.members if free is None or k * one <= free / 2]
        # rounds interleave the single training and every stack, and each keeps its fastest round:
        # drift of a shared machine hits all variants alike, and noise only ever adds time
        single, single_loop = float("inf"), float("inf")
        stacks = {k: (float("inf"), float("inf")) for k in sizes}
        members: list[Any] = []
        for _ in range(args.repeats):
            seconds, alone = _timed(lambda n=neurons: fit_module(*data, _configs(1, n, args)[0], task="regression"))
            single, single_loop = min(single, seconds), min(single_loop, alone.fit.train_seconds)
            for k in list(stacks):
                configs = _configs(k, neurons, args)
                seconds, members = _timed(lambda c=configs, k=k: fit_stacked(c, [data] * k, task="regression"))
                loop = max(m.fit.train_seconds for m in members)
                stacks[k] = (min(stacks[k][0], seconds), min(stacks[k][1], loop))
                if seconds > args.max_seconds:
                    stacks = {j: t for j, t in stacks.items() if j <= k}
                    break
        theirs = alone.module.state_dict()
        ours = members[0].module.state_dict() if members else theirs
        row: dict[str, Any] = {
            "torch_threads": threads, "neurons": neurons, "single_seconds": single,
            "single_loop_seconds": single_loop, "single_trainings_per_hour": 3600 / single,
            "single_model_epochs_per_second": args.epochs / single_loop,
            "stacked": [{"members": k, "seconds": t, "loop_seconds": loop, "trainings_per_hour": 3600 * k / t,
                         "model_epochs_per_second": k * args.epochs / loop, "speedup": single * k / t,
                         "loop_speedup": single_loop * k / loop}
                        for k, (t, loop) in stacks.items()],
            "skipped_for_memory": [k for k in args.members if k not in sizes],
            "member0_max_param_difference": max(float((ours[n] - theirs[n]).abs().max()) for n in theirs),
        }
        rows.append(row)
        print(row, flush=True)
        if args.out:  # after every width, so a run cut short keeps what it measured
            save_result(_result(args, data, rows, device), args.out)


def _result(args: argparse.Namespace, data: tuple[Any, Any], rows: list[dict[str, Any]],
            device: torch.device) -> dict[str, Any]:
    return {
        "benchmark": "stacked_training",
        "dataset": args.dataset, "rows": int(data[0].shape[0]), "features": int(data[0].shape[1]),
        "method": "bw-sq", "bits": args.bits, "layers": args.layers, "epochs": args.epochs,
        "batch_size": args.batch_size, "repeats": args.repeats, "tf32": args.tf32,
        "timing": "fastest of interleaved rounds; seconds = whole training call (build, init, epochs), "
                  "loop_seconds = the epoch loop; members differ in seed and lr",
        "results": rows,
        "machine": machine_info("torch", "numpy"),
        "device": runtime_info(device)["device"],
    }


if __name__ == "__main__":
    main()
