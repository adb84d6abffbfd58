"""LoRaWAN network-server webhooks: uplinks as The Things Stack (TTN v3) and ChirpStack v4 post them.

``POST /v1/lorawan/ttn`` takes TTN's uplink JSON (``end_device_ids.device_id``,
``uplink_message.frm_payload`` base64, ``f_port``, ``f_cnt``, ``received_at``; TTN leaves out
empty fields, and so may the sender here: only the payload is required). ``POST
/v1/lorawan/chirpstack?event=up`` takes ChirpStack's HTTP-integration event (``deviceInfo.devEui``,
``fPort``, ``fCnt``, ``data`` base64); other events are acknowledged (204) and ignored.

The uplink's bytes are one compact frame (tag, model tag, the sample: what
``softbits_encode_compact`` writes) or a full wire payload, told apart by the first byte. On the
routes ``/v1/lorawan/ttn/<model-id>`` and ``/v1/lorawan/chirpstack/<model-id>`` they are the bare
codes of one sample (``softbits_encode``'s bytes): the route names the model, so the device sends
no framing at all. The reply is JSON: ``device_id``, ``model_id``, ``prediction`` (the first
sample's), ``predictions``, ``f_port`` and ``f_cnt`` as received.

Downlinks (``serve --lorawan-downlink``): each prediction goes back to the device as 4 bytes,
the float32 prediction little-endian (a class index for classifiers), on the uplink's FPort. For
TTN, a POST to the ``X-Downlink-Push`` URL TTN sent with the uplink, authorized with its
``X-Downlink-Apikey``, body ``{"downlinks": [{"f_port": P, "frm_payload": base64, "priority":
"NORMAL"}]}``. For ChirpStack, a POST to ``<--chirpstack-api>/api/devices/<devEui>/queue`` with
``{"queueItem": {"confirmed": false, "fPort": P, "data": base64}}`` and the API token as
``Authorization: Bearer``. A downlink that fails is logged in one line; the uplink's reply stands.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_WEBHOOK_BYTES", "Uplink", "UplinkError", "downlink_bytes", "parse_chirpstack", "parse_ttn",
           "reply"]

#: the largest webhook body read: network servers' uplink JSON is a few kilobytes
MAX_WEBHOOK_BYTES = 256 * 1024


class UplinkError(ValueError):
    """A webhook body that is not an uplink softbits can read (answered 400)."""


@dataclass(frozen=True)
class Uplink:
    """One uplink as the network server delivered it."""

    device_id: str
    payload: bytes
    f_port: int | None = None
    f_cnt: int | None = None
    received_at: str | None = None


def _json(body: bytes) -> dict[str, Any]:
    from softbits.errors import DataError
    from softbits.text import strict_json

    try:
        obj = strict_json(body.decode("utf-8"), "the webhook body")
    except UnicodeDecodeError:
        raise UplinkError("the webhook body is not UTF-8 JSON") from None
    except DataError as exc:
        raise UplinkError(str(exc)) from None
    if not isinstance(obj, dict):
        raise UplinkError("the webhook body must be a JSON object")
    return obj


def _mapping(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key, {})
    if not isinstance(value, dict):
        raise UplinkError(f"{key} must be an object")
    return value


def _payload(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise UplinkError(f"the uplink has no payload ({field}, base64)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UplinkError(f"{field} is not base64") from None


def _integer(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UplinkError(f"{field} must be a non-negative integer, got {value!r}")
    return value


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise UplinkError(f"{field} must be text")
    return value[:256]


def parse_ttn(body: bytes) -> Uplink:
    """A TTN v3 uplink message (the ``uplink_message`` webhook)."""
    obj = _json(body)
    message = _mapping(obj, "uplink_message")
    ids = _mapping(obj, "end_device_ids")
    return Uplink(device_id=_text(ids.get("device_id"), "end_device_ids.device_id") or "",
                  payload=_payload(message.get("frm_payload"), "uplink_message.frm_payload"),
                  f_port=_integer(message.get("f_port"), "uplink_message.f_port"),
                  f_cnt=_integer(message.get("f_cnt"), "uplink_message.f_cnt"),
                  received_at=_text(obj.get("received_at", message.get("received_at")), "received_at"))


def parse_chirpstack(body: bytes, event: str | None) -> Uplink | None:
    """A ChirpStack v4 HTTP-integration event; None for events other than ``up``."""
    if event is not None and event != "up":
        return None
    obj = _json(body)
    info = _mapping(obj, "deviceInfo")
    return Uplink(device_id=_text(info.get("devEui"), "deviceInfo.devEui") or "",
                  payload=_payload(obj.get("data"), "data"),
                  f_port=_integer(obj.get("fPort"), "fPort"), f_cnt=_integer(obj.get("fCnt"), "fCnt"),
                  received_at=_text(obj.get("time"), "time"))


def reply(uplink: Uplink, answer_body: bytes) -> bytes:
    """The webhook's JSON reply from the service's prediction JSON."""
    answer = json.loads(answer_body)
    predictions = answer["predictions"]
    return json.dumps({"device_id": uplink.device_id, "model_id": answer["model_id"],
                       "prediction": predictions[0] if predictions else None, "predictions": predictions,
                       "f_port": uplink.f_port, "f_cnt": uplink.f_cnt}, allow_nan=False).encode()


def downlink_bytes(prediction: float | int | str, classes: list[str] | None) -> bytes:
    """The 4 downlink bytes of a prediction: float32 little-endian (a class's index for classifiers)."""
    if classes is not None:
        return struct.pack("<f", float(classes.index(str(prediction))))
    return struct.pack("<f", float(prediction))
