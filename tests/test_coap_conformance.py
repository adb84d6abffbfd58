"""CoAP conformance and log bounds of a real ``softbits serve`` (issue 19, items 2 and 10):
raw datagrams from a plain UDP socket. A non-UTF-8 Uri-Path is dropped without a traceback
and a flood of them leaves at most a few short log lines; an unknown critical option is
answered 4.02 Bad Option; a reserved token length (9..15) is a format error, not a request."""

from __future__ import annotations

import os
import socket
import struct
from urllib.parse import urlsplit

import pytest

from conftest import start_server, stop_server

pytest.importorskip("aiocoap")

BAD_OPTION = 0x82  # 4.02
CONTENT = 0x45  # 2.05


@pytest.fixture(scope="module")
def server(tmp_path_factory, diabetes_models):
    d = tmp_path_factory.mktemp("coap")
    diabetes_models(d, ("bw-sq",), seed=1, n_rows=4)
    proc, urls = start_server(d / "bw-sq.safetensors", dict(os.environ, NO_COLOR="1"))
    parts = urlsplit(urls["coap"])
    yield proc, (parts.hostname, parts.port)
    stop_server(proc)


def _option(delta: int, value: bytes) -> bytes:
    """One option: delta and length with their extended forms (RFC 7252 §3.1)."""
    def nibble(n: int) -> tuple[int, bytes]:
        if n < 13:
            return n, b""
        if n < 269:
            return 13, bytes([n - 13])
        return 14, struct.pack("!H", n - 269)
    d, d_ext = nibble(delta)
    n, n_ext = nibble(len(value))
    return bytes([(d << 4) | n]) + d_ext + n_ext + value


def _request(mid: int, options: list[tuple[int, bytes]], token: bytes = b"\x01", payload: bytes = b"") -> bytes:
    header = bytes([0x40 | len(token), 0x02]) + struct.pack("!H", mid) + token  # CON POST
    body, last = b"", 0
    for number, value in sorted(options):
        body += _option(number - last, value)
        last = number
    return header + body + (b"\xff" + payload if payload else b"")


def _exchange(address, datagram: bytes, timeout: float = 3.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(datagram, address)
        try:
            return sock.recv(4096)
        except TimeoutError:
            return None


def test_unknown_critical_option_is_bad_option(server):
    _, address = server
    reply = _exchange(address, _request(1, [(11, b"predict"), (65001, b"\x01")], payload=b"\x00"))
    assert reply is not None and reply[1] == BAD_OPTION, reply
    assert b"65001" in reply


def test_an_elective_unknown_option_is_ignored(server):
    _, address = server
    reply = _exchange(address, _request(2, [(11, b"predict"), (65000, b"\x01")], payload=b"\x00"))
    assert reply is not None and reply[1] != BAD_OPTION, reply  # 4.00 for the bad payload, not 4.02


@pytest.mark.parametrize("length", [9, 15])
def test_reserved_token_lengths_are_a_format_error(server, length):
    _, address = server
    reply = _exchange(address, _request(3 + length, [(11, b"predict")], token=bytes(length), payload=b"\x00"),
                      timeout=1.5)
    assert reply is None or reply[1] == 0 or (reply[0] >> 4) & 3 == 3, reply  # nothing, or a Reset


def test_non_utf8_uri_paths_leave_a_bounded_log_and_a_live_server(server):
    proc, address = server
    for mid in range(100):
        _exchange(address, _request(100 + mid, [(11, b"\xff\xfe")]), timeout=0.05)
    reply = _exchange(address, _request(999, [(11, b"predict"), (65001, b"\x01")], payload=b"\x00"))
    assert reply is not None and reply[1] == BAD_OPTION  # still serving
    stop_server(proc)
    log = proc.stderr.read()
    assert "Traceback" not in log and "UnicodeDecodeError" not in log, log[-2000:]
    assert len(log.encode()) < 2000, log[-2000:]
