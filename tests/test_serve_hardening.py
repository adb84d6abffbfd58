"""``softbits serve`` against hostile or unlucky use: a busy CoAP port, bad hosts, stalled and
aborted uploads, idle connections, SIGTERM, and a model whose output is not finite.

Every test runs a real server process (or the real CLI in-process where it exits before
binding) on 127.0.0.1 with OS-chosen ports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from softbits.device.spec import EncoderSpec
from softbits.device.wire import build_payload

from conftest import pad_mask, run_main, start_server, stop_server

#: the server's idle timeout and shutdown grace (softbits.serve.server) plus slack for a busy CI box
IDLE_BOUND_S = 10.0
SHUTDOWN_BOUND_S = 9.0


def _strict_json(body: bytes | str):
    """``json.loads`` that refuses NaN and ±Infinity, which are not JSON."""
    def refuse(name: str):
        raise ValueError(f"{name} is not JSON")

    return json.loads(body, parse_constant=refuse)


@pytest.fixture(scope="module")
def models(tmp_path_factory, diabetes_models):
    """A good model, one that overflows to ±inf/NaN for large codes of feature 0 (finite for
    an all-zero payload, so the server starts), and one that overflows for every input."""
    from softbits.training.trained_model import TrainedModel

    d = tmp_path_factory.mktemp("hardening")
    diabetes_models(d, ("bw-sq",), seed=3, n_rows=5)
    good = d / "bw-sq.safetensors"
    overflow = TrainedModel.load(good)
    first = overflow.module.network[0]
    n_bits = first.in_features // overflow.n_features
    with torch.no_grad():
        first.weight[:, :n_bits] = 3e38  # two thermometer bits of feature 0 overflow float32
    overflow.save(d / "overflow.safetensors")
    broken = TrainedModel.load(good)
    with torch.no_grad():  # finite weights whose products overflow float32 for every input
        broken.module.network[0].bias.fill_(3e38)
        broken.module.network[2].weight.fill_(3e38)
    broken.save(d / "broken.safetensors")
    return {"dir": d, "good": good, "overflow": d / "overflow.safetensors", "broken": d / "broken.safetensors",
            "spec": EncoderSpec.from_model(TrainedModel.load(good))}


def _env() -> dict[str, str]:
    return dict(os.environ, NO_COLOR="1", COLUMNS="200")


def _hostport(url: str) -> tuple[str, int]:
    host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
    return host, int(port)


def _run_serve(model: Path, *args: str, timeout: float = 60) -> tuple[int | None, str, str]:
    """``softbits serve`` that must exit by itself; a server that starts instead is killed."""
    proc = subprocess.Popen([sys.executable, "-m", "softbits", "serve", str(model), *args], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return None, out, err
    return proc.returncode, out, err


def test_second_serve_refuses_a_busy_coap_port(models):
    proc, urls = start_server(models["good"], _env())
    try:
        busy = "{}:{}".format(*_hostport(urls["coap"]))
        code, out, err = _run_serve(models["good"], "--coap", busy, "--http", "off", timeout=30)
        assert code == 2, (code, out, err)
        assert "ready" not in out
        assert err.strip().splitlines() == [f"error: cannot serve CoAP on {busy}: Address already in use"]
    finally:
        stop_server(proc)


def test_serve_binds_coap_over_udp_only(models):
    """No CoAP-over-TCP listener on the side (it bound 5683 whatever port was asked for)."""
    proc, urls = start_server(models["good"], _env())
    try:
        listening = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, check=True).stdout
        ours = [line.split()[3] for line in listening.splitlines() if f"pid={proc.pid}," in line]
        assert ours == ["{}:{}".format(*_hostport(urls["http"]))], listening
    finally:
        stop_server(proc)


@pytest.mark.parametrize("option, value", [
    ("--coap", "999.1.1.1:5683"), ("--coap", "a..b:5683"), ("--coap", "no.such.host.invalid"),
    ("--http", "999.1.1.1:8000"), ("--http", "a..b:8000"),
])
def test_bad_host_is_one_line(models, capsys, option, value):
    other = "--http" if option == "--coap" else "--coap"
    code, out, err = run_main(capsys, "serve", models["good"], option, value, other, "off")
    assert code == 2 and out == ""
    kind = "CoAP" if option == "--coap" else "HTTP"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot serve {kind} on "), err


def _post_head(n_bytes: int) -> bytes:
    return (f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {n_bytes}\r\n\r\n").encode()


def test_idle_connections_are_closed(models):
    proc, urls = start_server(models["good"], _env())
    try:
        address = _hostport(urls["http"])
        silent = socket.create_connection(address)
        stalled = socket.create_connection(address)
        stalled.sendall(_post_head(1000) + b"\x00" * 10)
        t0 = time.monotonic()
        for conn in (silent, stalled):
            conn.settimeout(IDLE_BOUND_S + 5)
            try:
                data = conn.recv(4096)
            except TimeoutError:
                data = None
            assert data is not None, "the server kept an idle connection open"
            conn.close()
        assert time.monotonic() - t0 < IDLE_BOUND_S
        assert proc.poll() is None
    finally:
        stop_server(proc)


def test_sigterm_with_a_stalled_upload_stops_quickly_and_aborts_log_one_line(models):
    proc, urls = start_server(models["good"], _env())
    address = _hostport(urls["http"])
    aborted = socket.create_connection(address)
    aborted.sendall(_post_head(1000) + b"\x00" * 10)
    time.sleep(0.3)
    aborted.close()
    stalled = socket.create_connection(address)
    stalled.sendall(_post_head(1000) + b"\x00" * 10)
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=SHUTDOWN_BOUND_S + 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = None
    elapsed = time.monotonic() - t0
    stalled.close()
    err = proc.stderr.read()
    assert code == 0 and elapsed < SHUTDOWN_BOUND_S, (code, elapsed, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2 and all("upload" in line for line in lines), err


def test_non_finite_predictions_are_a_json_error(models):
    """Predictions that overflow are never sent as NaN/Infinity: HTTP 500 and CoAP 5.00 with a
    JSON error / text message; finite payloads keep working."""
    import asyncio

    import aiocoap
    import httpx

    spec = models["spec"]
    codes_small = np.zeros((2, spec.sample_bytes), np.uint8)
    codes_large = np.full((2, spec.sample_bytes), 0xFF, np.uint8) & pad_mask(spec)
    fine, bad = build_payload(spec, codes_small), build_payload(spec, codes_large)
    proc, urls = start_server(models["overflow"], _env())
    try:
        r = httpx.post(urls["http"], content=fine)
        assert r.status_code == 200 and len(_strict_json(r.content)["predictions"]) == 2
        r = httpx.post(urls["http"], content=bad)
        body = _strict_json(r.content)
        assert r.status_code == 500 and "non-finite" in body["error"], r.text

        async def over_coap() -> aiocoap.Message:
            ctx = await aiocoap.Context.create_client_context()
            try:
                return await ctx.request(aiocoap.Message(code=aiocoap.POST, uri=urls["coap"],
                                                         payload=bad)).response
            finally:
                await ctx.shutdown()

        reply = asyncio.run(over_coap())
        assert reply.code == aiocoap.INTERNAL_SERVER_ERROR and b"non-finite" in reply.payload
        assert proc.poll() is None
    finally:
        stop_server(proc)


def test_serve_refuses_a_model_that_predicts_no_finite_value(models):
    code, out, err = _run_serve(models["broken"], "--coap", "127.0.0.1:0", "--http", "127.0.0.1:0")
    assert code == 2 and "ready" not in out, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "non-finite" in lines[0], err


class _NanReply(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # http.server's naming
        self.rfile.read(int(self.headers["content-length"]))
        body = b'{"model_id":"x","n_samples":1,"predictions":[NaN]}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_send_refuses_a_reply_with_nan(models, capsys):
    """``softbits send`` parses replies strictly: NaN from a (foreign) server is an error line."""
    httpd = HTTPServer(("127.0.0.1", 0), _NanReply)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        csv = models["dir"] / "rows.csv"
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1/predict"
        code, out, err = run_main(capsys, "send", models["good"], "--input", csv, "--to", url)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert code == 2 and out == "", (out, err)
    assert len(err.strip().splitlines()) == 1 and "not a predictions object" in err
