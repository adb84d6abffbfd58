"""Server-side commands: ``serve`` and ``send`` (registered by :mod:`softbits.cli`, which
refuses them in one line when the serve extra is not installed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from softbits.errors import ConfigError

__all__ = ["serve", "send"]

_OFF = ("off", "none", "")


def serve(
    model: Annotated[Path, typer.Argument(help="A model file written by `softbits train --save`.")],
    coap: Annotated[str, typer.Option(help="CoAP HOST:PORT, or 'off'.")] = "127.0.0.1:5683",
    http: Annotated[str, typer.Option(help="HTTP HOST:PORT, or 'off'.")] = "127.0.0.1:8000",
    max_payload: Annotated[int, typer.Option(help="Largest accepted payload in bytes (HTTP 413 / CoAP 4.13 above).")] = 65536,
) -> None:
    """Serve predictions for wire payloads over CoAP (POST/PUT /predict) and HTTP (POST /v1/predict)."""
    import torch

    from softbits.serve.server import parse_address
    from softbits.serve.server import serve as run
    from softbits.serve.service import PredictionService
    from softbits.trained_model import TrainedModel

    if max_payload < 16:
        raise ConfigError("--max-payload must be at least 16 bytes (the header)")
    coap_addr = None if coap.strip().lower() in _OFF else parse_address(coap, 5683)
    http_addr = None if http.strip().lower() in _OFF else parse_address(http, 8000)
    torch.set_num_threads(1)
    service = PredictionService(TrainedModel.load(model), max_payload_bytes=max_payload)

    def ready(urls: dict[str, str]) -> None:
        sys.stdout.write("ready " + json.dumps(urls) + "\n")
        sys.stdout.flush()

    run(service, http_addr, coap_addr, ready)


def send(
    model: Annotated[Path, typer.Argument(help="The model the server runs (its encoder makes the payloads).")],
    input: Annotated[Path, typer.Option("--input", help="CSV with a header row of raw features.")],
    to: Annotated[str, typer.Option("--to", help="coap://HOST[:PORT]/predict or http://HOST:PORT/v1/predict.")],
    batch: Annotated[int, typer.Option(help="Samples per payload (one request each).")] = 64,
    verb: Annotated[str, typer.Option(help="Request verb: post, or put (CoAP only).")] = "post",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each reply.")] = 30.0,
) -> None:
    """Encode CSV rows like a device, send them, print one prediction per line."""
    from softbits.device.encode import encode_packed
    from softbits.device.predict import format_prediction, read_features
    from softbits.device.spec import EncoderSpec
    from softbits.device.wire import MAX_SAMPLES, build_payload
    from softbits.serve.client import send_payloads
    from softbits.trained_model import TrainedModel

    if not 1 <= batch <= MAX_SAMPLES:
        raise ConfigError(f"--batch must be 1..{MAX_SAMPLES}")
    m = TrainedModel.load(model)
    spec = EncoderSpec.from_model(m)
    packed = encode_packed(spec, read_features(input, m.feature_names, m.target_name))
    payloads = [build_payload(spec, packed[i:i + batch]) for i in range(0, packed.shape[0], batch)]
    values = send_payloads(to, payloads, verb=verb.lower(), timeout=timeout)
    sys.stdout.write("".join(format_prediction(v) + "\n" for v in values))
