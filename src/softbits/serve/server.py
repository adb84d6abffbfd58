"""Run the HTTP and CoAP servers in one process and one asyncio event loop.

Both transports share one :class:`~softbits.serve.service.PredictionService`; requests are
answered on the loop thread (a batch is a small MLP forward pass, cheaper than a thread hop).
SIGINT/SIGTERM stop both servers within :data:`SHUTDOWN_GRACE_S` seconds: an upload still
arriving then is cut off. An HTTP connection that sends nothing for :data:`IDLE_TIMEOUT_S`
seconds while the server waits for it (before, between or inside requests) is closed.
Neither port is shared: a second server on a bound UDP or TCP port is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from softbits.errors import ConfigError, SoftbitsError

if TYPE_CHECKING:
    from softbits.serve.httpapp import Downlinks
    from softbits.serve.mqtt import MqttBridge
    from softbits.serve.service import PredictionService

__all__ = ["IDLE_TIMEOUT_S", "SHUTDOWN_GRACE_S", "Address", "parse_address", "run_servers", "serve"]

Address = tuple[str, int]

#: seconds an HTTP connection may stay silent while the server waits for it
IDLE_TIMEOUT_S = 5
#: seconds an upload in progress at SIGINT/SIGTERM gets to finish before it is cut off
SHUTDOWN_GRACE_S = 3


def parse_address(text: str, default_port: int) -> Address:
    """``HOST:PORT``, ``HOST`` or ``:PORT`` (IPv6 as ``[::1]:PORT``) → (host, port)."""
    host, port = text.strip(), default_port
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ConfigError(f"bad address {text!r}: missing ']'")
        rest, host = host[end + 1:], host[1:end]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"bad address {text!r}")
            port = _port(rest[1:], text)
    elif host.count(":") == 1:
        host, p = host.split(":")
        port = _port(p, text)
    return host or "127.0.0.1", port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ConfigError(f"bad port in {whole!r}: give a number 0..65535")
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


def _cannot(kind: str, address: Address, exc: BaseException) -> SoftbitsError:
    if isinstance(exc, UnicodeError):  # the idna codec's words for a malformed host name
        reason = "not a valid host name"
    else:
        reason = getattr(exc, "strerror", None) or str(exc)
    return SoftbitsError(f"cannot serve {kind} on {_host(address[0])}:{address[1]}: {reason}")


def _family(kind: str, address: Address, socktype: int) -> int:
    """The address family of ``address``; a host that does not resolve is the user's error."""
    try:
        return socket.getaddrinfo(address[0], address[1], type=socktype)[0][0]
    except (OSError, UnicodeError) as exc:
        raise _cannot(kind, address, exc) from None


def _bind_tcp(address: Address) -> socket.socket:
    """Bind here rather than in uvicorn, whose bind failure exits the process."""
    family = _family("HTTP", address, socket.SOCK_STREAM)
    # proto IPPROTO_TCP: asyncio then sets TCP_NODELAY on accepted connections (without it,
    # Nagle + delayed ACK add ~40 ms to each response written in two parts)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # SO_REUSEADDR lets a restart bind past TIME_WAIT; it never lets two TCP listeners share
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise _cannot("HTTP", address, exc) from None
    return sock


def _idle_closing_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol, closing connections that stay silent too long.

    uvicorn times out only the pause after a response; a connection that never sends a
    request, or stops in the middle of its headers or body, would hold its descriptor forever.
    At shutdown an unfinished upload gets :data:`SHUTDOWN_GRACE_S` seconds to complete.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class IdleClosingProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._last_heard = self.loop.time()
            self._idle_timer = self.loop.call_later(IDLE_TIMEOUT_S, self._check_idle)

        def data_received(self, data: bytes) -> None:
            self._last_heard = self.loop.time()  # the timer re-arms itself: no per-chunk timer churn
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._idle_timer.cancel()
            super().connection_lost(exc)

        def _answering(self) -> bool:
            """The request is complete and its response is on its way: the wait is ours."""
            cycle = self.cycle
            return cycle is not None and not cycle.more_body and not cycle.response_complete

        def _check_idle(self) -> None:
            silent = self.loop.time() - self._last_heard
            if silent < IDLE_TIMEOUT_S or self._answering():
                self._idle_timer = self.loop.call_later(max(IDLE_TIMEOUT_S - silent, 0.1), self._check_idle)
            elif not self.transport.is_closing():
                self.transport.close()

        def shutdown(self) -> None:
            super().shutdown()
            if self.cycle is not None and self.cycle.more_body:
                self.loop.call_later(SHUTDOWN_GRACE_S, self._cut_unfinished_upload)

        def _cut_unfinished_upload(self) -> None:
            if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
                self.transport.close()

    return IdleClosingProtocol


async def _start_http(service: PredictionService, address: Address, downlinks: Downlinks | None = None,
                      name: str | None = None) -> tuple[Any, asyncio.Task, int]:
    import uvicorn

    from softbits.serve.httpapp import create_http_app

    class Server(uvicorn.Server):
        """uvicorn without its own signal capture: this loop owns SIGINT/SIGTERM."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    sock = _bind_tcp(address)
    config = uvicorn.Config(create_http_app(service, downlinks, name), log_level="warning", access_log=False,
                            lifespan="off", server_header=False, date_header=False,
                            http=_idle_closing_protocol(), timeout_keep_alive=IDLE_TIMEOUT_S,
                            # a backstop: uploads are cut at SHUTDOWN_GRACE_S, answers take ms
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_S + 1)
    server = Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    return server, task, sock.getsockname()[1]


#: CoAP over UDP only: aiocoap's defaults add CoAP over TCP (and TLS, WebSockets) listeners,
#: which bound port 5683 whatever port was asked for, shared through SO_REUSEPORT
_COAP_TRANSPORTS = ["udp6"] if sys.platform == "linux" else ["simplesocketserver"]


@contextlib.contextmanager
def _no_port_sharing() -> Iterator[None]:
    """aiocoap binds with SO_REUSEPORT, so a second server silently shared (and took over) a
    busy port; ``AIOCOAP_REUSE_PORT=0`` is its documented switch, set only while binding."""
    before = os.environ.get("AIOCOAP_REUSE_PORT")
    os.environ["AIOCOAP_REUSE_PORT"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["AIOCOAP_REUSE_PORT"]
        else:
            os.environ["AIOCOAP_REUSE_PORT"] = before


async def _start_coap(service: PredictionService, address: Address) -> Any:
    import aiocoap

    from softbits.serve.coap import create_coap_site

    _family("CoAP", address, socket.SOCK_DGRAM)
    try:
        with _no_port_sharing():
            return await aiocoap.Context.create_server_context(create_coap_site(service), bind=address,
                                                               transports=_COAP_TRANSPORTS)
    except (OSError, UnicodeError, aiocoap.error.Error) as exc:
        raise _cannot("CoAP", address, exc) from None


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


async def run_servers(service: PredictionService, http: Address | None, coap: Address | None,
                      on_ready: Callable[[dict[str, str]], None], stop: asyncio.Event | None = None,
                      downlinks: Downlinks | None = None, name: str | None = None,
                      mqtt: MqttBridge | None = None) -> None:
    """Serve until ``stop`` is set (or a signal arrives); ``on_ready`` gets the URLs."""
    if http is None and coap is None and mqtt is None:
        raise ConfigError("nothing to serve: HTTP, CoAP and MQTT are all off")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    coap_ctx = http_server = http_task = mqtt_task = None
    with _stop_on_signals(loop, stop):
        try:
            urls: dict[str, str] = {"model_id": service.model_id}
            if coap is not None:
                coap_ctx = await _start_coap(service, coap)
                urls["coap"] = f"coap://{_host(coap[0])}:{_udp_port(coap_ctx, coap[1])}/predict"
            if http is not None:
                http_server, http_task, port = await _start_http(service, http, downlinks, name)
                urls["http"] = f"http://{_host(http[0])}:{port}/v1/predict"
            if mqtt is not None:
                mqtt_task = asyncio.ensure_future(mqtt.run(stop))
                urls["mqtt"] = f"mqtt://{_host(mqtt.host)}:{mqtt.port}"
            on_ready(urls)
            await stop.wait()
        finally:
            if mqtt_task is not None:
                stop.set()
                try:
                    await asyncio.wait_for(mqtt_task, timeout=SHUTDOWN_GRACE_S)
                except (TimeoutError, asyncio.CancelledError):
                    mqtt_task.cancel()
            if http_server is not None and http_task is not None:
                http_server.should_exit = True
                await http_task
            if coap_ctx is not None:
                await coap_ctx.shutdown()


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(service: PredictionService, http: Address | None, coap: Address | None,
          on_ready: Callable[[dict[str, str]], None], downlinks: Downlinks | None = None,
          name: str | None = None, mqtt: MqttBridge | None = None) -> None:
    """Blocking entry point for the CLI; on uvloop's event loop when it is installed.

    The server's own log lines (aborted uploads, failed predictions) go to stderr as
    ``LEVEL: message``, like uvicorn's.
    """
    log = logging.getLogger("softbits.serve")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    if loop_factory is None or not hasattr(asyncio, "Runner"):  # asyncio.Runner: Python 3.11+
        asyncio.run(run_servers(service, http, coap, on_ready, downlinks=downlinks, name=name, mqtt=mqtt))
        return
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(run_servers(service, http, coap, on_ready, downlinks=downlinks, name=name, mqtt=mqtt))
