"""Drift from codes: the server's incoming code histograms against the training part's.

A device sends discrete codes, and the codes already are histogram bins: the model file keeps
each sent feature's code counts on the rows it trained on (``TrainedModel.code_histogram``), and
:class:`DriftMonitor` counts the codes of every answered sample. ``GET /v1/drift`` reports per
sent feature the population stability index

    PSI = Σ_k (p_k − q_k) · ln(p_k / q_k)

and the Jensen–Shannon distance (base 2, in 0..1) of the incoming distribution p against the
training one q, both with half a count added to every bin so that an empty bin stays finite.
Rules of thumb: PSI < 0.1 no shift, 0.1–0.25 a moderate one, > 0.25 a large one.

Memory is bounded: counts only, F·2^w numbers. They decay: once :data:`DECAY_EVERY` samples have
arrived since the last decay, every count is halved, so the report weighs the last few times
10,000 samples most and an old shift fades. A dead sensor is visible: the encoder maps NaN to
code 0, so its mass moves to code 0 and its PSI jumps.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

__all__ = ["DECAY_EVERY", "DriftMonitor", "js_distance", "psi"]

#: samples between two halvings of the incoming counts
DECAY_EVERY = 10_000


def _smoothed(counts: np.ndarray) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64) + 0.5
    return c / c.sum()


def psi(incoming: np.ndarray, reference: np.ndarray) -> float:
    """Population stability index of ``incoming`` counts against ``reference`` counts."""
    p, q = _smoothed(incoming), _smoothed(reference)
    return float(np.sum((p - q) * np.log(p / q)))


def js_distance(incoming: np.ndarray, reference: np.ndarray) -> float:
    """Jensen–Shannon distance (the square root of the base-2 divergence), in 0..1."""
    p, q = _smoothed(incoming), _smoothed(reference)
    m = (p + q) / 2
    divergence = 0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m))
    return float(np.sqrt(max(divergence, 0.0)))


class DriftMonitor:
    """Incoming code counts of the sent features, against the training histograms."""

    def __init__(self, feature_names: list[str], histograms: list[list[int]]) -> None:
        self.features = [(f, name, np.asarray(h, dtype=np.float64))
                         for f, (name, h) in enumerate(zip(feature_names, histograms, strict=True)) if len(h) > 1]
        self.counts = [np.zeros_like(h) for _, _, h in self.features]
        self.samples = 0.0
        self.since_decay = 0
        self._lock = threading.Lock()

    def add(self, codes: np.ndarray) -> None:
        """Count the codes [N, F] of answered samples."""
        if codes.size == 0:
            return
        with self._lock:
            for (f, _, reference), counts in zip(self.features, self.counts, strict=True):
                counts += np.bincount(codes[:, f], minlength=len(reference))[:len(reference)]
            self.samples += len(codes)
            self.since_decay += len(codes)
            if self.since_decay >= DECAY_EVERY:
                for counts in self.counts:
                    counts *= 0.5
                self.samples *= 0.5
                self.since_decay = 0

    def report(self) -> list[dict[str, Any]]:
        """Per sent feature: ``name``, ``psi``, ``js`` and the (decayed) ``samples`` counted."""
        with self._lock:
            counts = [c.copy() for c in self.counts]
            samples = self.samples
        out = []
        for (_, name, reference), c in zip(self.features, counts, strict=True):
            seen = samples > 0
            out.append({"name": name, "psi": psi(c, reference) if seen else None,
                        "js": js_distance(c, reference) if seen else None, "samples": float(c.sum())})
        return out
