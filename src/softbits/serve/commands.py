"""Server-side commands: ``serve`` and ``send`` (registered by :mod:`softbits.cli`, which
refuses them in one line when the serve extra is not installed)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from softbits.errors import ConfigError
from softbits.serve.mqtt import DEFAULT_RESULTS

__all__ = ["named_route", "send", "serve"]

_OFF = ("off", "none", "")


def serve(
    model: Annotated[Path, typer.Argument(help="A model file written by `softbits train --save`.")],
    coap: Annotated[str, typer.Option(help="CoAP HOST:PORT, or 'off'.")] = "127.0.0.1:5683",
    http: Annotated[str, typer.Option(help="HTTP HOST:PORT, or 'off'.")] = "127.0.0.1:8000",
    max_payload: Annotated[int, typer.Option(help="Largest accepted payload in bytes (HTTP 413 / CoAP 4.13 above).")] = 65536,
    lorawan_downlink: Annotated[bool, typer.Option("--lorawan-downlink", help="Send each webhook uplink's prediction back as a downlink (4 bytes, float32 LE): TTN through the X-Downlink-Push URL it sends, ChirpStack through --chirpstack-api.")] = False,
    chirpstack_api: Annotated[str | None, typer.Option(help="ChirpStack v4 REST API base URL for downlinks (e.g. http://chirpstack:8090).")] = None,
    chirpstack_token: Annotated[str | None, typer.Option(envvar="SOFTBITS_CHIRPSTACK_TOKEN", help="ChirpStack API token for downlinks (or the SOFTBITS_CHIRPSTACK_TOKEN variable).")] = None,
    name: Annotated[str | None, typer.Option(help="The model's name on the Open Inference Protocol routes /v2/models/NAME (default: its model id).")] = None,
    mqtt: Annotated[str, typer.Option(help="MQTT broker HOST:PORT to take LoRaWAN uplinks from (TTN and ChirpStack topics), or 'off'.")] = "off",
    mqtt_topics: Annotated[str | None, typer.Option(help="Comma-separated topics to subscribe to (default: v3/+/devices/+/up,application/+/device/+/event/up).")] = None,
    mqtt_results: Annotated[str, typer.Option(help="Topic for each prediction; {device_id} is replaced by the device's id.")] = DEFAULT_RESULTS,
) -> None:
    """Serve predictions for wire payloads over CoAP (POST/PUT /predict, /predict/MODEL_ID) and HTTP (POST /v1/predict, /v1/predict/MODEL_ID), LoRaWAN webhooks (POST /v1/lorawan/ttn, /v1/lorawan/chirpstack), the Open Inference Protocol (/v2), /metrics, /v1/drift and an MQTT bridge (docs/lorawan.md)."""
    import torch

    from softbits.serve.httpapp import Downlinks
    from softbits.serve.server import parse_address
    from softbits.serve.server import serve as run
    from softbits.serve.service import PredictionService
    from softbits.training.trained_model import TrainedModel

    if max_payload < 16:
        raise ConfigError("--max-payload must be at least 16 bytes (the header)")
    if chirpstack_api is not None and not chirpstack_api.startswith(("http://", "https://")):
        raise ConfigError(f"--chirpstack-api must be an http:// or https:// URL, got {chirpstack_api!r}")
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise ConfigError(f"--name must be 1..64 letters, digits, '_', '.' or '-', got {name!r}")
    if chirpstack_api is not None and not lorawan_downlink:
        raise ConfigError("--chirpstack-api applies with --lorawan-downlink")
    coap_addr = None if coap.strip().lower() in _OFF else parse_address(coap, 5683)
    http_addr = None if http.strip().lower() in _OFF else parse_address(http, 8000)
    mqtt_addr = None if mqtt.strip().lower() in _OFF else parse_address(mqtt, 1883)
    topics = None
    if mqtt_topics is not None:
        topics = tuple(t.strip() for t in mqtt_topics.split(",") if t.strip())
        if not topics or any(not t.startswith(("v3/", "application/")) for t in topics):
            raise ConfigError("--mqtt-topics must name TTN (v3/...) or ChirpStack (application/...) uplink topics")
    if mqtt_addr is None and (mqtt_topics is not None or mqtt_results != DEFAULT_RESULTS):
        raise ConfigError("--mqtt-topics and --mqtt-results apply with --mqtt HOST:PORT")
    if any(ch in mqtt_results for ch in "+#") or not mqtt_results.strip():
        raise ConfigError(f"--mqtt-results must be a topic without wildcards, got {mqtt_results!r}")
    torch.set_num_threads(1)
    service = PredictionService(TrainedModel.load(model), max_payload_bytes=max_payload)
    bridge = None
    if mqtt_addr is not None:
        from softbits.serve.mqtt import DEFAULT_TOPICS, MqttBridge  # aiomqtt loads only when bridged

        bridge = MqttBridge(service, mqtt_addr[0], mqtt_addr[1], topics or DEFAULT_TOPICS, mqtt_results)

    def ready(urls: dict[str, str]) -> None:
        sys.stdout.write("ready " + json.dumps(urls) + "\n")
        sys.stdout.flush()

    run(service, http_addr, coap_addr, ready,
        Downlinks(enabled=lorawan_downlink, chirpstack_api=chirpstack_api, chirpstack_token=chirpstack_token), name,
        bridge)


def named_route(url: str, model_id: str) -> str:
    """``url`` + ``/<model-id>``: the route that takes bare samples (kept when already there)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith("/" + model_id):
        path = f"{path}/{model_id}"
    return urlunsplit(parts._replace(path=path))


def send(
    model: Annotated[Path, typer.Argument(help="The model the server runs (its encoder makes the payloads).")],
    input: Annotated[Path, typer.Option("--input", help="CSV with a header row of raw features.")],
    to: Annotated[str, typer.Option("--to", help="coap://HOST[:PORT]/predict or http://HOST:PORT/v1/predict.")],
    batch: Annotated[int | None, typer.Option(help="Samples per full payload (one request each; default 64).")] = None,
    frame: Annotated[str, typer.Option(help="full (16-byte header, batches), compact (2 bytes, one sample "
                                             "a request) or none (one bare sample to --to/<model-id>).")] = "full",
    verb: Annotated[str, typer.Option(help="Request verb: post, or put (CoAP only).")] = "post",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each reply.")] = 30.0,
) -> None:
    """Encode CSV rows like a device, send them, print one prediction per line."""
    from softbits.device.commands import frame_option
    from softbits.device.encode import encode_packed
    from softbits.device.predict import format_prediction, read_features
    from softbits.device.spec import EncoderSpec
    from softbits.device.wire import MAX_SAMPLES, build_frame
    from softbits.serve.client import send_payloads
    from softbits.training.trained_model import TrainedModel

    chosen = frame_option(frame)
    if chosen != "full" and batch not in (None, 1):
        raise ConfigError(f"--batch applies to --frame full; --frame {chosen} sends one sample a request")
    size = 1 if chosen != "full" else 64 if batch is None else batch
    if not 1 <= size <= MAX_SAMPLES:
        raise ConfigError(f"--batch must be 1..{MAX_SAMPLES}")
    m = TrainedModel.load(model)
    spec = EncoderSpec.from_model(m)
    packed = encode_packed(spec, read_features(input, m.feature_names, m.target_name, spec.unsent_features))
    payloads = [build_frame(spec, packed[i:i + size], chosen) for i in range(0, packed.shape[0], size)]
    if chosen == "none":
        to = named_route(to, spec.model_id)
    values = send_payloads(to, payloads, verb=verb.lower(), timeout=timeout)
    sys.stdout.write("".join(format_prediction(v) + "\n" for v in values))
