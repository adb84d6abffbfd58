"""Run the HTTP and CoAP servers in one process and one asyncio event loop.

Both transports share one :class:`~softbits.serve.service.PredictionService`; requests are
answered on the loop thread (a batch is a small MLP forward pass, cheaper than a thread hop).
SIGINT/SIGTERM stop both servers cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from softbits.errors import SoftbitsError

if TYPE_CHECKING:
    from softbits.serve.service import PredictionService

__all__ = ["Address", "parse_address", "run_servers", "serve"]

Address = tuple[str, int]


def parse_address(text: str, default_port: int) -> Address:
    """``HOST:PORT``, ``HOST`` or ``:PORT`` (IPv6 as ``[::1]:PORT``) → (host, port)."""
    host, port = text.strip(), default_port
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise SoftbitsError(f"bad address {text!r}: missing ']'")
        rest, host = host[end + 1:], host[1:end]
        if rest:
            if not rest.startswith(":"):
                raise SoftbitsError(f"bad address {text!r}")
            port = _port(rest[1:], text)
    elif host.count(":") == 1:
        host, p = host.split(":")
        port = _port(p, text)
    return host or "127.0.0.1", port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise SoftbitsError(f"bad port in {whole!r}: give a number 0..65535")
    return int(text)


@contextlib.contextmanager
def _stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> Iterator[None]:
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _bind_tcp(address: Address) -> socket.socket:
    """Bind here rather than in uvicorn, whose bind failure exits the process."""
    sock = None
    try:
        family = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)[0][0]
        # proto IPPROTO_TCP: asyncio then sets TCP_NODELAY on accepted connections (without it,
        # Nagle + delayed ACK add ~40 ms to each response written in two parts)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise SoftbitsError(f"cannot serve HTTP on {address[0]}:{address[1]}: {exc.strerror or exc}") from None
    return sock


async def _start_http(service: "PredictionService", address: Address) -> tuple[Any, asyncio.Task, int]:
    import uvicorn

    from softbits.serve.httpapp import create_http_app

    class Server(uvicorn.Server):
        """uvicorn without its own signal capture: this loop owns SIGINT/SIGTERM."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    sock = _bind_tcp(address)
    config = uvicorn.Config(create_http_app(service), log_level="warning", access_log=False,
                            lifespan="off", server_header=False, date_header=False)
    server = Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    return server, task, sock.getsockname()[1]


async def _start_coap(service: "PredictionService", address: Address) -> Any:
    import aiocoap

    from softbits.serve.coap import create_coap_site

    try:
        return await aiocoap.Context.create_server_context(create_coap_site(service), bind=address)
    except OSError as exc:
        raise SoftbitsError(f"cannot serve CoAP on {address[0]}:{address[1]}: {exc.strerror or exc}") from None


def _udp_port(ctx: Any, requested: int) -> int:
    """The UDP port aiocoap bound (differs from ``requested`` when that was 0).

    aiocoap has no public accessor; its UDP transport is found through the message manager and
    the requested port is kept when the layout ever changes.
    """
    for interface in getattr(ctx, "request_interfaces", ()):
        messages = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        transport = getattr(messages, "transport", None)
        if transport is not None:
            sock = transport.get_extra_info("socket")
            sockname = sock.getsockname() if sock is not None else transport.get_extra_info("sockname")
            if sockname:
                return int(sockname[1])
    return requested


async def run_servers(service: "PredictionService", http: Address | None, coap: Address | None,
                      on_ready: Callable[[dict[str, str]], None], stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or a signal arrives); ``on_ready`` gets the URLs."""
    if http is None and coap is None:
        raise SoftbitsError("nothing to serve: both HTTP and CoAP are disabled")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    coap_ctx = http_server = http_task = None
    with _stop_on_signals(loop, stop):
        try:
            urls: dict[str, str] = {"model_id": service.model_id}
            if coap is not None:
                coap_ctx = await _start_coap(service, coap)
                urls["coap"] = f"coap://{_host(coap[0])}:{_udp_port(coap_ctx, coap[1])}/predict"
            if http is not None:
                http_server, http_task, port = await _start_http(service, http)
                urls["http"] = f"http://{_host(http[0])}:{port}/v1/predict"
            on_ready(urls)
            await stop.wait()
        finally:
            if http_server is not None:
                http_server.should_exit = True
                await http_task
            if coap_ctx is not None:
                await coap_ctx.shutdown()


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(service: "PredictionService", http: Address | None, coap: Address | None,
          on_ready: Callable[[dict[str, str]], None]) -> None:
    """Blocking entry point for the CLI; on uvloop's event loop when it is installed."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    if loop_factory is None or not hasattr(asyncio, "Runner"):  # asyncio.Runner: Python 3.11+
        asyncio.run(run_servers(service, http, coap, on_ready))
        return
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(run_servers(service, http, coap, on_ready))
