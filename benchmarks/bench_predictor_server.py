"""One-sample HTTP latency of a tree-served model against the MLP-served one (issue 18's goal:
p99 within 2×). Both models: fried, bw-sq at 4 bits, 3 × 128; one trains with ``--predictor
mlp``, one with ``--predictor gbdt``. Each runs in a real ``softbits serve``; one client sends
one-sample compact frames over a kept-alive connection, the two servers interleaved in blocks.

    python benchmarks/bench_predictor_server.py --out benchmarks/results/predictor_server.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from common import save_result

from softbits.data import load_dataset
from softbits.device.encode import encode_packed
from softbits.device.spec import EncoderSpec
from softbits.device.wire import build_compact
from softbits.provenance import machine_info, runtime_info
from softbits.training.config import TrainConfig
from softbits.training.train import train_dataset


def start(model: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "softbits", "serve", str(model), "--http", "127.0.0.1:0",
                             "--coap", "off"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, NO_COLOR="1"))
    line = proc.stdout.readline()
    if not line.startswith("ready "):
        raise RuntimeError(line + proc.stderr.read())
    return proc, json.loads(line[len("ready "):])["http"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/predictor_server.json"))
    args = parser.parse_args()
    ds = load_dataset("fried")
    frames: dict[str, list[bytes]] = {}
    servers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for predictor in ("mlp", "gbdt"):
            model = train_dataset(ds, TrainConfig(method="bw-sq", bits=4, layers=3, neurons=128, epochs=3,
                                                  device="cpu", predictor=predictor))
            path = Path(tmp) / f"{predictor}.safetensors"
            model.save(path)
            spec = EncoderSpec.from_model(model)
            frames[predictor] = [build_compact(spec, encode_packed(spec, ds.X[i:i + 1])) for i in range(200)]
            servers[predictor] = start(path)
        latencies: dict[str, list[float]] = {"mlp": [], "gbdt": []}
        try:
            with httpx.Client(timeout=30) as client:
                for _ in range(args.blocks):
                    for predictor, (_, url) in servers.items():
                        for i in range(args.requests // args.blocks):
                            body = frames[predictor][i % 200]
                            t = time.perf_counter()
                            response = client.post(url, content=body)
                            latencies[predictor].append(time.perf_counter() - t)
                            assert response.status_code == 200, response.text
        finally:
            for proc, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
    result = {"benchmark": "one-sample HTTP latency, mlp vs gbdt predictor", "settings": vars(args) | {"out": str(args.out)},
              "machine": machine_info(), "versions": runtime_info(torch.device("cpu"))}
    for predictor, values in latencies.items():
        ms = np.array(values) * 1e3
        result[predictor] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                             "requests": len(ms)}
    result["gbdt_over_mlp_p99"] = result["gbdt"]["p99_ms"] / result["mlp"]["p99_ms"]
    print({k: result[k] for k in ("mlp", "gbdt", "gbdt_over_mlp_p99")})
    save_result(result, args.out)


if __name__ == "__main__":
    main()
