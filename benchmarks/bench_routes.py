"""One-sample latency of the integration routes against ``/v1/predict`` (issue 20's goal:
within 1.5×): the TTN and ChirpStack webhooks and the Open Inference Protocol's ``infer``, on
one real ``softbits serve``, one kept-alive client, the routes interleaved in blocks.

    python benchmarks/bench_routes.py --out benchmarks/results/routes.json
"""

from __future__ import annotations

import argparse
import base64
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
from softbits.device.encode import encode, encode_packed
from softbits.device.spec import EncoderSpec
from softbits.device.wire import build_compact
from softbits.provenance import machine_info, runtime_info
from softbits.training.config import TrainConfig
from softbits.training.train import train_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/routes.json"))
    args = parser.parse_args()
    ds = load_dataset("fried")
    model = train_dataset(ds, TrainConfig(method="bw-sq", bits=4, layers=3, neurons=128, epochs=2, device="cpu"))
    spec = EncoderSpec.from_model(model)
    rows = ds.X[:200]
    frames = [build_compact(spec, encode_packed(spec, rows[i:i + 1])) for i in range(200)]
    codes = encode(spec, rows)
    bodies = {
        "/v1/predict": (frames, {"Content-Type": "application/octet-stream"}),
        "/v1/lorawan/ttn": ([json.dumps({"end_device_ids": {"device_id": "d"}, "uplink_message": {
            "f_port": 1, "f_cnt": i, "frm_payload": base64.b64encode(f).decode()}}).encode()
            for i, f in enumerate(frames)], {"Content-Type": "application/json"}),
        "/v1/lorawan/chirpstack?event=up": ([json.dumps({"deviceInfo": {"devEui": "01"}, "fPort": 1, "fCnt": i,
                                                         "data": base64.b64encode(f).decode()}).encode()
                                             for i, f in enumerate(frames)], {"Content-Type": "application/json"}),
        f"/v2/models/{spec.model_id}/infer": ([json.dumps({"inputs": [{"name": "codes", "datatype": "UINT8",
                                                                        "shape": [1, spec.n_features],
                                                                        "data": codes[i].tolist()}]}).encode()
                                               for i in range(200)], {"Content-Type": "application/json"}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        model.save(path)
        proc = subprocess.Popen([sys.executable, "-m", "softbits", "serve", str(path), "--http", "127.0.0.1:0",
                                 "--coap", "off"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, NO_COLOR="1"))
        line = proc.stdout.readline()
        base = json.loads(line[len("ready "):])["http"].rsplit("/v1/", 1)[0]
        latencies: dict[str, list[float]] = {route: [] for route in bodies}
        try:
            with httpx.Client(timeout=30) as client:
                for _ in range(args.blocks):
                    for route, (payloads, headers) in bodies.items():
                        for i in range(args.requests // args.blocks):
                            t = time.perf_counter()
                            response = client.post(base + route, content=payloads[i % 200], headers=headers)
                            latencies[route].append(time.perf_counter() - t)
                            assert response.status_code == 200, (route, response.text)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    result = {"benchmark": "one-sample latency per route", "settings": vars(args) | {"out": str(args.out)},
              "model": "fried bw-sq 4 bits, 3 x 128", "machine": machine_info(),
              "versions": runtime_info(torch.device("cpu")), "routes": {}}
    reference = None
    for route, values in latencies.items():
        ms = np.array(values) * 1e3
        row = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}
        reference = reference or row
        row["p50_over_v1"] = row["p50_ms"] / reference["p50_ms"]
        row["p99_over_v1"] = row["p99_ms"] / reference["p99_ms"]
        result["routes"][route.split("?")[0]] = row
    print(json.dumps(result["routes"], indent=1))
    save_result(result, args.out)


if __name__ == "__main__":
    main()
