"""The client side of ``softbits send``: post payloads over HTTP or CoAP, collect predictions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from softbits.errors import ConfigError, SoftbitsError

__all__ = ["send_payloads"]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode(body: bytes, where: str) -> list[Any]:
    """Strict JSON: a ``NaN`` or ``Infinity`` from a foreign server is refused, not printed."""
    try:
        return list(json.loads(body, parse_constant=_refuse_constant)["predictions"])
    except (ValueError, KeyError, TypeError):
        raise SoftbitsError(f"{where} answered something that is not a predictions object") from None


def _send_http(url: str, payloads: Iterable[bytes], timeout: float) -> list[Any]:
    import socket

    import httpx

    out: list[Any] = []
    # headers and body leave in two writes; without TCP_NODELAY, Nagle + delayed ACK cost ~40 ms
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with httpx.Client(timeout=timeout, transport=transport) as client:
        for data in payloads:
            try:
                r = client.post(url, content=data, headers={"content-type": "application/octet-stream"})
            except httpx.HTTPError as exc:
                raise SoftbitsError(f"cannot reach {url}: {exc}") from None
            if r.status_code != 200:
                try:
                    message = r.json()["error"]
                except (ValueError, KeyError, TypeError):
                    message = r.text.strip()
                raise SoftbitsError(f"{url} answered {r.status_code}: {message}")
            out += _decode(r.content, url)
    return out


async def _send_coap_async(url: str, payloads: Iterable[bytes], verb: str, timeout: float) -> list[Any]:
    import asyncio

    import aiocoap

    code = aiocoap.PUT if verb == "put" else aiocoap.POST
    out: list[Any] = []
    ctx = await aiocoap.Context.create_client_context()
    try:
        for data in payloads:
            request = aiocoap.Message(code=code, uri=url, payload=data, content_format=42)
            try:
                reply = await asyncio.wait_for(ctx.request(request).response, timeout)
            except (aiocoap.error.Error, OSError, asyncio.TimeoutError) as exc:
                raise SoftbitsError(f"cannot reach {url}: {exc or type(exc).__name__}") from None
            if not reply.code.is_successful():
                raise SoftbitsError(f"{url} answered {reply.code.dotted}: "
                                    f"{reply.payload.decode('utf-8', 'replace').strip()}")
            out += _decode(reply.payload, url)
    finally:
        await ctx.shutdown()
    return out


def send_payloads(url: str, payloads: list[bytes], verb: str = "post", timeout: float = 30.0) -> list[Any]:
    """Send each payload to ``url`` (http://, https:// or coap://) and concatenate the predictions."""
    scheme = urlsplit(url).scheme.lower()
    if verb not in ("post", "put"):
        raise ConfigError(f"--verb must be post or put, got {verb!r}")
    if scheme in ("http", "https"):
        if verb != "post":
            raise ConfigError("HTTP /v1/predict takes POST only")
        return _send_http(url, payloads, timeout)
    if scheme == "coap":
        import asyncio

        return asyncio.run(_send_coap_async(url, payloads, verb, timeout))
    raise ConfigError(f"--to must be a coap:// or http:// URL, got {url!r}")
