"""The transport-independent server core: payload bytes in, a status and a reply body out.

HTTP and CoAP both call :meth:`PredictionService.answer`, so they validate, batch and format
identically; only the mapping of the status to 200/400/404/413/500 or 2.05/4.00/4.04/4.13/5.00
differs. A payload posted to the plain route is a full payload or a compact frame (the wire
module tells them apart by the first byte); one posted to the route that names a model id is one
bare sample, answered 404 when the id is not this server's.
Replies are strict JSON: a batch with a NaN or infinite prediction (a model whose float32
arithmetic overflows, or whose weights are not finite) answers 500 naming the sample, rather
than ``NaN``/``Infinity``, which no JSON parser has to accept.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from softbits.device.predict import prediction_values
from softbits.device.spec import EncoderSpec
from softbits.device.wire import HEADER_BYTES, PayloadError, PayloadTooLarge, build_payload, parse_payload
from softbits.errors import ConfigError, DataError

if TYPE_CHECKING:
    from softbits.training.trained_model import TrainedModel

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "Answer", "PredictionService"]

#: 64 KiB: thousands of samples for typical models, far above one device message
DEFAULT_MAX_PAYLOAD_BYTES = 65536

log = logging.getLogger("softbits.serve")

_NON_FINITE = b"the model predicted a non-finite value"


@dataclass(frozen=True)
class Answer:
    """``status`` is 200, 400, 404, 413 or 500; ``body`` is JSON (200) or a one-line message."""

    status: int
    body: bytes
    #: samples predicted (0 when the payload was refused)
    n_samples: int = 0

    @property
    def ok(self) -> bool:
        return self.status == 200


class PredictionService:
    """A loaded model, its encoder spec and the payload size limit."""

    def __init__(self, model: TrainedModel, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        if max_payload_bytes < HEADER_BYTES:
            raise ConfigError(f"max_payload_bytes must be at least {HEADER_BYTES}")
        self.model = model
        self.spec = EncoderSpec.from_model(model)
        self.max_payload_bytes = int(max_payload_bytes)
        self.spec_json = self.spec.to_json().encode("utf-8")
        from softbits.serve.drift import DriftMonitor
        from softbits.serve.metrics import ServiceMetrics

        self.metrics = ServiceMetrics(self.spec.model_id, model.config.method, model.bits)
        self.drift: DriftMonitor | None = None
        self.model.module.eval()
        # one request at startup loads the lazy imports (numba check, torch kernels), so the
        # first device does not wait for them; it is not a device's sample, so it comes before
        # the drift monitor
        warm = self._answer(build_payload(self.spec, np.zeros((1, self.spec.sample_bytes), np.uint8)))
        if warm.status == 500 and warm.body.startswith(_NON_FINITE):
            raise DataError("cannot serve this model: it predicts a non-finite value for an all-zero "
                            "payload (are its weights finite?)")
        if not warm.ok:
            raise DataError(f"cannot serve this model: it cannot answer a valid payload: {warm.body.decode()}")
        if model.code_histogram is not None:
            self.drift = DriftMonitor(model.feature_names, model.code_histogram)
            self.metrics.watch_drift(self.drift.report)

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def drift_report(self) -> bytes:
        """``GET /v1/drift``'s JSON: per sent feature PSI and Jensen-Shannon distance against training."""
        from softbits.serve.drift import DECAY_EVERY

        features = [] if self.drift is None else self.drift.report()
        return json.dumps({"model_id": self.model_id, "decay_every": DECAY_EVERY,
                           "reference": "training" if self.drift is not None else None,
                           "features": features}, allow_nan=False).encode()

    def predict_codes(self, codes: np.ndarray) -> tuple[list[Any], int | None]:
        """JSON-ready predictions for codes [N, F] (every route ends here) and the index of the
        first non-finite one (None when all are finite: only then do the codes count for drift)."""
        values = prediction_values(self.model, self.model.predict_codes(codes))
        bad = next((i for i, v in enumerate(values) if isinstance(v, float) and not math.isfinite(v)), None)
        if bad is None and self.drift is not None:
            self.drift.add(codes)
        return values, bad

    def too_large(self, n_bytes: int) -> Answer:
        """The 413 answer for a body known to be ``n_bytes`` long before it is parsed."""
        return Answer(413, str(PayloadTooLarge(n_bytes, self.max_payload_bytes)).encode())

    def answer(self, data: bytes, route_model_id: str | None = None) -> Answer:
        """Predict every sample of one payload as one batch; never raises.

        ``route_model_id`` is the model id the request's route names; the body is then one bare
        sample of that model.
        """
        if route_model_id is not None and route_model_id.lower() != self.model_id:
            return Answer(404, f"no model {route_model_id} here: this server has {self.model_id}".encode())
        answer = self._answer(data, "auto" if route_model_id is None else "none")
        if answer.status == 500 and answer.body.startswith(_NON_FINITE):
            log.warning("%s", answer.body.decode())
        return answer

    def _answer(self, data: bytes, frame: Literal["auto", "none"] = "auto") -> Answer:
        try:
            values, bad = self.predict_codes(parse_payload(self.spec, data, self.max_payload_bytes, frame))
        except PayloadTooLarge as exc:
            return Answer(413, str(exc).encode())
        except PayloadError as exc:
            return Answer(400, str(exc).encode())
        except Exception:  # noqa: BLE001 - a bug must not stop the server; log it, answer 500
            log.exception("prediction failed")
            return Answer(500, b"internal error while predicting")
        if bad is not None:
            return Answer(500, f"{_NON_FINITE.decode()} ({values[bad]}) for sample {bad + 1} "
                               f"of {len(values)}".encode())
        body = {"model_id": self.model_id, "n_samples": len(values), "predictions": values}
        return Answer(200, json.dumps(body, separators=(",", ":"), allow_nan=False).encode(), len(values))
