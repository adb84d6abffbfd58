"""Prometheus metrics of a serving process, shared by HTTP, CoAP and the LoRaWAN webhooks.

``GET /metrics`` on the HTTP port exposes (names after Prometheus's naming guide):

- ``softbits_requests_total{transport, route, outcome}``: requests answered, by transport
  (``http``, ``coap``), route (``predict``, ``predict_named``, ``lorawan_ttn``,
  ``lorawan_chirpstack``) and outcome (``ok``, ``bad_request``, ``not_found``, ``too_large``,
  ``error``);
- ``softbits_request_duration_seconds{transport, route}``: a histogram of answering time;
- ``softbits_payload_bytes_total{transport}`` and ``softbits_samples_total{transport}``: bytes
  received in payloads and samples predicted;
- ``softbits_model_info{model_id, method, bits}``: 1, naming the model served;
- ``softbits_feature_psi{feature}`` and ``softbits_feature_js_distance{feature}``: the drift of
  each sent feature's codes against training (:mod:`softbits.serve.drift`), computed at scrape.

Each service has its own registry, so two servers in one process (the tests) count apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["OUTCOMES", "ServiceMetrics"]

OUTCOMES = {200: "ok", 204: "ok", 400: "bad_request", 404: "not_found", 413: "too_large", 500: "error"}
#: latency buckets (seconds): a one-sample answer takes about 0.1-1 ms
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class ServiceMetrics:
    """The counters and histograms of one service, in their own registry."""

    def __init__(self, model_id: str, method: str, bits: int | None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("softbits_requests", "Requests answered.", ("transport", "route", "outcome"),
                                registry=self.registry)
        self.duration = Histogram("softbits_request_duration_seconds", "Time to answer a request.",
                                  ("transport", "route"), buckets=_BUCKETS, registry=self.registry)
        self.payload_bytes = Counter("softbits_payload_bytes", "Payload bytes received.", ("transport",),
                                     registry=self.registry)
        self.samples = Counter("softbits_samples", "Samples predicted.", ("transport",), registry=self.registry)
        info = Gauge("softbits_model_info", "The model served (value 1).", ("model_id", "method", "bits"),
                     registry=self.registry)
        info.labels(model_id, method, "" if bits is None else str(bits)).set(1)

    @contextmanager
    def observe(self, transport: str, route: str) -> Iterator[dict[str, Any]]:
        """Time a request; the caller sets ``status``, ``bytes`` and ``samples`` in the yielded dict."""
        record: dict[str, Any] = {"status": 500, "bytes": 0, "samples": 0}
        start = time.perf_counter()
        try:
            yield record
        finally:
            self.duration.labels(transport, route).observe(time.perf_counter() - start)
            self.requests.labels(transport, route, OUTCOMES.get(record["status"], "error")).inc()
            if record["bytes"]:
                self.payload_bytes.labels(transport).inc(record["bytes"])
            if record["samples"]:
                self.samples.labels(transport).inc(record["samples"])

    def watch_drift(self, report: Callable[[], list[dict[str, Any]]]) -> None:
        """Expose ``report()``'s per-feature PSI and JS distance as gauges, computed at each scrape."""
        from prometheus_client.core import GaugeMetricFamily
        from prometheus_client.registry import Collector

        class DriftCollector(Collector):
            def collect(self) -> Any:
                psi = GaugeMetricFamily("softbits_feature_psi", "PSI of a feature's codes against training.",
                                        labels=["feature"])
                js = GaugeMetricFamily("softbits_feature_js_distance",
                                       "Jensen-Shannon distance of a feature's codes against training.",
                                       labels=["feature"])
                for row in report():
                    if row["psi"] is not None:
                        psi.add_metric([row["name"]], row["psi"])
                        js.add_metric([row["name"]], row["js"])
                yield psi
                yield js

        self.registry.register(DriftCollector())

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type, for ``GET /metrics``."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
