"""The HTTP face of the server (FastAPI): ``POST /v1/predict``, ``POST /v1/predict/<model-id>``,
``GET /v1/model``, ``GET /healthz``.

The body of ``/v1/predict`` is a full wire payload or a compact frame; the body of
``/v1/predict/<model-id>`` is one bare sample, answered 404 when the id is not this server's
(``application/octet-stream``; the content type is not enforced). Errors answer ``{"error": message}`` with 400, or 413 over the size limit, which
is checked against Content-Length before the body is read and again while it streams in.
A prediction that is not finite answers 500 (see :mod:`softbits.serve.service`). An upload
whose connection closes before the body is complete is logged as one warning line.
Only the server module imports this module, so FastAPI loads only when HTTP is served.
"""

import json

from fastapi import FastAPI, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from softbits.serve.service import PredictionService, log

__all__ = ["create_http_app"]


def _error(status: int, message: str) -> Response:
    return Response(json.dumps({"error": message}), status_code=status, media_type="application/json")


def create_http_app(service: PredictionService) -> FastAPI:
    """A FastAPI app bound to ``service``; raw Starlette responses keep the hot path short."""
    app = FastAPI(title="softbits", docs_url=None, redoc_url=None, openapi_url=None)

    async def predict(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > service.max_payload_bytes:
            return _error(413, service.too_large(int(declared)).body.decode())
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > service.max_payload_bytes:
                    return _error(413, service.too_large(len(body)).body.decode())
        except ClientDisconnect:
            peer = f"{request.client.host}:{request.client.port}" if request.client else "a client"
            log.warning("upload from %s cut off after %d of %s bytes: the connection closed "
                        "(by the client, when idle, or at shutdown)", peer, len(body), declared or "?")
            return _error(400, "incomplete upload")  # nobody is left to read it
        answer = service.answer(bytes(body), request.path_params.get("model_id"))
        if answer.ok:
            return Response(answer.body, media_type="application/json")
        return _error(answer.status, answer.body.decode())

    # a plain Starlette route inside the FastAPI app: the hot path skips FastAPI's per-request
    # dependency resolution, which cost about as much as the model itself
    app.add_route("/v1/predict", predict, methods=["POST"])
    app.add_route("/v1/predict/{model_id}", predict, methods=["POST"])

    @app.get("/v1/model")
    async def model() -> Response:
        return Response(service.spec_json, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(json.dumps({"status": "ok", "model_id": service.model_id}),
                        media_type="application/json")

    return app
