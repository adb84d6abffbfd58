"""The MQTT bridge: uplinks from a network server's broker in, predictions out (``serve --mqtt``).

By default the bridge subscribes to The Things Stack's (``v3/+/devices/+/up``) and ChirpStack's
(``application/+/device/+/event/up``) uplink topics (``--mqtt-topics`` narrows them); a topic
starting with ``v3/`` is read as TTN's uplink JSON, one starting with ``application/`` as
ChirpStack's (:mod:`softbits.serve.lorawan`). Each uplink is predicted like a webhook's and the
result, JSON with ``prediction``, ``predictions``, ``model_id``, ``device_id``, ``f_port`` and
``f_cnt``, is published (QoS 1) on ``softbits/predictions/<device id>``, or on ``--mqtt-results``
(where ``{device_id}`` is replaced by the device's id). An uplink that cannot be read or
predicted is logged in one line and dropped; a broker that refuses or vanishes is retried every
few seconds (up to :data:`MAX_BACKOFF_S`), and the bridge resubscribes when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from softbits.serve.lorawan import MAX_WEBHOOK_BYTES, UplinkError, parse_chirpstack, parse_ttn, reply

if TYPE_CHECKING:
    from softbits.serve.service import PredictionService

__all__ = ["DEFAULT_RESULTS", "DEFAULT_TOPICS", "MAX_BACKOFF_S", "MqttBridge", "answer_message"]

DEFAULT_TOPICS = ("v3/+/devices/+/up", "application/+/device/+/event/up")
DEFAULT_RESULTS = "softbits/predictions/{device_id}"
#: the longest wait between two connection attempts
MAX_BACKOFF_S = 10.0

log = logging.getLogger("softbits.serve")


def answer_message(service: PredictionService, topic: str, payload: bytes,
                   results: str = DEFAULT_RESULTS) -> tuple[str, bytes] | None:
    """The (topic, JSON) to publish for one uplink message; None (and one log line) when it
    cannot be answered."""
    network = "ttn" if topic.startswith("v3/") else "chirpstack"
    with service.metrics.observe("mqtt", f"lorawan_{network}") as record:
        if len(payload) > MAX_WEBHOOK_BYTES:
            record["status"] = 413
            log.warning("MQTT message on %s dropped: %d bytes exceed %d", topic[:200], len(payload), MAX_WEBHOOK_BYTES)
            return None
        try:
            uplink = parse_ttn(payload) if network == "ttn" else parse_chirpstack(payload, "up")
        except UplinkError as exc:
            record["status"] = 400
            log.warning("MQTT uplink on %s dropped: %s", topic[:200], exc)
            return None
        assert uplink is not None  # the "up" event always gives an uplink
        record["bytes"] = len(uplink.payload)
        answer = service.answer(uplink.payload)
        record["status"], record["samples"] = answer.status, answer.n_samples
        if not answer.ok:
            log.warning("MQTT uplink of %s dropped: %s", uplink.device_id[:80] or "a device", answer.body.decode()[:200])
            return None
        device = uplink.device_id or "unknown"
        return results.replace("{device_id}", device), reply(uplink, answer.body)


@dataclass
class MqttBridge:
    """Subscribe, answer, publish; reconnect whenever the broker goes away."""

    service: PredictionService
    host: str
    port: int
    topics: Sequence[str] = DEFAULT_TOPICS
    results: str = DEFAULT_RESULTS

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set."""
        import aiomqtt

        backoff = 0.5
        while not stop.is_set():
            try:
                # TCP_NODELAY: a one-sample uplink and its reply are small packets, which Nagle's
                # algorithm with delayed ACKs would hold back by tens of milliseconds each
                async with aiomqtt.Client(self.host, self.port, identifier=None, clean_session=True,
                                          socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)) as client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    log.info("MQTT bridge subscribed to %s on %s:%d", ", ".join(self.topics), self.host, self.port)
                    backoff = 0.5
                    await self._serve(client, stop)
            except aiomqtt.MqttError as exc:
                if stop.is_set():
                    return
                log.warning("MQTT broker %s:%d: %s; retrying in %.1f s", self.host, self.port,
                            str(exc)[:200] or type(exc).__name__, backoff)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _serve(self, client: object, stop: asyncio.Event) -> None:
        messages = client.messages  # type: ignore[attr-defined]
        waiter = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(anext(messages))
                done, _ = await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    return
                message = getter.result()
                payload = message.payload if isinstance(message.payload, bytes) else bytes(str(message.payload), "utf-8")
                out = answer_message(self.service, str(message.topic), payload, self.results)
                if out is not None:
                    await client.publish(out[0], out[1], qos=1)  # type: ignore[attr-defined]
        finally:
            waiter.cancel()
