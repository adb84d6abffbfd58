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
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softbits.data import load_dataset
from softbits.device.spec import EncoderSpec
from softbits.device.wire import COMPACT_TAG, HEADER, build_compact, build_payload, encode_payload
from softbits.training.config import TrainConfig
from softbits.training.train import train_dataset

from conftest import pad_mask, start_server

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
    """Random bytes, valid payloads and compact frames, and those with flipped, cut, grown or
    rewritten parts."""
    full = st.builds(
        lambda n, seed: build_payload(spec, np.random.default_rng(seed).integers(
            0, 256, (n, spec.sample_bytes), dtype=np.uint8) & pad_mask(spec)),
        st.integers(1, 40), st.integers(0, 2**32 - 1))
    compact = st.builds(
        lambda seed: build_compact(spec, np.random.default_rng(seed).integers(
            0, 256, spec.sample_bytes, dtype=np.uint8) & pad_mask(spec)),
        st.integers(0, 2**32 - 1))
    valid = st.one_of(full, compact)
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


def _expected_count(spec: EncoderSpec, data: bytes) -> int | None:
    """Samples a valid payload holds, or None when the server must refuse it."""
    if data[:1] and data[0] & 0xF0 == 0xC0:  # the compact profile: tag, model tag, one sample
        if data[:2] != bytes((COMPACT_TAG, spec.model_id_bytes[0])) or len(data) != 2 + spec.sample_bytes:
            return None
        return None if (np.frombuffer(data, np.uint8, offset=2) & ~pad_mask(spec)).any() else 1
    if len(data) < HEADER.size or len(data) > MAX_PAYLOAD:
        return None
    magic, version, bits, nf, mid, count = HEADER.unpack_from(data)
    ok = (magic, version, bits, nf, mid) == (b"SB", 1, spec.bits, spec.n_features, spec.model_id_bytes)
    if not ok or count == 0 or len(data) != HEADER.size + count * spec.sample_bytes:
        return None
    body = np.frombuffer(data, np.uint8, offset=HEADER.size).reshape(count, spec.sample_bytes)
    return count if not (body & ~pad_mask(spec)).any() else None


@pytest.mark.slow
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
    compact = build_compact(spec, np.frombuffer(good, np.uint8, spec.sample_bytes, 16))
    assert _expected_count(spec, compact) == 1
    assert _expected_count(spec, compact[:-1]) is None
    assert _expected_count(spec, compact[:1] + bytes([compact[1] ^ 1]) + compact[2:]) is None


# --- CoAP Block1 (RFC 7959) uploads, block by block -------------------------------------------

BLOCK1_EXAMPLES = 120


async def _send_block(ctx, url: str, data: bytes, szx: int, number: int, size1: int | None,
                      query: str = "") -> Any:
    """Block ``number`` of ``data`` in blocks of 2**(szx+4) bytes, as one raw request."""
    import aiocoap

    size = 1 << (szx + 4)
    chunk = data[number * size:(number + 1) * size]
    more = (number + 1) * size < len(data)
    msg = aiocoap.Message(code=aiocoap.POST, uri=url + query, payload=chunk, block1=(number, more, szx))
    if size1 is not None and number == 0:
        msg.opt.size1 = size1
    return await ctx.request(msg, handle_blockwise=False).response


def _expected_block1_codes(spec: EncoderSpec, data: bytes, szx: int, size1: int | None) -> list:
    """Reply codes, block by block: 2.31 while the bytes received (and the announced size) stay
    within the limit, 4.13 at the first block that would exceed it, else the final answer."""
    import aiocoap

    if size1 is not None and size1 > MAX_PAYLOAD:
        return [aiocoap.REQUEST_ENTITY_TOO_LARGE]
    size, codes = 1 << (szx + 4), []
    n_blocks = max(1, -(-len(data) // size))
    for number in range(n_blocks):
        end = min((number + 1) * size, len(data))
        if end > MAX_PAYLOAD:
            return codes + [aiocoap.REQUEST_ENTITY_TOO_LARGE]
        if number + 1 < n_blocks:
            codes.append(aiocoap.CONTINUE)
    final = aiocoap.CONTENT if _expected_count(spec, data) is not None else aiocoap.BAD_REQUEST
    return codes + [final]


def block1_uploads(spec: EncoderSpec) -> st.SearchStrategy[tuple[bytes, int, int | None]]:
    """(data, szx, Size1): valid payloads and random bytes of lengths around the limit, block
    sizes 16..1024, Size1 absent, true, or a lie either way."""
    per_sample = spec.sample_bytes
    near = st.integers(MAX_PAYLOAD - 3 * per_sample, MAX_PAYLOAD + 1100)
    valid = st.builds(lambda n, seed: build_payload(spec, np.random.default_rng(seed).integers(
        0, 256, (n, per_sample), dtype=np.uint8) & pad_mask(spec)),
        st.integers(1, (MAX_PAYLOAD + 1100 - HEADER.size) // per_sample), st.integers(0, 2**32 - 1))
    raw = st.builds(lambda n, seed: np.random.default_rng(seed).bytes(n),
                    st.one_of(near, st.integers(1, MAX_PAYLOAD + 1100)), st.integers(0, 2**32 - 1))
    data = st.one_of(valid, raw)

    def with_size1(d: bytes, mode: str, szx: int) -> tuple[bytes, int, int | None]:
        size1 = {"none": None, "true": len(d), "small": min(len(d), 16), "over": MAX_PAYLOAD + 1,
                 "at": MAX_PAYLOAD}[mode]
        return d, szx, size1

    return st.builds(with_size1, data, st.sampled_from(["none", "true", "small", "over", "at"]),
                     st.integers(2, 6))


def test_coap_block1_uploads_are_refused_as_soon_as_they_exceed_the_limit(server):
    """No 2.31 Continue for a block beyond --max-payload: 4.13 (with Size1 = the limit) comes at
    the first block that crosses it, or at block 0 when Size1 announces too much."""
    import aiocoap

    spec, url = server["spec"], server["urls"]["coap"]
    loop = asyncio.new_event_loop()
    ctx = loop.run_until_complete(aiocoap.Context.create_client_context())
    try:
        @settings(max_examples=BLOCK1_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(upload=block1_uploads(spec))
        def upload_blockwise(upload: tuple[bytes, int, int | None]) -> None:
            data, szx, size1 = upload
            want = _expected_block1_codes(spec, data, szx, size1)
            got = []
            for number in range(len(want)):
                reply = loop.run_until_complete(_send_block(ctx, url, data, szx, number, size1))
                got.append(reply.code)
                if reply.code != aiocoap.CONTINUE:
                    break
                assert reply.opt.block1 is not None and reply.opt.block1.block_number == number
            assert got == want, (len(data), szx, size1)
            if got[-1] == aiocoap.REQUEST_ENTITY_TOO_LARGE:
                assert reply.opt.size1 == MAX_PAYLOAD
                assert f"exceeds the limit of {MAX_PAYLOAD} bytes" in reply.payload.decode()
            elif got[-1] == aiocoap.CONTENT and reply.opt.block2 is None:  # long replies: Block2,
                # fetched by aiocoap's own client in test_random_and_mutated_payloads_over_coap
                assert len(json.loads(reply.payload)["predictions"]) == _expected_count(spec, data)

        upload_blockwise()
    finally:
        loop.run_until_complete(ctx.shutdown())
        loop.close()
    assert server["proc"].poll() is None


def test_coap_block1_assemblies_are_bounded(server):
    """At most MAX_UPLOADS unfinished Block1 uploads: one more gets 5.03; finishing one frees
    its place."""
    import aiocoap

    from softbits.serve.coap import MAX_UPLOADS

    url, good = server["urls"]["coap"], server["good"]
    data = good + bytes(1024 - len(good) % 1024)  # whole 64-byte blocks; the final answer is 4.00

    async def exchange() -> None:
        ctx = await aiocoap.Context.create_client_context()
        try:
            started = [await _send_block(ctx, url, data, 2, 0, None, f"?u={i}") for i in range(MAX_UPLOADS)]
            assert all(r.code == aiocoap.CONTINUE for r in started)
            extra = await _send_block(ctx, url, data, 2, 0, None, "?u=extra")
            assert extra.code == aiocoap.SERVICE_UNAVAILABLE and extra.payload
            for number in range(1, len(data) // 64):
                last = await _send_block(ctx, url, data, 2, number, None, "?u=0")
            assert last.code == aiocoap.BAD_REQUEST
            again = await _send_block(ctx, url, data, 2, 0, None, "?u=extra")
            assert again.code == aiocoap.CONTINUE
            for i in [*range(1, MAX_UPLOADS), "extra"]:  # leave nothing behind for the other tests
                for number in range(1, len(data) // 64):
                    await _send_block(ctx, url, data, 2, number, None, f"?u={i}")
        finally:
            await ctx.shutdown()

    asyncio.run(exchange())
    assert server["proc"].poll() is None


def test_concurrent_coap_block1_uploads_do_not_mix(server):
    """Interleaved uploads (valid, corrupt, oversized) each get their own answer."""
    import aiocoap

    spec, url = server["spec"], server["urls"]["coap"]
    loop = asyncio.new_event_loop()
    ctx = loop.run_until_complete(aiocoap.Context.create_client_context())
    try:
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(uploads=st.lists(block1_uploads(spec), min_size=2, max_size=6), order=st.randoms())
        def interleaved(uploads: list[tuple[bytes, int, int | None]], order) -> None:
            want = [_expected_block1_codes(spec, *u) for u in uploads]
            got: list[list] = [[] for _ in uploads]
            pending = [i for i, w in enumerate(want) for _ in w]
            order.shuffle(pending)
            # keep each upload's blocks in order while the uploads interleave
            for i in pending:
                data, szx, size1 = uploads[i]
                reply = loop.run_until_complete(
                    _send_block(ctx, url, data, szx, len(got[i]), size1, f"?u={i}"))
                got[i].append(reply.code)
            assert got == want

        interleaved()
    finally:
        loop.run_until_complete(ctx.shutdown())
        loop.close()


def test_coap_block1_upload_with_block2_reply(server):
    """The largest valid payload goes up block-wise and its long reply comes back block-wise."""
    import aiocoap

    spec, url = server["spec"], server["urls"]["coap"]
    n = (MAX_PAYLOAD - HEADER.size) // spec.sample_bytes
    data = build_payload(spec, np.zeros((n, spec.sample_bytes), np.uint8))

    async def exchange() -> aiocoap.Message:
        ctx = await aiocoap.Context.create_client_context()
        try:
            return await ctx.request(aiocoap.Message(code=aiocoap.PUT, uri=url, payload=data)).response
        finally:
            await ctx.shutdown()

    reply = asyncio.run(exchange())
    assert reply.code == aiocoap.CONTENT and len(reply.payload) > 1024
    assert len(json.loads(reply.payload)["predictions"]) == n
