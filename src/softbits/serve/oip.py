"""The Open Inference Protocol (KServe V2 REST) beside softbits's own routes.

``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2`` (server metadata),
``GET /v2/models/{name}`` (inputs, outputs, shapes, datatypes), ``GET /v2/models/{name}/ready``
and ``POST /v2/models/{name}/infer``. The model's name is its model id unless ``serve --name``
sets one; ``/versions/1`` may be part of the model routes.

An inference request carries one input: ``codes`` (``UINT8`` or ``UINT16``, shape ``[N, F_sent]``:
the codes of the features the device sends, 0-bit ones left out) or ``features`` (``FP32``,
``[N, F]``: raw readings, encoded here exactly as the device would). The one output is
``predictions``: ``FP32`` ``[N, 1]`` in target units, or ``BYTES`` ``[N, 1]`` class labels for a
classifier. Tensors come as JSON ``data`` or, with the binary tensor extension, as raw bytes
after the JSON header (``Inference-Header-Content-Length``); an output is sent binary when the
request asks for it (``"parameters": {"binary_data": true}``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from softbits.serve.service import PredictionService

__all__ = ["HEADER_LENGTH", "InferError", "infer", "model_metadata", "server_metadata"]

HEADER_LENGTH = "inference-header-content-length"
_DTYPES = {"UINT8": np.uint8, "UINT16": np.uint16, "FP32": np.float32}


class InferError(ValueError):
    """A request this model cannot answer (400, with the message as ``{"error": ...}``)."""


@dataclass(frozen=True)
class Reply:
    body: bytes
    header_length: int | None  # set when binary tensors follow the JSON


def _sent(service: PredictionService) -> list[int]:
    widths = service.spec.feature_bits
    return [f for f, w in enumerate(widths) if w]


def server_metadata() -> dict[str, Any]:
    from softbits import __version__

    return {"name": "softbits", "version": __version__, "extensions": ["binary_tensor_data"]}


def model_metadata(service: PredictionService, name: str) -> dict[str, Any]:
    codes = "UINT8" if service.spec.bits <= 8 else "UINT16"
    labels = service.model.task == "classification"
    return {"name": name, "versions": ["1"], "platform": "softbits",
            "inputs": [{"name": "codes", "datatype": codes, "shape": [-1, len(_sent(service))]},
                       {"name": "features", "datatype": "FP32", "shape": [-1, service.spec.n_features]}],
            "outputs": [{"name": "predictions", "datatype": "BYTES" if labels else "FP32", "shape": [-1, 1]}]}


def _split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    from softbits.errors import DataError
    from softbits.text import strict_json

    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InferError(f"{HEADER_LENGTH} {header_length!r} does not fit a body of {len(body)} bytes")
        text, binary = body[:int(header_length)], body[int(header_length):]
    else:
        text, binary = body, b""
    try:
        request = strict_json(text.decode("utf-8"), "the inference request")
    except (UnicodeDecodeError, DataError) as exc:
        raise InferError(str(exc)) from None
    if not isinstance(request, dict):
        raise InferError("the inference request must be a JSON object")
    return request, binary


def _tensor(spec: dict[str, Any], binary: bytes, offset: int) -> tuple[np.ndarray, int]:
    """One input tensor of the request, and the offset of the next binary one."""
    datatype, shape = spec.get("datatype"), spec.get("shape")
    if datatype not in _DTYPES:
        raise InferError(f"input {spec.get('name')!r} has datatype {datatype!r}; use one of {', '.join(_DTYPES)}")
    if not isinstance(shape, list) or len(shape) != 2 or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise InferError(f"input {spec.get('name')!r} must have a 2-D shape [N, columns], got {shape!r}")
    dtype = np.dtype(_DTYPES[datatype]).newbyteorder("<")
    size = (spec.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InferError(f"input {spec.get('name')!r} states binary_data_size {size!r}; the body holds "
                             f"{len(binary) - offset} more bytes")
        raw = binary[offset:offset + size]
        if size != shape[0] * shape[1] * dtype.itemsize:
            raise InferError(f"input {spec.get('name')!r}: {size} bytes for shape {shape} of {datatype}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape), offset + size
    data = spec.get("data")
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise InferError(f"input {spec.get('name')!r} has no numeric data") from None
    if values.size != shape[0] * shape[1]:
        raise InferError(f"input {spec.get('name')!r} holds {values.size} values for shape {shape}")
    values = values.reshape(shape)
    if datatype != "FP32" and (not np.isfinite(values).all() or (values != np.round(values)).any()
                               or values.min(initial=0) < 0 or values.max(initial=0) > np.iinfo(dtype).max):
        raise InferError(f"input {spec.get('name')!r}: {datatype} values must be integers in 0..{np.iinfo(dtype).max}")
    return values.astype(dtype), offset


def infer(service: PredictionService, name: str, body: bytes, header_length: str | None) -> Reply:
    """Answer one ``/infer`` request; :class:`InferError` for what the request gets wrong."""
    from softbits.device.encode import encode
    from softbits.errors import DataError

    request, binary = _split(body, header_length)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InferError("an inference request holds exactly one input: codes or features")
    spec = inputs[0]
    tensor, _ = _tensor(spec, binary, 0)
    sent = _sent(service)
    if spec.get("name") == "codes":
        if tensor.shape[1] != len(sent):
            raise InferError(f"codes must have {len(sent)} columns (the features sent), got {tensor.shape[1]}")
        codes = np.zeros((tensor.shape[0], service.spec.n_features), dtype=np.int64)
        codes[:, sent] = tensor
    elif spec.get("name") == "features":
        if spec.get("datatype") != "FP32" or tensor.shape[1] != service.spec.n_features:
            raise InferError(f"features must be FP32 with {service.spec.n_features} columns")
        codes = encode(service.spec, tensor.astype(np.float32))
    else:
        raise InferError(f"unknown input {spec.get('name')!r}; this model takes codes or features")
    if len(codes) > 65535:
        raise InferError("at most 65,535 rows per request")
    try:
        values, _ = service.predict_codes(codes)  # a non-finite value fails as JSON below: a 500
    except DataError as exc:
        raise InferError(str(exc)) from None
    labels = service.model.task == "classification"
    wanted = {o.get("name"): o for o in request.get("outputs") or [] if isinstance(o, dict)}
    as_binary = bool(((wanted.get("predictions") or {}).get("parameters") or {}).get("binary_data"))
    output: dict[str, Any] = {"name": "predictions", "datatype": "BYTES" if labels else "FP32", "shape": [len(values), 1]}
    tail = b""
    if as_binary:
        if labels:
            tail = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in map(str, values))
        else:
            tail = np.asarray(values, dtype="<f4").tobytes()
        output["parameters"] = {"binary_data_size": len(tail)}
    else:
        output["data"] = [str(v) for v in values] if labels else [float(np.float32(v)) for v in values]
    reply = {"model_name": name, "model_version": "1", "outputs": [output]}
    if "id" in request:
        reply["id"] = str(request["id"])
    text = json.dumps(reply, allow_nan=False).encode()
    return Reply(text + tail, len(text) if as_binary else None)
