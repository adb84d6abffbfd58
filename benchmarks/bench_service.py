"""Server core without the network: time per payload in ``PredictionService.answer``.

Compares, interleaved in one run, the network evaluated through ``nn.Module`` calls with the
dispatch-free :func:`softbits.nn.network.network_eval` the service uses (same kernels, same bits; the
benchmark checks the replies are byte-identical). 1-sample and 64-sample payloads, one torch
thread, best of several blocks because the development VM is shared. Writes
benchmarks/results/service.json.

    .venv/bin/python benchmarks/bench_service.py [--requests 1000] [--blocks 7]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import best_of, save_result

import softbits.nn.network
from softbits.data import load_dataset
from softbits.device.wire import encode_payload
from softbits.provenance import machine_info
from softbits.serve.service import PredictionService
from softbits.training.config import TrainConfig
from softbits.training.train import train_dataset

RESULTS = Path(__file__).parent / "results" / "service.json"
FAST = softbits.nn.network.network_eval


def module_forward(network: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    return network(x)


def run(requests: int, blocks: int) -> dict[str, object]:
    torch.set_num_threads(1)
    ds = load_dataset("fried")
    config = TrainConfig(method="bw-sq", bits=4, layers=3, neurons=128, epochs=1, seed=0, device="cpu")
    service = PredictionService(train_dataset(ds, config))
    rows = []
    for n_samples in (1, 64):
        payload = encode_payload(service.spec, ds.X[:n_samples])
        replies, times = {}, {}
        for name, forward in (("module", module_forward), ("network_eval", FAST)) * 2:
            softbits.nn.network.network_eval = forward
            replies[name] = service.answer(payload).body
            t = best_of(lambda: service.answer(payload), blocks, requests) * 1e6
            times[name] = min(times.get(name, float("inf")), t)
        softbits.nn.network.network_eval = FAST
        assert replies["module"] == replies["network_eval"], "the two forwards disagree"
        row = {"n_samples": n_samples, "module_us": times["module"],
               "network_eval_us": times["network_eval"],
               "speedup": times["module"] / times["network_eval"]}
        rows.append(row)
        print(f"{n_samples:2d} samples: module {row['module_us']:6.1f} us, network_eval "
              f"{row['network_eval_us']:6.1f} us per payload (×{row['speedup']:.2f})", flush=True)
    return {"benchmark": "service", "model": "fried bw-sq 4 bits, 3 x 128",
            "machine": machine_info("torch", "numpy"), "torch_threads": 1,
            "requests_per_block": requests, "blocks": blocks, "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.requests, args.blocks)
    save_result(result, args.out)


if __name__ == "__main__":
    main()
