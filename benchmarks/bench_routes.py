"""One-sample latency of the integration routes against ``/v1/predict`` (issue 20's goal:
within 1.5×): the TTN and ChirpStack webhooks and the Open Inference Protocol's ``infer``, on
one real ``softbits serve``, one kept-alive client, the routes interleaved in blocks; and, when
mosquitto is installed, the MQTT bridge's round trip (publish an uplink, receive its prediction:
two broker hops more than HTTP).

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


def _broker(tmp: Path) -> tuple[subprocess.Popen, int] | None:
    import shutil
    import socket

    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def _mqtt_round_trips(port: int, uplinks: list[bytes], n: int) -> list[float]:
    """Seconds from publishing each uplink to receiving its prediction, one at a time."""
    import threading

    import paho.mqtt.client as mqtt

    arrived = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda *_: arrived.set()
    client.connect("127.0.0.1", port)
    import socket

    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.subscribe("softbits/predictions/#", qos=1)
    client.loop_start()
    try:
        for _ in range(100):  # until the bridge has subscribed
            arrived.clear()
            client.publish("v3/bench@ttn/devices/d/up", uplinks[0], qos=1)
            if arrived.wait(0.3):
                break
        times = []
        for i in range(n):
            arrived.clear()
            t = time.perf_counter()
            client.publish("v3/bench@ttn/devices/d/up", uplinks[i % len(uplinks)], qos=1)
            if not arrived.wait(10):
                raise RuntimeError("no prediction came back over MQTT")
            times.append(time.perf_counter() - t)
        return times
    finally:
        client.loop_stop()
        client.disconnect()


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
        broker = _broker(Path(tmp))
        extra = [] if broker is None else ["--mqtt", f"127.0.0.1:{broker[1]}"]
        proc = subprocess.Popen([sys.executable, "-m", "softbits", "serve", str(path), "--http", "127.0.0.1:0",
                                 "--coap", "off", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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
            if broker is not None:
                latencies["mqtt round trip"] = _mqtt_round_trips(broker[1], bodies["/v1/lorawan/ttn"][0],
                                                                 args.requests // args.blocks)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
            if broker is not None:
                broker[0].terminate()
                broker[0].wait(timeout=10)
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
