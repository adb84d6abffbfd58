"""Server throughput and latency on loopback: HTTP and CoAP, 1-sample and 64-sample payloads.

Starts ``softbits serve`` as a subprocess (HTTP + CoAP in one process), then drives it from this
process with bounded request counts and durations: HTTP through a lean keep-alive asyncio client
(raw HTTP/1.1, so the client costs little CPU), CoAP through aiocoap (confirmable requests). Client
and server share the machine's cores, so the numbers are a lower bound for the server. Every
reply is checked (status 200 / 2.05, prediction count). Writes benchmarks/results/server.json.

    .venv/bin/python benchmarks/bench_server.py [--model M.safetensors] [--duration 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from common import save_result

from softbits.device.spec import EncoderSpec
from softbits.device.wire import encode_payload
from softbits.provenance import machine_info
from softbits.training.trained_model import TrainedModel

RESULTS = Path(__file__).parent / "results" / "server.json"


def machine() -> dict[str, object]:
    return machine_info("torch", "uvicorn", "fastapi", "aiocoap", "h11", "httptools", "uvloop")


def default_model(tmp: Path) -> Path:
    """A small Bw-SQ model (fried, 10 features, 4 bits) or diabetes without the data directory."""
    from softbits.data import load_dataset
    from softbits.training.config import TrainConfig
    from softbits.training.train import train_dataset

    try:
        ds = load_dataset("fried", download=False)
    except Exception:  # noqa: BLE001 - no data directory: fall back to the bundled dataset
        ds = load_dataset("diabetes")
    cfg = TrainConfig(method="bw-sq", bits=4, layers=2, neurons=64, epochs=2, device="cpu")
    path = tmp / "model.safetensors"
    train_dataset(ds, cfg).save(path)
    return path


async def http_worker(port: int, body: bytes, n_samples: int, stop_at: float, budget: list[int],
                      latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            reply = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert len(json.loads(reply)["predictions"]) == n_samples
    finally:
        writer.close()


async def coap_worker(ctx, url: str, body: bytes, n_samples: int, stop_at: float, budget: list[int],
                      latencies: list[float]) -> None:
    import aiocoap

    while budget[0] > 0 and time.perf_counter() < stop_at:
        budget[0] -= 1
        t0 = time.perf_counter()
        reply = await ctx.request(aiocoap.Message(code=aiocoap.POST, uri=url, payload=body)).response
        latencies.append(time.perf_counter() - t0)
        assert reply.code == aiocoap.CONTENT, reply
        assert len(json.loads(reply.payload)["predictions"]) == n_samples


async def scenario(transport: str, target: str | int, body: bytes, n_samples: int, concurrency: int,
                   duration: float, max_requests: int) -> dict[str, object]:
    import aiocoap

    ctx = await aiocoap.Context.create_client_context() if transport == "coap" else None
    try:
        for warm in (True, False):
            latencies: list[float] = []
            budget = [min(200, max_requests) if warm else max_requests]
            start = time.perf_counter()
            stop_at = start + (2.0 if warm else duration)
            if transport == "http":
                jobs = [http_worker(int(target), body, n_samples, stop_at, budget, latencies)
                        for _ in range(concurrency)]
            else:
                jobs = [coap_worker(ctx, str(target), body, n_samples, stop_at, budget, latencies)
                        for _ in range(concurrency)]
            await asyncio.gather(*jobs)
            elapsed = time.perf_counter() - start
    finally:
        if ctx is not None:
            await ctx.shutdown()
    lat_ms = np.array(latencies) * 1e3
    return {"transport": transport, "samples_per_payload": n_samples, "payload_bytes": len(body),
            "concurrency": concurrency, "requests": len(latencies), "seconds": elapsed,
            "requests_per_s": len(latencies) / elapsed, "samples_per_s": len(latencies) * n_samples / elapsed,
            "latency_ms_p50": float(np.percentile(lat_ms, 50)), "latency_ms_p99": float(np.percentile(lat_ms, 99)),
            "latency_ms_mean": float(lat_ms.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="A threshold model; default: train a small Bw-SQ model.")
    parser.add_argument("--duration", type=float, default=4.0, help="Seconds per scenario (bounded).")
    parser.add_argument("--max-requests", type=int, default=20_000, help="Requests per scenario (bounded).")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or default_model(Path(tmp))
        model = TrainedModel.load(model_path)
        spec = EncoderSpec.from_model(model)
        X = np.random.default_rng(0).standard_normal((64, spec.n_features)) * model.x_scaler.scale + model.x_scaler.mean
        bodies = {1: encode_payload(spec, X[:1]), 64: encode_payload(spec, X)}
        # port 0: the OS picks free ports and the ready line names them
        server = subprocess.Popen([sys.executable, "-m", "softbits", "serve", str(model_path),
                                   "--http", "127.0.0.1:0", "--coap", "127.0.0.1:0"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            ready = server.stdout.readline()
            if not ready.startswith("ready "):
                raise SystemExit(f"server did not start: {ready}")
            urls = json.loads(ready[len("ready "):])
            http_port, coap_url = urlsplit(urls["http"]).port, urls["coap"]
            rows = []
            for transport, target in (("http", http_port), ("coap", coap_url)):
                for n_samples, body in bodies.items():
                    for concurrency in (1, 4):
                        row = asyncio.run(scenario(transport, target, body, n_samples, concurrency,
                                                   args.duration, args.max_requests))
                        rows.append(row)
                        print(f"{transport:4s} {n_samples:2d} samples ×{concurrency}: "
                              f"{row['requests_per_s']:7.0f} req/s  p50 {row['latency_ms_p50']:6.2f} ms  "
                              f"p99 {row['latency_ms_p99']:6.2f} ms  ({row['requests']} requests)", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {"benchmark": "server", "machine": machine(), "model": {
        "method": model.config.method, "bits": spec.bits, "n_features": spec.n_features,
        "network": f"{model.config.layers}×{model.config.neurons}"}, "server": "softbits serve (1 process, "
        "HTTP + CoAP on one asyncio loop, torch 1 thread)", "results": rows}
    save_result(result, args.out)


if __name__ == "__main__":
    main()
