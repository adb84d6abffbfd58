"""What every benchmark script shares: best-of timing and writing its JSON result.

The scripts run as ``python benchmarks/NAME.py``, which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["best_of", "codes_of", "save_result"]


def codes_of(X: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Codes of standardized rows ``X`` [N, F] at sorted ``thresholds`` [F, M] (the count each
    value exceeds, as a device computes it), as floats for LightGBM."""
    return (X[:, :, None] > thresholds[None]).sum(-1).astype(np.float64)


def best_of(fn: Callable[[], object], blocks: int, calls: int = 1) -> float:
    """Seconds per call of ``fn``: the fastest of ``blocks`` blocks of ``calls`` calls, after a
    warm-up. The minimum, because on a shared machine noise only ever adds time."""
    for _ in range(min(calls, 100)):
        fn()
    best = float("inf")
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def save_result(result: dict[str, Any], out: Path) -> None:
    """Write ``result`` as JSON to ``out`` (folders created) and say where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
