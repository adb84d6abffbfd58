"""Compact framing for one sample: 2 bytes of framing (``compact``) or none on a route that names
the model id (``none``), next to the 16-byte header that batches and files keep (``full``).

Wire functions, the golden compact payload, the generated C's ``softbits_encode_compact``, the
CLI's ``--frame`` on ``encode``, ``predict`` and ``send``, and a real ``softbits serve`` over HTTP
and CoAP answering each profile, refusing mismatches with 4xx while it keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from softbits.device.encode import encode, encode_packed
from softbits.device.spec import EncoderSpec
from softbits.device.wire import (
    COMPACT_TAG,
    PayloadError,
    build_compact,
    build_frame,
    encode_payload,
    parse_payload,
)
from softbits.errors import DataError
from test_cgen import STRICT, _inputs, _special_spec

from conftest import run_main, start_server, stop_server

GOLDEN = Path(__file__).parent / "expected" / "payloads"
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def cpu_act_spec() -> EncoderSpec:
    """The width of a cpu_act model at 2 bits: 21 features → 42 bits → 6 bytes per sample."""
    table = np.tile(np.array([-1.0, 0.0, 1.0], dtype=np.float32), (21, 1))
    return EncoderSpec(tuple(f"f{i}" for i in range(21)), 2, table)


def f3b2_spec() -> EncoderSpec:
    """The spec of docs/wire-format.md section 1 (model id 024a98f4bf2c331d)."""
    return EncoderSpec(("a", "b", "c"), 2, np.array(
        [[-1.0, 0.0, 1.0], [0.5, 1.5, 2.5], [-0.25, 0.0, 1e-3]], dtype=np.float32))


# ---- wire ----------------------------------------------------------------------------------------

def test_cpu_act_two_bits_fits_in_eight_bytes():
    spec = cpu_act_spec()
    x = np.linspace(-2, 2, 21).reshape(1, 21)
    sizes = {frame: len(build_frame(spec, encode_packed(spec, x), frame)) for frame in ("full", "compact", "none")}
    assert sizes == {"full": 22, "compact": 8, "none": 6}
    assert sizes["compact"] <= 8 < 21 * 4  # float32 would be 84 bytes


@pytest.mark.parametrize("n_features, bits", [(21, 2), (3, 2), (5, 3), (8, 4), (2, 12), (7, 1)])
def test_compact_and_bare_round_trip(n_features, bits):
    rng = np.random.default_rng(n_features * 31 + bits)
    spec = _special_spec(rng, n_features, bits)
    X = _inputs(rng, spec, 2_000)
    codes = encode(spec, X)
    for i in range(0, len(X), 97):
        packed = encode_packed(spec, X[i:i + 1])
        compact = build_compact(spec, packed)
        assert compact[0] == COMPACT_TAG and compact[1] == spec.model_id_bytes[0]
        assert len(compact) == 2 + spec.sample_bytes
        np.testing.assert_array_equal(parse_payload(spec, compact), codes[i:i + 1])
        np.testing.assert_array_equal(parse_payload(spec, compact, frame="compact"), codes[i:i + 1])
        bare = build_frame(spec, packed, "none")
        assert bare == packed.tobytes()
        np.testing.assert_array_equal(parse_payload(spec, bare, frame="none"), codes[i:i + 1])


def test_full_payloads_still_parse_in_auto_mode():
    spec = f3b2_spec()
    data = (GOLDEN / "f3b2.bin").read_bytes()
    assert parse_payload(spec, data).shape == (4, 3)


def test_golden_compact_payload():
    """Row [0, 1.5, 1e-3] of the documented f3b2 example: codes [1, 1, 2] → C1 02 25."""
    spec = f3b2_spec()
    data = build_compact(spec, encode_packed(spec, np.array([[0.0, 1.5, 1e-3]])))
    assert data == bytes.fromhex("c10225")
    assert (GOLDEN / "f3b2-compact.bin").read_bytes() == data
    sums = dict(reversed(line.split()) for line in (GOLDEN / "SHA256SUMS").read_text().splitlines())
    assert hashlib.sha256(data).hexdigest() == sums["f3b2-compact.bin"]


def test_compact_refuses_more_than_one_sample():
    spec = f3b2_spec()
    packed = encode_packed(spec, np.zeros((2, 3)))
    for frame in ("compact", "none"):
        with pytest.raises(DataError, match="exactly one sample, got 2 rows"):
            build_frame(spec, packed, frame)


def _refusals(spec: EncoderSpec) -> list[tuple[bytes, str, str]]:
    good = build_compact(spec, encode_packed(spec, np.zeros((1, spec.n_features))))
    other = bytes([(good[1] + 1) % 256])
    return [
        (bytes([0xC2]) + good[1:], "auto", "unsupported compact frame version 2"),
        (bytes([0xC1]), "auto", "truncated compact frame: 1 bytes"),
        (good[:1] + other + good[2:], "auto", "model tag mismatch: compact frame is for a model with tag"),
        (good + b"\x00", "auto", f"length mismatch: a compact frame of model {spec.model_id} is 2 + "),
        (good[:-1], "auto", "length mismatch"),
        (good[:-1] + b"\xff", "auto", "nonzero padding bits in sample 0"),
        ((GOLDEN / "f3b2.bin").read_bytes(), "compact", "not a compact frame: it starts with 0x53"),
        (good + bytes(16), "full", "bad magic"),
        (good[2:] + b"\x00", "none", f"length mismatch: a bare sample of model {spec.model_id} is 1 bytes"),
        (b"\xff", "none", "nonzero padding bits in sample 0"),
    ]


@pytest.mark.parametrize("case", range(10))
def test_compact_refusals_name_the_problem(case):
    spec = f3b2_spec()
    data, frame, message = _refusals(spec)[case]
    with pytest.raises(PayloadError, match=f"^{message}".replace("(", r"\(").replace("+", r"\+")):
        parse_payload(spec, data, frame=frame)


def test_fuzzed_compact_bodies_are_refused_or_decoded():
    spec = cpu_act_spec()
    rng = np.random.default_rng(3)
    for _ in range(3000):
        n = int(rng.integers(0, 12))
        data = bytes(rng.integers(0, 256, n, dtype=np.uint8))
        data = bytes([0xC0 | int(rng.integers(0, 3))]) + data[1:] if n and rng.random() < 0.8 else data
        if n > 1 and rng.random() < 0.5:
            data = data[:1] + spec.model_id_bytes[:1] + data[2:]
        try:
            codes = parse_payload(spec, data)
        except PayloadError:
            continue
        assert codes.shape[1] == 21 and (len(data) == 8 or data[:2] == b"SB")


# ---- generated C -------------------------------------------------------------------------------

COMPACT_HARNESS = r"""
#include <stdio.h>
#include "softbits_encoder.h"

/* stdin: float32 samples; stdout: SOFTBITS_COMPACT_BYTES per sample */
int main(void)
{
    float x[SOFTBITS_N_FEATURES];
    uint8_t out[SOFTBITS_COMPACT_BYTES];
    fprintf(stderr, "%d %d %d\n", SOFTBITS_PAYLOAD_BYTES, SOFTBITS_COMPACT_BYTES, SOFTBITS_MODEL_TAG);
    while (fread(x, sizeof x[0], SOFTBITS_N_FEATURES, stdin) == SOFTBITS_N_FEATURES) {
        softbits_encode_compact(x, out);
        fwrite(out, 1, sizeof out, stdout);
    }
    return 0;
}
"""


@needs_gcc
@pytest.mark.parametrize("n_features, bits", [(21, 2), (3, 3), (8, 4), (2, 11)])
def test_c_compact_frame_matches_python(tmp_path, n_features, bits):
    from softbits.device.cgen import C_SOURCE_NAME, write_c

    rng = np.random.default_rng(n_features + 7 * bits)
    spec = _special_spec(rng, n_features, bits)
    write_c(spec, tmp_path)
    (tmp_path / "main.c").write_text(COMPACT_HARNESS)
    exe = tmp_path / "enc"
    build = subprocess.run(["gcc", *STRICT, "-O2", "-I", str(tmp_path), str(tmp_path / "main.c"),
                            str(tmp_path / C_SOURCE_NAME), "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    X = _inputs(rng, spec, 20_000)
    r = subprocess.run([str(exe)], input=X.tobytes(), capture_output=True, check=True)
    assert r.stderr.decode().split() == [str(spec.sample_bytes), str(spec.sample_bytes + 2),
                                         str(spec.model_id_bytes[0])]
    expected = b"".join(build_compact(spec, row) for row in encode_packed(spec, X))
    assert r.stdout == expected


# ---- CLI and a real server ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory, diabetes_models):
    d = tmp_path_factory.mktemp("compact")
    frame = diabetes_models(d, ("bw-sq",), seed=4, n_rows=6)
    frame.head(1).to_csv(d / "one.csv", index=False)
    from softbits.training.trained_model import TrainedModel

    model = TrainedModel.load(d / "bw-sq.safetensors")
    spec = EncoderSpec.from_model(model)
    X = frame[list(spec.feature_names)].to_numpy()
    # one prediction per row, each row its own batch of one, as the server sees single samples
    expected = [float(model.predict_codes(encode(spec, X[i:i + 1]))[0]) for i in range(len(X))]
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    proc, urls = start_server(d / "bw-sq.safetensors", env)
    yield {"dir": d, "urls": urls, "spec": spec, "X": X, "expected": expected}
    stop_server(proc)


def _http(url: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _coap(requests: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    import aiocoap

    async def exchange() -> list[tuple[str, bytes]]:
        ctx = await aiocoap.Context.create_client_context()
        try:
            out = []
            for uri, data in requests:
                reply = await ctx.request(aiocoap.Message(code=aiocoap.POST, uri=uri, payload=data)).response
                out.append((reply.code.dotted, reply.payload))
            return out
        finally:
            await ctx.shutdown()

    return asyncio.run(exchange())


def _frames(served, i: int) -> tuple[bytes, bytes]:
    spec = served["spec"]
    packed = encode_packed(spec, served["X"][i:i + 1])
    return build_compact(spec, packed), packed.tobytes()


def test_http_answers_compact_and_bare_samples(served):
    spec, http = served["spec"], served["urls"]["http"]
    for i in range(3):
        compact, bare = _frames(served, i)
        assert _http(http, compact) == (200, {"model_id": spec.model_id, "n_samples": 1,
                                              "predictions": [served["expected"][i]]})
        assert _http(f"{http}/{spec.model_id}", bare)[1]["predictions"] == [served["expected"][i]]


def test_coap_answers_compact_and_bare_samples(served):
    spec, coap = served["spec"], served["urls"]["coap"]
    compact, bare = _frames(served, 2)
    replies = _coap([(coap, compact), (f"{coap}/{spec.model_id}", bare)])
    for code, payload in replies:
        assert code == "2.05" and json.loads(payload)["predictions"] == [served["expected"][2]]


def test_mismatches_answer_4xx_and_the_server_keeps_serving(served):
    spec, http, coap = served["spec"], served["urls"]["http"], served["urls"]["coap"]
    compact, bare = _frames(served, 0)
    wrong_tag = compact[:1] + bytes([compact[1] ^ 0xFF]) + compact[2:]
    wrong_id = "0" * 16 if spec.model_id != "0" * 16 else "1" * 16
    status, body = _http(f"{http}/{wrong_id}", bare)
    assert status == 404 and body["error"] == f"no model {wrong_id} here: this server has {spec.model_id}"
    assert _http(f"{http}/not-hex", bare)[0] == 404
    assert _http(http, wrong_tag)[0] == 400 and "model tag mismatch" in _http(http, wrong_tag)[1]["error"]
    assert _http(f"{http}/{spec.model_id}", bare + b"\x00")[0] == 400
    assert _http(f"{http}/{spec.model_id}", compact)[0] == 400  # a route body is the bare sample only
    replies = _coap([(f"{coap}/{wrong_id}", bare), (f"{coap}/{spec.model_id}/extra", bare),
                     (coap, wrong_tag), (f"{coap}/{spec.model_id}", bare[:-1]), (coap, compact)])
    assert [code for code, _ in replies] == ["4.04", "4.04", "4.00", "4.00", "2.05"]
    assert replies[0][1].decode() == f"no model {wrong_id} here: this server has {spec.model_id}"
    assert "model tag mismatch" in replies[2][1].decode()
    assert _http(http, encode_payload(spec, served["X"]))[1]["predictions"][0] == pytest.approx(served["expected"][0])


@pytest.mark.parametrize("to, frame", [("coap", "compact"), ("http", "compact"), ("coap", "none"), ("http", "none")])
def test_send_single_sample_frames(served, capsys, to, frame):
    code, out, err = run_main(capsys, "send", served["dir"] / "bw-sq.safetensors", "--input",
                              served["dir"] / "rows.csv", "--to", served["urls"][to], "--frame", frame)
    assert code == 0, err
    assert [float(v) for v in out.split()] == served["expected"]


def test_send_compact_refuses_a_batch_size(served, capsys):
    code, out, err = run_main(capsys, "send", served["dir"] / "bw-sq.safetensors", "--input",
                              served["dir"] / "rows.csv", "--to", served["urls"]["http"], "--frame", "compact",
                              "--batch", "4")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--batch" in err


def test_encode_and_predict_frames(served, capsys, tmp_path):
    d, spec = served["dir"], served["spec"]
    model = d / "bw-sq.safetensors"
    compact, bare = _frames(served, 0)
    assert run_main(capsys, "encode", model, "--input", d / "one.csv", "--out", tmp_path / "c.bin",
                    "--frame", "compact")[0] == 0
    assert (tmp_path / "c.bin").read_bytes() == compact and len(compact) == 2 + spec.sample_bytes
    assert run_main(capsys, "encode", model, "--input", d / "one.csv", "--out", tmp_path / "n.bin",
                    "--frame", "none")[0] == 0
    assert (tmp_path / "n.bin").read_bytes() == bare
    for path, extra in ((tmp_path / "c.bin", ()), (tmp_path / "c.bin", ("--frame", "compact")),
                        (tmp_path / "n.bin", ("--frame", "none"))):
        code, out, err = run_main(capsys, "predict", model, "--payload", path, *extra)
        assert code == 0, err
        assert [float(v) for v in out.split()] == served["expected"][:1]
    code, out, err = run_main(capsys, "predict", model, "--payload", tmp_path / "c.bin", "--frame", "full")
    assert code == 2 and "truncated header: payload has 6 bytes" in err


def test_encode_compact_refuses_several_rows(served, capsys, tmp_path):
    d = served["dir"]
    code, out, err = run_main(capsys, "encode", d / "bw-sq.safetensors", "--input", d / "rows.csv",
                              "--out", tmp_path / "c.bin", "--frame", "compact")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "exactly one sample, got 6 rows" in err and not (tmp_path / "c.bin").exists()
    code, out, err = run_main(capsys, "encode", d / "bw-sq.safetensors", "--input", d / "rows.csv",
                              "--out", tmp_path / "c.bin", "--frame", "tiny")
    assert code == 2 and "--frame must be full, compact or none" in err


def test_cpu_act_model_compact_frame_is_eight_bytes(data_dir, capsys, tmp_path):
    """A real cpu_act model at 2 bits: ``encode --frame compact`` writes 8 bytes, full 22."""
    from softbits import TrainConfig, load_dataset, train_dataset

    ds = load_dataset("cpu_act")
    cfg = TrainConfig(method="bw-sq", bits=2, layers=1, neurons=4, epochs=1, lr=0.05, device="cpu", seed=1)
    train_dataset(ds, cfg).save(tmp_path / "cpu.safetensors")
    pd.DataFrame(ds.X[:1], columns=ds.feature_names).to_csv(tmp_path / "one.csv", index=False)
    sizes = {}
    for frame in ("full", "compact"):
        code, _, err = run_main(capsys, "encode", tmp_path / "cpu.safetensors", "--input", tmp_path / "one.csv",
                                "--out", tmp_path / f"{frame}.bin", "--frame", frame)
        assert code == 0, err
        sizes[frame] = (tmp_path / f"{frame}.bin").stat().st_size
    assert len(ds.feature_names) == 21 and sizes == {"full": 22, "compact": 8}


def test_named_route_and_frame_option():
    from softbits.device.commands import frame_option
    from softbits.errors import ConfigError
    from softbits.serve.commands import named_route

    mid = "024a98f4bf2c331d"
    assert named_route("coap://127.0.0.1:5683/predict", mid) == f"coap://127.0.0.1:5683/predict/{mid}"
    assert named_route("http://h:8000/v1/predict/", mid) == f"http://h:8000/v1/predict/{mid}"
    assert named_route(f"http://h:8000/v1/predict/{mid}", mid) == f"http://h:8000/v1/predict/{mid}"
    assert frame_option(" Compact ") == "compact" and frame_option("auto", auto=True) == "auto"
    with pytest.raises(ConfigError, match="^--frame must be full, compact or none, got 'auto'$"):
        frame_option("auto")
    with pytest.raises(ConfigError, match="^--frame must be auto, full, compact or none, got 'x'$"):
        frame_option("x", auto=True)


@pytest.mark.skipif(shutil.which("coap-client-notls") is None,
                    reason="coap-client-notls is not installed (Debian package libcoap3-bin)")
def test_foreign_coap_client_sends_single_samples(served, tmp_path):
    spec, coap = served["spec"], served["urls"]["coap"]
    compact, bare = _frames(served, 1)
    (tmp_path / "c.bin").write_bytes(compact)
    (tmp_path / "n.bin").write_bytes(bare)
    for path, url in ((tmp_path / "c.bin", coap), (tmp_path / "n.bin", f"{coap}/{spec.model_id}")):
        r = subprocess.run(["coap-client-notls", "-m", "put", "-f", str(path), url],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout.strip().splitlines()[-1])["predictions"] == [served["expected"][1]]
