"""Property test against a running server: ≥ 10k random and mutated payloads over HTTP and a
share over CoAP. Every answer is 200/400/413 (2.05/4.00/4.13), never 5xx; the process survives
and its resident memory stays flat."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import start_server

from softbits.config import TrainConfig
from softbits.data import load_dataset
from softbits.device.spec import EncoderSpec
from softbits.device.wire import HEADER, build_payload, encode_payload
from softbits.pipeline import train_dataset

MAX_PAYLOAD = 2048
HTTP_EXAMPLES = 10_000
COAP_EXAMPLES = 1_000
RSS_GROWTH_LIMIT_KIB = 40 * 1024


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    ds = load_dataset("diabetes")
    cfg = TrainConfig(method="bw-sq", bits=3, layers=1, neurons=8, epochs=1, device="cpu", seed=4)
    model = train_dataset(ds, cfg)
    model.save(d / "m.safetensors")
    proc, urls = start_server(d / "m.safetensors", dict(os.environ, NO_COLOR="1"),
                              "--max-payload", str(MAX_PAYLOAD))
    spec = EncoderSpec.from_model(model)
    yield {"proc": proc, "urls": urls, "spec": spec, "good": encode_payload(spec, ds.X[:30])}
    proc.terminate()
    proc.wait(timeout=20)


def payloads(spec: EncoderSpec, good: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, valid payloads, and valid payloads with flipped, cut, grown or rewritten parts."""
    valid = st.builds(
        lambda n, seed: build_payload(spec, np.random.default_rng(seed).integers(
            0, 256, (n, spec.sample_bytes), dtype=np.uint8) & _pad_mask(spec)),
        st.integers(1, 40), st.integers(0, 2**32 - 1))
    flipped = st.builds(lambda d, i, b: d[: i % len(d)] + bytes([b]) + d[i % len(d) + 1:],
                        valid, st.integers(0, 10_000), st.integers(0, 255))
    cut = st.builds(lambda d, k: d[: k % (len(d) + 1)], valid, st.integers(0, 10_000))
    grown = st.builds(lambda d, extra: d + extra, valid, st.binary(min_size=1, max_size=64))
    header = st.builds(
        lambda magic, version, bits, nf, mid, count, body: HEADER.pack(magic, version, bits, nf, mid, count) + body,
        st.sampled_from([b"SB", b"SC", b"\x00\x00"]), st.sampled_from([1, 0, 2, 255]),
        st.sampled_from([spec.bits, 0, 8, 17]), st.sampled_from([spec.n_features, 0, 65535]),
        st.sampled_from([spec.model_id_bytes, b"\x00" * 8]), st.integers(0, 65535),
        st.binary(max_size=200))
    oversized = st.builds(lambda d, k: d + b"\x00" * k, st.just(good), st.integers(MAX_PAYLOAD, MAX_PAYLOAD + 100))
    return st.one_of(st.binary(max_size=300), valid, flipped, cut, grown, header, oversized)


def _pad_mask(spec: EncoderSpec) -> np.ndarray:
    mask = np.full(spec.sample_bytes, 0xFF, dtype=np.uint8)
    used = spec.n_features * spec.bits % 8
    if used:
        mask[-1] = (1 << used) - 1
    return mask


def _expected_count(spec: EncoderSpec, data: bytes) -> int | None:
    """Samples a valid payload holds, or None when the server must refuse it."""
    if len(data) < HEADER.size or len(data) > MAX_PAYLOAD:
        return None
    magic, version, bits, nf, mid, count = HEADER.unpack_from(data)
    ok = (magic, version, bits, nf, mid) == (b"SB", 1, spec.bits, spec.n_features, spec.model_id_bytes)
    if not ok or count == 0 or len(data) != HEADER.size + count * spec.sample_bytes:
        return None
    body = np.frombuffer(data, np.uint8, offset=HEADER.size).reshape(count, spec.sample_bytes)
    return count if not (body & ~_pad_mask(spec)).any() else None


def test_random_and_mutated_payloads(server):
    import httpx

    spec, url, pid = server["spec"], server["urls"]["http"], server["proc"].pid
    seen = {"n": 0, "statuses": set()}
    # TCP_NODELAY: httpx writes headers and body separately; without it Nagle's algorithm and
    # delayed ACKs add ~40 ms per request on loopback
    nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with httpx.Client(timeout=30, transport=nodelay) as client:
        for _ in range(300):  # warm up allocators and caches before the memory baseline
            client.post(url, content=server["good"])
        rss_before = _rss_kib(pid)

        @settings(max_examples=HTTP_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(data=payloads(spec, server["good"]))
        def over_http(data: bytes) -> None:
            r = client.post(url, content=data, headers={"content-type": "application/octet-stream"})
            seen["n"] += 1
            seen["statuses"].add(r.status_code)
            want = _expected_count(spec, data)
            if want is None:
                assert r.status_code in (400, 413), (r.status_code, data[:32])
                assert r.json()["error"]
            else:
                assert r.status_code == 200, r.text
                assert len(r.json()["predictions"]) == want

        over_http()
        rss_after = _rss_kib(pid)
        assert client.get(url.rsplit("/v1/", 1)[0] + "/healthz").status_code == 200
    assert seen["n"] >= HTTP_EXAMPLES and {200, 400, 413} <= seen["statuses"]
    assert server["proc"].poll() is None
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_KIB, (rss_before, rss_after)


def test_random_and_mutated_payloads_over_coap(server):
    import aiocoap

    spec, url = server["spec"], server["urls"]["coap"]
    loop = asyncio.new_event_loop()
    ctx = loop.run_until_complete(aiocoap.Context.create_client_context())
    seen = {"n": 0}
    try:
        @settings(max_examples=COAP_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(data=payloads(spec, server["good"]), put=st.booleans())
        def over_coap(data: bytes, put: bool) -> None:
            msg = aiocoap.Message(code=aiocoap.PUT if put else aiocoap.POST, uri=url, payload=data)
            reply = loop.run_until_complete(ctx.request(msg).response)
            seen["n"] += 1
            want = _expected_count(spec, data)
            if want is None:
                assert reply.code in (aiocoap.BAD_REQUEST, aiocoap.REQUEST_ENTITY_TOO_LARGE), reply
                assert reply.payload
            else:
                assert reply.code == aiocoap.CONTENT
                assert len(json.loads(reply.payload)["predictions"]) == want

        over_coap()
    finally:
        loop.run_until_complete(ctx.shutdown())
        loop.close()
    assert seen["n"] >= COAP_EXAMPLES
    assert server["proc"].poll() is None


def test_expected_count_oracle_is_sound(server):
    """The oracle above agrees with the wire module on a few hand-made cases."""
    spec, good = server["spec"], server["good"]
    assert _expected_count(spec, good) == 30
    assert _expected_count(spec, good[:-1]) is None
    assert _expected_count(spec, good[:14] + struct.pack("<H", 29) + good[16:]) is None
