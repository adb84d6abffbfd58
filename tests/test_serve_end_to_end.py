"""A real ``softbits serve`` process on 127.0.0.1: HTTP and CoAP answers equal ``softbits predict``.

Clients: a plain HTTP client (urllib), Debian's ``coap-client-notls`` (libcoap), aiocoap, and
``softbits send``. Bad payloads get 400 / 4.00 (413 / 4.13 when oversized) naming the problem,
and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch

from softbits.cli import main
from softbits.device.spec import EncoderSpec
from softbits.device.wire import encode_payload

from conftest import run_main, start_server, stop_server

MAX_PAYLOAD = 4096


@pytest.fixture(scope="module")
def setup(tmp_path_factory, diabetes_models):
    d = tmp_path_factory.mktemp("serve")
    frame = diabetes_models(d, ("bw-sq", "pr-qq", "fp"), seed=2, n_rows=20)
    frame.head(3).to_csv(d / "three.csv", index=False)
    from softbits.training.trained_model import TrainedModel

    spec = EncoderSpec.from_model(TrainedModel.load(d / "bw-sq.safetensors"))
    X = frame[list(spec.feature_names)].to_numpy()
    (d / "payload.bin").write_bytes(encode_payload(spec, X))
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    proc, urls = start_server(d / "bw-sq.safetensors", env, "--max-payload", str(MAX_PAYLOAD))
    yield {"dir": d, "urls": urls, "proc": proc, "spec": spec}
    stop_server(proc)


def cli_lines(capsys, *args) -> tuple[int, list[str], str]:
    code, out, err = run_main(capsys, *args)
    return code, [line for line in out.splitlines() if line.strip()], err


@pytest.fixture(scope="module")
def expected(setup) -> list[float]:
    """``softbits predict MODEL --input rows.csv`` (in-process), as floats."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["predict", str(setup["dir"] / "bw-sq.safetensors"), "--input", str(setup["dir"] / "rows.csv")])
    return [float(v) for v in buf.getvalue().split()]


def http(url: str, data: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def base(setup) -> str:
    return setup["urls"]["http"].rsplit("/v1/", 1)[0]


def test_http_plain_client_equals_softbits_predict(setup, expected):
    status, body = http(setup["urls"]["http"], (setup["dir"] / "payload.bin").read_bytes())
    assert status == 200
    assert body["predictions"] == expected and body["n_samples"] == 20
    assert body["model_id"] == setup["spec"].model_id


def test_http_model_and_health(setup):
    status, spec = http(base(setup) + "/v1/model")
    assert status == 200 and spec["model_id"] == setup["spec"].model_id
    assert EncoderSpec.from_dict(spec) == setup["spec"]
    assert http(base(setup) + "/healthz") == (200, {"status": "ok", "model_id": setup["spec"].model_id})


@pytest.mark.skipif(shutil.which("coap-client-notls") is None,
                    reason="coap-client-notls is not installed (Debian package libcoap3-bin)")
@pytest.mark.parametrize("method", ["post", "put"])
def test_foreign_coap_client_equals_softbits_predict(setup, expected, method):
    url = setup["urls"]["coap"]
    r = subprocess.run(["coap-client-notls", "-m", method, "-f", str(setup["dir"] / "payload.bin"), url],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predictions"] == expected


@pytest.mark.skipif(shutil.which("coap-client-notls") is None,
                    reason="coap-client-notls is not installed (Debian package libcoap3-bin)")
def test_foreign_coap_client_gets_4_00_for_bad_payload(setup, tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes((setup["dir"] / "payload.bin").read_bytes()[:-1])
    r = subprocess.run(["coap-client-notls", "-m", "post", "-f", str(bad), setup["urls"]["coap"]],
                       capture_output=True, text=True, timeout=60)
    assert "4.00" in r.stdout + r.stderr and "truncated body" in r.stdout + r.stderr


@pytest.mark.parametrize("to", ["coap", "http"])
def test_softbits_send_equals_softbits_predict(setup, expected, capsys, to):
    """20 rows fit one payload (--batch 64): the reply is bit-identical to ``softbits predict``."""
    code, out, err = cli_lines(capsys, "send", setup["dir"] / "bw-sq.safetensors", "--input",
                               setup["dir"] / "rows.csv", "--to", setup["urls"][to])
    assert code == 0, err
    assert [float(v) for v in out] == expected


@pytest.mark.parametrize("to, batch", [("coap", 7), ("http", 3)])
def test_softbits_send_in_several_payloads(setup, expected, capsys, to, batch):
    """Each payload is one batch: bit-identical to predicting the same chunks, and equal to the
    one-batch predictions up to BLAS rounding (a row's bits may depend on its batch position)."""
    from softbits.device.predict import predict_rows
    from softbits.training.trained_model import TrainedModel

    code, out, err = cli_lines(capsys, "send", setup["dir"] / "bw-sq.safetensors", "--input",
                               setup["dir"] / "rows.csv", "--to", setup["urls"][to], "--batch", batch)
    assert code == 0, err
    model = TrainedModel.load(setup["dir"] / "bw-sq.safetensors")
    X = pd.read_csv(setup["dir"] / "rows.csv")[model.feature_names].to_numpy()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server runs
    try:
        chunks = [v for i in range(0, len(X), batch) for v in predict_rows(model, X[i:i + batch])]
    finally:
        torch.set_num_threads(threads)
    got = [float(v) for v in out]
    assert got == chunks
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_softbits_send_reports_server_refusal(setup, capsys):
    code, out, err = cli_lines(capsys, "send", setup["dir"] / "pr-qq.safetensors", "--input",
                               setup["dir"] / "three.csv", "--to", setup["urls"]["http"])
    assert code == 2 and out == []
    assert "answered 400: model id mismatch" in err


def _mutations(good: bytes) -> list[tuple[bytes, int, str]]:
    return [
        (good[:9], 400, "truncated header"),
        (b"XX" + good[2:], 400, "bad magic"),
        (good[:2] + b"\x09" + good[3:], 400, "unsupported wire format version 9"),
        (good[:6] + b"\xff" * 8 + good[14:], 400, "model id mismatch"),
        (good[:14] + b"\x15\x00" + good[16:], 400, "truncated body: header says 21 samples"),
        (good + b"\x00", 400, "length mismatch"),
        (good[:14] + b"\x00\x00" + good[16:], 400, "sample count is 0"),
        (good[:3] + b"\x05" + good[4:], 400, "payload is for 10 features × 5 bits"),
        (good + b"\x00" * MAX_PAYLOAD, 413, "exceeds the limit of 4096 bytes"),
    ]


def test_http_bad_payloads_answer_400_and_server_keeps_serving(setup, expected):
    good = (setup["dir"] / "payload.bin").read_bytes()
    for data, status, message in _mutations(good):
        got, body = http(setup["urls"]["http"], data)
        assert got == status and message in body["error"], (message, body)
        assert http(setup["urls"]["http"], good)[1]["predictions"] == expected
    assert setup["proc"].poll() is None


def test_coap_bad_payloads_answer_4xx_and_server_keeps_serving(setup, expected):
    import aiocoap

    good = (setup["dir"] / "payload.bin").read_bytes()

    async def exchange() -> None:
        ctx = await aiocoap.Context.create_client_context()
        try:
            for data, status, message in _mutations(good):
                for code in (aiocoap.POST, aiocoap.PUT):
                    reply = await ctx.request(aiocoap.Message(code=code, uri=setup["urls"]["coap"],
                                                              payload=data)).response
                    want = aiocoap.BAD_REQUEST if status == 400 else aiocoap.REQUEST_ENTITY_TOO_LARGE
                    assert reply.code == want and message in reply.payload.decode(), reply.payload
                ok = await ctx.request(aiocoap.Message(code=aiocoap.POST, uri=setup["urls"]["coap"],
                                                       payload=good)).response
                assert ok.code == aiocoap.CONTENT and json.loads(ok.payload)["predictions"] == expected
            get = await ctx.request(aiocoap.Message(code=aiocoap.GET, uri=setup["urls"]["coap"])).response
            assert get.code == aiocoap.METHOD_NOT_ALLOWED
        finally:
            await ctx.shutdown()

    asyncio.run(exchange())
    assert setup["proc"].poll() is None


def test_serve_refuses_a_busy_port(setup):
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    busy = setup["urls"]["http"].split("//")[1].split("/")[0]
    r = subprocess.run([sys.executable, "-m", "softbits", "serve", str(setup["dir"] / "bw-sq.safetensors"),
                        "--coap", "off", "--http", busy], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and f"error: cannot serve HTTP on {busy}" in r.stderr, r.stderr


def test_serve_refuses_models_without_encoder(setup, capsys):
    code, out, err = cli_lines(capsys, "serve", setup["dir"] / "fp.safetensors", "--coap", "off")
    assert code == 2 and "has no threshold encoder" in err
    code, out, err = cli_lines(capsys, "serve", setup["dir"] / "bw-sq.safetensors", "--coap", "off",
                               "--http", "off")
    assert code == 2 and "nothing to serve" in err


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9000", ("127.0.0.1", 9000)),
    ("0.0.0.0", ("0.0.0.0", 5683)),
    (":7000", ("127.0.0.1", 7000)),
    ("[::1]:6000", ("::1", 6000)),
    ("[::1]", ("::1", 5683)),
])
def test_parse_address(text, expected):
    from softbits.serve.server import parse_address

    assert parse_address(text, 5683) == expected


@pytest.mark.parametrize("text", ["host:port", "1.2.3.4:70000", "[::1", "[::1]x"])
def test_parse_address_rejects(text):
    from softbits.errors import SoftbitsError
    from softbits.serve.server import parse_address

    with pytest.raises(SoftbitsError):
        parse_address(text, 5683)
