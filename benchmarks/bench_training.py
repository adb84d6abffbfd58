"""Quantizer overhead and engine speed, measured in one run on one machine.

Times one training epoch of (a) Bw-SQ + MLP with the engine, (b) a bare MLP of the same input
width F·M on precomputed inputs with the engine, and (c) Bw-SQ + MLP with a per-sample
``torch.utils.data.DataLoader`` loop — same rows, batch size, optimizer. Prints one JSON object
(and writes it with ``--out``): the ratios (a)/(b) (goal ≤ 1.10) and (c)/(a).

    python benchmarks/bench_training.py --rows 40768 --features 10 --bits 4 --out benchmarks/results/training_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from softbits.nn.network import QuantizedMLP, build_mlp
from softbits.nn.quantizers import BitwiseQuantizer
from softbits.provenance import machine_info, runtime_info
from softbits.training.engine import resolve_device, train_epoch


def _time_interleaved(steps: dict[str, object], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Time one epoch of each step in turn, ``repeats`` rounds: drift of the machine (clock,
    neighbours) hits every variant alike instead of whichever ran last."""
    for step in steps.values():
        step()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=40768)
    p.add_argument("--features", type=int, default=10)
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--neurons", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    X = torch.randn(args.rows, args.features, device=device)
    y = torch.randn(args.rows, device=device)
    q = BitwiseQuantizer(args.features, args.bits).to(device)
    q.init_from_data(X)
    q.set_temperature(0.1)
    width = q.out_features
    bwsq = QuantizedMLP(q, build_mlp(width, 1, args.layers, args.neurons, 0.0)).to(device)
    bare = QuantizedMLP(None, build_mlp(width, 1, args.layers, args.neurons, 0.0)).to(device)
    X_wide = torch.rand(args.rows, width, device=device)
    g = torch.Generator().manual_seed(0)

    def engine(model: torch.nn.Module, inputs: torch.Tensor):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        return lambda: train_epoch(model, opt, inputs, y, task="regression",
                                   batch_size=args.batch_size, generator=g)

    def dataloader_loop():
        opt = torch.optim.Adam(bwsq.parameters(), lr=1e-3)
        loader = DataLoader(TensorDataset(X.cpu(), y.cpu()), batch_size=args.batch_size, shuffle=True)

        def step():
            bwsq.train()
            for xb, yb in loader:
                xb, yb = xb.to(device), yb.to(device)
                loss = torch.nn.functional.mse_loss(bwsq(xb).squeeze(-1), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return step

    times = _time_interleaved({"bwsq": engine(bwsq, X), "bare": engine(bare, X_wide),
                               "loader": dataloader_loop()}, args.repeats, device)
    t_bwsq, t_bare, t_loader = times["bwsq"], times["bare"], times["loader"]
    med = statistics.median
    result = {
        "benchmark": "training_epoch",
        "rows": args.rows, "features": args.features, "bits": args.bits,
        "input_width": width, "layers": args.layers, "neurons": args.neurons,
        "batch_size": args.batch_size, "repeats": args.repeats,
        "seconds_per_epoch": {"bwsq_engine": med(t_bwsq), "bare_mlp_engine": med(t_bare),
                              "bwsq_dataloader": med(t_loader)},
        "quantizer_overhead_ratio": med(t_bwsq) / med(t_bare),
        "overhead_goal": 1.10,
        "dataloader_over_engine_ratio": med(t_loader) / med(t_bwsq),
        "torch_threads": torch.get_num_threads(),
        "machine": machine_info("torch", "numpy"),
        "device": runtime_info(device)["device"],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
