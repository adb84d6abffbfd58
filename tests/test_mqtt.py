"""The MQTT bridge against a real broker on loopback (issue 20, item 2): Debian's mosquitto,
started here. 1,000 TTN-shaped uplinks published → 1,000 predictions, none lost or doubled,
each equal to ``predict_codes`` on its row, the server's memory flat; ChirpStack's topic too; a
broker restart mid-stream is survived."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

paho = pytest.importorskip("paho.mqtt.client")

from softbits.device.encode import encode, encode_packed  # noqa: E402
from softbits.device.spec import EncoderSpec  # noqa: E402
from softbits.device.wire import build_compact  # noqa: E402
from softbits.training.trained_model import TrainedModel  # noqa: E402

from conftest import start_server, stop_server  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="needs mosquitto (scripts/setup.sh installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Listener:
    """A plain paho client: publishes uplinks and collects the bridge's results."""

    def __init__(self, port: int) -> None:
        self.results: list[dict] = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe("softbits/predictions/#", qos=1)
        self.client.reconnect_delay_set(0.2, 2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.results.append({"topic": message.topic, **json.loads(message.payload)})

    def publish(self, topic: str, body: bytes) -> None:
        self.client.publish(topic, body, qos=1).wait_for_publish(timeout=10)

    def wait(self, n: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.results) >= n:
                    break
            time.sleep(0.05)
        time.sleep(0.3)  # a duplicate would arrive right after
        with self.lock:
            return list(self.results)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _ttn(payload: bytes, f_cnt: int, device: str = "sensor-1") -> bytes:
    return json.dumps({"end_device_ids": {"device_id": device},
                       "uplink_message": {"f_port": 2, "f_cnt": f_cnt,
                                          "frm_payload": base64.b64encode(payload).decode()}}).encode()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture
def world(tmp_path, diabetes_models):
    frame = diabetes_models(tmp_path, ("bw-sq",), seed=6, n_rows=10)
    broker = Broker(tmp_path)
    proc, urls = start_server(tmp_path / "bw-sq.safetensors", dict(os.environ, NO_COLOR="1"),
                              "--mqtt", f"127.0.0.1:{broker.port}")
    listener = Listener(broker.port)
    model = TrainedModel.load(tmp_path / "bw-sq.safetensors")
    yield {"broker": broker, "proc": proc, "listener": listener, "model": model, "frame": frame}
    listener.close()
    stop_server(proc)
    broker.stop()


def _until_subscribed(listener: Listener, frame: bytes) -> None:
    """The bridge subscribes after ``ready``: probe until a result comes back."""
    for attempt in range(100):
        listener.publish("v3/probe@ttn/devices/probe/up", _ttn(frame, 10**6 + attempt, "probe"))
        if any(r["device_id"] == "probe" for r in listener.wait(1, timeout=0.3)):
            with listener.lock:
                listener.results.clear()
            return
    raise AssertionError("the bridge never answered")


def test_a_thousand_uplinks_give_a_thousand_predictions(world):
    model, listener = world["model"], world["listener"]
    spec = EncoderSpec.from_model(model)
    rng = np.random.default_rng(0)
    X = model.x_scaler.inverse(rng.standard_normal((1000, spec.n_features)))
    packed = encode_packed(spec, X)
    frames = [build_compact(spec, packed[i:i + 1]) for i in range(1000)]
    _until_subscribed(listener, frames[0])
    codes = encode(spec, X)
    expected = [float(model.predict_codes(codes[i:i + 1])[0]) for i in range(1000)]
    for i in range(200):
        listener.publish("v3/farm@ttn/devices/sensor-1/up", _ttn(frames[i], i))
    listener.wait(200)
    rss = _rss_kib(world["proc"].pid)
    for i in range(200, 1000):
        listener.publish("v3/farm@ttn/devices/sensor-1/up", _ttn(frames[i], i))
    results = listener.wait(1000)
    counts = sorted(r["f_cnt"] for r in results)
    assert counts == list(range(1000)), f"{len(results)} results"
    assert all(r["topic"] == "softbits/predictions/sensor-1" and r["model_id"] == spec.model_id for r in results)
    by_count = {r["f_cnt"]: r["prediction"] for r in results}
    assert [by_count[i] for i in range(1000)] == expected
    assert _rss_kib(world["proc"].pid) - rss < 30_000  # KiB: flat, not growing with the messages


def test_chirpstack_topic_bad_messages_and_a_broker_restart(world):
    model, listener, broker = world["model"], world["listener"], world["broker"]
    spec = EncoderSpec.from_model(model)
    frame = build_compact(spec, encode_packed(spec, model.x_scaler.inverse(np.zeros((1, spec.n_features)))))
    _until_subscribed(listener, frame)
    listener.publish("application/app-1/device/0102/event/up", b"{not json")
    listener.publish("v3/farm@ttn/devices/x/up", json.dumps({"uplink_message": {"frm_payload": "%%"}}).encode())
    body = json.dumps({"deviceInfo": {"devEui": "0102"}, "fPort": 3, "fCnt": 5,
                       "data": base64.b64encode(frame).decode()}).encode()
    listener.publish("application/app-1/device/0102/event/up", body)
    results = listener.wait(1)
    assert len(results) == 1 and results[0]["device_id"] == "0102" and results[0]["f_cnt"] == 5
    broker.stop()
    time.sleep(1.0)
    broker.start()
    time.sleep(0.5)
    with listener.lock:
        listener.results.clear()
    deadline = time.monotonic() + 40
    got: list[dict] = []
    while time.monotonic() < deadline and not got:  # the bridge reconnects and resubscribes
        try:
            listener.publish("v3/farm@ttn/devices/again/up", _ttn(frame, 1, "again"))
        except (RuntimeError, ValueError):
            pass
        got = [r for r in listener.wait(1, timeout=1.0) if r["device_id"] == "again"]
    assert got, "no prediction after the broker restarted"
    assert world["proc"].poll() is None
