"""LoRaWAN webhooks on a real ``softbits serve`` (issue 20, item 1): TTN- and ChirpStack-shaped
uplinks posted with curl get the prediction ``softbits predict`` gives for the same row; with
``--lorawan-downlink`` the prediction reaches a local listener standing in for TTN's push URL and
ChirpStack's queue API, in the documented body; bad bodies are 4xx and the server keeps serving."""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from softbits.device.encode import encode_packed
from softbits.device.spec import EncoderSpec
from softbits.device.wire import build_compact
from softbits.training.trained_model import TrainedModel

from conftest import run_main, start_server, stop_server

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


class Listener:
    """A local HTTP server standing in for the network servers' downlink APIs."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                       "body": json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.requests


@pytest.fixture(scope="module")
def setup(tmp_path_factory, diabetes_models):
    d = tmp_path_factory.mktemp("lorawan")
    frame = diabetes_models(d, ("bw-sq",), seed=3, n_rows=6)
    model = TrainedModel.load(d / "bw-sq.safetensors")
    spec = EncoderSpec.from_model(model)
    listener = Listener()
    proc, urls = start_server(d / "bw-sq.safetensors", dict(os.environ, NO_COLOR="1"),
                              "--lorawan-downlink", "--chirpstack-api", listener.url,
                              "--chirpstack-token", "secret")
    base = urls["http"].rsplit("/v1/", 1)[0]
    yield {"dir": d, "frame": frame, "spec": spec, "model": model, "base": base, "listener": listener, "urls": urls}
    stop_server(proc)
    listener.server.shutdown()


def _curl(url: str, body: bytes, *headers: str) -> tuple[int, dict | None]:
    args = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: application/json"]
    for header in headers:
        args += ["-H", header]
    out = subprocess.run([*args, "--data-binary", "@-", url], input=body, capture_output=True, check=True).stdout
    text, _, code = out.decode().rpartition("\n")
    return int(code), (json.loads(text) if text.strip() else None)


def _expected(setup, capsys) -> list[float]:
    """``softbits predict --input`` on each row alone: a one-sample uplink is a batch of one, and
    float32 matrix products may round a row differently in another batch size."""
    values = []
    for i in range(len(setup["frame"])):
        row = setup["dir"] / f"row{i}.csv"
        setup["frame"].iloc[i:i + 1].to_csv(row, index=False)
        code, out, err = run_main(capsys, "predict", setup["dir"] / "bw-sq.safetensors", "--input", row)
        assert code == 0, err
        values.append(float(out))
    return values


def _row_codes(setup, i: int) -> tuple[bytes, bytes]:
    spec, frame = setup["spec"], setup["frame"]
    x = frame[list(spec.feature_names)].to_numpy()[i:i + 1]
    packed = encode_packed(spec, x)
    return build_compact(spec, packed), packed.tobytes()


def ttn_uplink(payload: bytes, f_cnt: int = 7) -> bytes:
    """Shaped like The Things Stack v3's uplink webhook (fields TTN sends; empty ones left out)."""
    return json.dumps({
        "end_device_ids": {"device_id": "sensor-1", "application_ids": {"application_id": "farm"},
                           "dev_eui": "70B3D57ED005B8A1"},
        "received_at": "2026-12-02T15:00:00.123Z",
        "uplink_message": {"f_port": 15, "f_cnt": f_cnt, "frm_payload": base64.b64encode(payload).decode(),
                           "rx_metadata": [{"gateway_ids": {"gateway_id": "gw"}, "rssi": -97, "snr": 7.5}],
                           "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 10}}},
                           "received_at": "2026-12-02T15:00:00.100Z"},
    }).encode()


def chirpstack_uplink(payload: bytes) -> bytes:
    """Shaped like ChirpStack v4's HTTP integration ``up`` event (JSON encoding)."""
    return json.dumps({
        "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d", "time": "2026-12-02T15:00:00Z",
        "deviceInfo": {"tenantName": "t", "applicationName": "farm", "deviceName": "sensor-2",
                       "devEui": "0101010101010101"},
        "devAddr": "00189440", "adr": True, "dr": 3, "fCnt": 11, "fPort": 15, "confirmed": False,
        "data": base64.b64encode(payload).decode(), "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -60}],
    }).encode()


def test_ttn_uplinks_get_predict_s_predictions_and_a_downlink(setup, capsys):
    expected = _expected(setup, capsys)
    listener = setup["listener"]
    start = len(listener.requests)
    frame, bare = _row_codes(setup, 0)
    push = f"{listener.url}/api/v3/as/applications/farm/webhooks/sb/devices/sensor-1/down/push"
    code, body = _curl(setup["base"] + "/v1/lorawan/ttn", ttn_uplink(frame), f"X-Downlink-Push: {push}",
                       "X-Downlink-Apikey: NNSXS.key")
    assert code == 200, body
    assert body["prediction"] == expected[0] and body["device_id"] == "sensor-1"
    assert body["model_id"] == setup["spec"].model_id and (body["f_port"], body["f_cnt"]) == (15, 7)
    # bare codes on the route that names the model
    code, body = _curl(f"{setup['base']}/v1/lorawan/ttn/{setup['spec'].model_id}", ttn_uplink(_row_codes(setup, 1)[1]))
    assert code == 200 and body["prediction"] == expected[1]
    requests = listener.wait(start + 1)
    sent = requests[start]
    assert sent["path"].endswith("/devices/sensor-1/down/push") and sent["auth"] == "Bearer NNSXS.key"
    down = sent["body"]["downlinks"][0]
    assert down["f_port"] == 15 and down["priority"] == "NORMAL"
    assert struct.unpack("<f", base64.b64decode(down["frm_payload"]))[0] == pytest.approx(expected[0], rel=1e-6)
    assert bare  # the bare form of row 0 exists too


def test_chirpstack_uplinks_and_other_events(setup, capsys):
    expected = _expected(setup, capsys)
    listener = setup["listener"]
    start = len(listener.requests)
    frame, _ = _row_codes(setup, 2)
    code, body = _curl(setup["base"] + "/v1/lorawan/chirpstack?event=up", chirpstack_uplink(frame))
    assert code == 200 and body["prediction"] == expected[2] and body["device_id"] == "0101010101010101"
    sent = listener.wait(start + 1)[start]
    assert sent["path"] == "/api/devices/0101010101010101/queue" and sent["auth"] == "Bearer secret"
    item = sent["body"]["queueItem"]
    assert item["fPort"] == 15 and item["confirmed"] is False
    assert struct.unpack("<f", base64.b64decode(item["data"]))[0] == pytest.approx(expected[2], rel=1e-6)
    code, body = _curl(setup["base"] + "/v1/lorawan/chirpstack?event=join", b'{"deviceInfo": {"devEui": "01"}}')
    assert code == 204 and body is None


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (b'{"uplink_message": {"frm_payload": "%%%"}}', 400, "not base64"),
    (b'{"uplink_message": {}}', 400, "has no payload"),
    (b'["a list"]', 400, "must be a JSON object"),
    (b'{"uplink_message": {"frm_payload": "AAA=", "f_port": "x"}}', 400, "f_port must be"),
    (json.dumps({"uplink_message": {"frm_payload": base64.b64encode(b"\xc1\x00\x01").decode()}}).encode(), 400, ""),
    (b"x" * (300 * 1024), 413, "exceeds the limit"),
])
def test_bad_webhook_bodies_are_4xx_and_the_server_keeps_serving(setup, capsys, body, status, message):
    code, reply = _curl(setup["base"] + "/v1/lorawan/ttn", body)
    assert code == status, reply
    assert message in reply["error"]
    frame, _ = _row_codes(setup, 0)
    code, reply = _curl(setup["base"] + "/v1/lorawan/ttn", ttn_uplink(frame))
    assert code == 200


def test_another_model_s_route_is_404(setup):
    _, bare = _row_codes(setup, 0)
    code, reply = _curl(setup["base"] + "/v1/lorawan/chirpstack/0123456789abcdef?event=up", chirpstack_uplink(bare))
    assert code == 404 and "no model 0123456789abcdef" in reply["error"]


def test_chirpstack_api_needs_downlinks(setup, capsys):
    code, _, err = run_main(capsys, "serve", setup["dir"] / "bw-sq.safetensors", "--chirpstack-api", "http://x")
    assert code == 2 and "applies with --lorawan-downlink" in err


def test_metrics_count_every_transport_and_outcome(setup):
    """``GET /metrics`` (Prometheus text format) after HTTP, webhook and CoAP requests."""
    from prometheus_client.parser import text_string_to_metric_families

    from test_coap_conformance import _exchange, _request

    frame, _ = _row_codes(setup, 0)
    _curl(setup["base"] + "/v1/predict", frame)
    _curl(setup["base"] + "/v1/lorawan/ttn", b"{bad")
    coap = urlsplit(setup["urls"]["coap"])
    reply = _exchange((coap.hostname, coap.port), _request(77, [(11, b"predict")], payload=frame))
    assert reply is not None and reply[1] == 0x45  # 2.05
    text = subprocess.run(["curl", "-s", setup["base"] + "/metrics"], capture_output=True, check=True).stdout.decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("softbits_requests_total", transport="http", route="predict", outcome="ok") >= 1
    assert value("softbits_requests_total", transport="http", route="lorawan_ttn", outcome="bad_request") >= 1
    assert value("softbits_requests_total", transport="http", route="lorawan_ttn", outcome="ok") >= 1
    assert value("softbits_requests_total", transport="coap", route="predict", outcome="ok") == 1
    assert value("softbits_samples_total", transport="coap") == 1
    assert value("softbits_payload_bytes_total", transport="coap") == len(frame)
    assert value("softbits_request_duration_seconds_count", transport="coap", route="predict") == 1
    assert value("softbits_model_info", model_id=setup["spec"].model_id, method="bw-sq", bits="3") == 1
