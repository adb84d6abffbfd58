"""The HTTP face of the server (FastAPI): ``POST /v1/predict``, ``POST /v1/predict/<model-id>``,
``GET /v1/model``, ``GET /healthz``, ``GET /v1/drift``, ``GET /metrics``, the Open Inference
Protocol under ``/v2`` (:mod:`softbits.serve.oip`) (:mod:`softbits.serve.metrics`), and the LoRaWAN webhooks ``POST /v1/lorawan/ttn`` and
``POST /v1/lorawan/chirpstack`` (each also with ``/<model-id>``; :mod:`softbits.serve.lorawan`).

The body of ``/v1/predict`` is a full wire payload or a compact frame; the body of
``/v1/predict/<model-id>`` is one bare sample, answered 404 when the id is not this server's
(``application/octet-stream``; the content type is not enforced). Errors answer ``{"error": message}`` with 400, or 413 over the size limit, which
is checked against Content-Length before the body is read and again while it streams in.
A prediction that is not finite answers 500 (see :mod:`softbits.serve.service`). An upload
whose connection closes before the body is complete is logged as one warning line.
Only the server module imports this module, so FastAPI loads only when HTTP is served.
"""

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from softbits.serve import oip
from softbits.serve.lorawan import (
    MAX_WEBHOOK_BYTES,
    Uplink,
    UplinkError,
    downlink_bytes,
    parse_chirpstack,
    parse_ttn,
    reply,
)
from softbits.serve.service import PredictionService, log

__all__ = ["Downlinks", "create_http_app"]


@dataclass(frozen=True)
class Downlinks:
    """Where predictions go back to LoRaWAN devices: TTN's push URL comes with each uplink;
    ChirpStack's REST API needs its base URL and an API token."""

    enabled: bool = False
    chirpstack_api: str | None = None
    chirpstack_token: str | None = None


async def _post(url: str, body: dict[str, object], headers: dict[str, str], what: str) -> None:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.post(url, json=body, headers=headers)
        if response.status_code >= 300:
            log.warning("%s downlink to %s answered %d", what, url, response.status_code)
    except httpx.HTTPError as exc:
        log.warning("%s downlink to %s failed: %s", what, url, type(exc).__name__)


def _error(status: int, message: str) -> Response:
    return Response(json.dumps({"error": message}), status_code=status, media_type="application/json")


async def _read_body(request: Request, limit: int,
                     too_large: Callable[[int], str] | None = None) -> bytes | Response:
    """The request's body, or the error response: 413 over ``limit`` bytes (checked against
    Content-Length before reading, and while the body streams in; ``too_large(n)`` says so),
    400 when the connection closes first (logged in one line)."""
    message = too_large or (lambda n: f"body of {n} bytes exceeds the limit of {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _error(413, message(int(declared)))
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _error(413, message(len(body)))
    except ClientDisconnect:
        peer = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.warning("upload from %s cut off after %d of %s bytes: the connection closed "
                    "(by the client, when idle, or at shutdown)", peer, len(body), declared or "?")
        return _error(400, "incomplete upload")  # nobody is left to read it
    return bytes(body)


Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]


def _observed(service: PredictionService, route_of: Callable[[Request], str],
              handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` counted in the service's metrics: it fills in bytes and samples, the status
    is its response's."""

    async def endpoint(request: Request) -> Response:
        with service.metrics.observe("http", route_of(request)) as record:
            response = await handler(request, record)
            record["status"] = response.status_code
            return response

    return endpoint


def create_http_app(service: PredictionService, downlinks: Downlinks | None = None,
                    name: str | None = None) -> FastAPI:
    """A FastAPI app bound to ``service``; raw Starlette responses keep the hot path short.
    ``name``: the model's name on the Open Inference Protocol routes (default: its model id)."""
    app = FastAPI(title="softbits", docs_url=None, redoc_url=None, openapi_url=None)
    downlinks = downlinks or Downlinks()
    model_name = name or service.model_id

    def _json_response(obj: object, status: int = 200) -> Response:
        return Response(json.dumps(obj), status_code=status, media_type="application/json")

    def _known(request: Request) -> Response | None:
        """404 for another model's name or a version other than 1."""
        if request.path_params.get("name") != model_name:
            return _error(404, f"no model {request.path_params.get('name')!r} here: this server has {model_name!r}")
        if request.path_params.get("version", "1") != "1":
            return _error(404, f"model {model_name!r} has version 1 only")
        return None

    async def v2_live(request: Request) -> Response:
        return _json_response({"live": True})

    async def v2_ready(request: Request) -> Response:
        return _json_response({"ready": True})

    async def v2_server(request: Request) -> Response:
        return _json_response(oip.server_metadata())

    async def v2_model(request: Request) -> Response:
        return _known(request) or _json_response(oip.model_metadata(service, model_name))

    async def v2_model_ready(request: Request) -> Response:
        return _known(request) or _json_response({"name": model_name, "ready": True})

    async def v2_infer(request: Request, record: dict[str, Any]) -> Response:
        refused = _known(request)
        if refused is not None:
            return refused
        body = await _read_body(request, service.max_payload_bytes * 64)
        if isinstance(body, Response):
            return body
        record["bytes"] = len(body)
        try:
            reply = oip.infer(service, model_name, body, request.headers.get(oip.HEADER_LENGTH))
        except oip.InferError as exc:
            return _error(400, str(exc))
        except ValueError:  # a non-finite prediction cannot be JSON
            return _error(500, "the model predicted a non-finite value")
        headers = {} if reply.header_length is None else {"Inference-Header-Content-Length": str(reply.header_length)}
        media = "application/json" if reply.header_length is None else "application/octet-stream"
        return Response(reply.body, media_type=media, headers=headers)

    app.add_route("/v2/health/live", v2_live, methods=["GET"])
    app.add_route("/v2/health/ready", v2_ready, methods=["GET"])
    app.add_route("/v2", v2_server, methods=["GET"])
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.add_route(base, v2_model, methods=["GET"])
        app.add_route(f"{base}/ready", v2_model_ready, methods=["GET"])
        app.add_route(f"{base}/infer", _observed(service, lambda _: "v2_infer", v2_infer), methods=["POST"])

    def downlink(network: str, request: Request, uplink: Uplink, answer: bytes) -> BackgroundTask | None:
        """The task that sends the first prediction back, when downlinks are on and possible."""
        if not downlinks.enabled or uplink.f_port is None:
            return None
        predictions = json.loads(answer)["predictions"]
        if not predictions:
            return None
        data = base64.b64encode(downlink_bytes(predictions[0], service.model.classes)).decode()
        if network == "ttn":
            url, key = request.headers.get("x-downlink-push"), request.headers.get("x-downlink-apikey")
            if not url or not key:
                return None
            push: dict[str, object] = {"downlinks": [{"f_port": uplink.f_port, "frm_payload": data,
                                                      "priority": "NORMAL"}]}
            return BackgroundTask(_post, url, push, {"Authorization": f"Bearer {key}"}, "TTN")
        if not downlinks.chirpstack_api or not uplink.device_id:
            return None
        url = f"{downlinks.chirpstack_api.rstrip('/')}/api/devices/{uplink.device_id}/queue"
        queue: dict[str, object] = {"queueItem": {"confirmed": False, "fPort": uplink.f_port, "data": data}}
        return BackgroundTask(_post, url, queue, {"Authorization": f"Bearer {downlinks.chirpstack_token or ''}"},
                              "ChirpStack")

    async def lorawan(request: Request, record: dict[str, Any]) -> Response:
        network = request.path_params["network"]
        body = await _read_body(request, MAX_WEBHOOK_BYTES)
        if isinstance(body, Response):
            return body
        try:
            uplink = parse_ttn(body) if network == "ttn" else parse_chirpstack(body, request.query_params.get("event"))
        except UplinkError as exc:
            return _error(400, str(exc))
        if uplink is None:  # a ChirpStack event other than an uplink: nothing to predict
            return Response(status_code=204)
        record["bytes"] = len(uplink.payload)
        answer = service.answer(uplink.payload, request.path_params.get("model_id"))
        record["samples"] = answer.n_samples
        if not answer.ok:
            return _error(answer.status, answer.body.decode())
        return Response(reply(uplink, answer.body), media_type="application/json",
                        background=downlink(network, request, uplink, answer.body))

    observed_lorawan = _observed(service, lambda r: f"lorawan_{r.path_params['network']}", lorawan)
    for network in ("ttn", "chirpstack"):
        app.add_route(f"/v1/lorawan/{network}", _bind(observed_lorawan, network), methods=["POST"])
        app.add_route(f"/v1/lorawan/{network}/{{model_id}}", _bind(observed_lorawan, network), methods=["POST"])

    def payload_too_large(n_bytes: int) -> str:
        return service.too_large(n_bytes).body.decode()

    async def predict(request: Request, record: dict[str, Any]) -> Response:
        body = await _read_body(request, service.max_payload_bytes, payload_too_large)
        if isinstance(body, Response):
            return body
        record["bytes"] = len(body)
        answer = service.answer(body, request.path_params.get("model_id"))
        record["samples"] = answer.n_samples
        if answer.ok:
            return Response(answer.body, media_type="application/json")
        return _error(answer.status, answer.body.decode())

    # a plain Starlette route inside the FastAPI app: the hot path skips FastAPI's per-request
    # dependency resolution, which cost about as much as the model itself
    observed_predict = _observed(
        service, lambda r: "predict" if "model_id" not in r.path_params else "predict_named", predict)
    app.add_route("/v1/predict", observed_predict, methods=["POST"])
    app.add_route("/v1/predict/{model_id}", observed_predict, methods=["POST"])

    @app.get("/v1/model")
    async def model() -> Response:
        return Response(service.spec_json, media_type="application/json")

    @app.get("/v1/drift")
    async def drift() -> Response:
        return Response(service.drift_report(), media_type="application/json")

    @app.get("/metrics")
    async def metrics() -> Response:
        text, content_type = service.metrics.exposition()
        return Response(text, media_type=content_type)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(json.dumps({"status": "ok", "model_id": service.model_id}),
                        media_type="application/json")

    return app


def _bind(endpoint: Callable[[Request], Awaitable[Response]], network: str) -> Callable[[Request], Awaitable[Response]]:
    """``endpoint`` with ``network`` in its path parameters (one handler for both networks)."""

    async def bound(request: Request) -> Response:
        request.path_params["network"] = network
        return await endpoint(request)

    return bound
