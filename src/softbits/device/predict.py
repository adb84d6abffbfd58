"""Predictions on the device contract: raw CSV rows or payloads → the same model outputs.

For threshold models the raw rows go through the device encoder (raw-unit float32 thresholds) and
the server's decoder, :meth:`~softbits.training.trained_model.TrainedModel.predict_codes`; a payload goes
through the decoder only. Both paths therefore give identical predictions for the same rows.
Models without a threshold encoder (fp, lsq, llt) predict from the raw rows directly.

Batching: a payload's samples are predicted as one batch. CPU BLAS kernels may round a row
differently depending on its position in a batch (panel remainders), so the same rows grouped into
different batches can differ in the last float32 bits (~1e-6 relative); the same batch gives the
same bits, which is why a payload's reply equals ``softbits predict`` on the same rows.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from softbits.device.encode import encode
from softbits.device.spec import EncoderSpec
from softbits.device.wire import Frame, parse_payload
from softbits.errors import DataError

if TYPE_CHECKING:
    from softbits.training.trained_model import TrainedModel

__all__ = ["device_spec", "format_prediction", "predict_payload", "predict_rows",
           "prediction_values", "read_features"]


def device_spec(model: TrainedModel) -> EncoderSpec | None:
    """The model's encoder spec, or ``None`` when it has no threshold encoder."""
    q = model.module.quantizer
    return EncoderSpec.from_model(model) if q is not None and q.has_thresholds else None


def read_features(path: Path, feature_names: list[str], target_name: str | None = None,
                  unsent: Collection[str] = ()) -> np.ndarray:
    """Feature rows [N, F] (float64) from a CSV with a header row.

    Columns are taken by the model's feature names when the header has them all (other columns,
    such as the target, are ignored); ``unsent`` features (width 0: nobody measures them, no
    encoder reads them) may be left out and read as NaN. By position only when there are exactly F columns and
    none is named like a model feature or the target: a header that names some of them but
    lacks others is missing features, and reading it by position would feed the wrong columns
    (the target among them) to the model. Empty cells become NaN, which the encoder maps to 0.
    """
    import pandas as pd

    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path} as CSV: {str(exc).splitlines()[0]}") from None
    names = [str(c) for c in frame.columns]
    missing = [n for n in feature_names if n not in names and n not in unsent]
    known = set(feature_names) | ({target_name} if target_name is not None else set())
    if not missing:
        frame = frame.reindex(columns=feature_names)
    elif known & set(names):
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{path} lacks the model's feature column(s) {shown} (its header has {len(names)} "
                        f"columns; the model expects {len(feature_names)} features: {', '.join(feature_names)})")
    elif len(names) != len(feature_names):
        raise DataError(f"{path} has {len(names)} columns but the model expects {len(feature_names)} "
                        f"features ({', '.join(feature_names)}); name the columns like the model's "
                        f"features or give exactly {len(feature_names)} columns")
    if frame.shape[0] == 0:
        raise DataError(f"{path} has no rows")
    try:
        return frame.apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path} has a non-numeric feature value: {exc}") from None


def predict_rows(model: TrainedModel, X: np.ndarray) -> np.ndarray:
    """Predictions for raw rows; the device-exact path for threshold models."""
    spec = device_spec(model)
    if spec is None:
        return model.predict(X)
    return model.predict_codes(encode(spec, X))


def predict_payload(model: TrainedModel, spec: EncoderSpec, data: bytes, max_bytes: int | None = None,
                    frame: Frame | Literal["auto"] = "auto") -> np.ndarray:
    """Predictions for one payload (framed as :func:`~softbits.device.wire.parse_payload` reads
    it), all its samples as one batch."""
    return model.predict_codes(parse_payload(spec, data, max_bytes, frame))


def prediction_values(model: TrainedModel, pred: np.ndarray) -> list[Any]:
    """JSON-ready predictions: floats (regression) or class labels (classification)."""
    if model.task == "classification":
        idx = [int(i) for i in pred]
        return [model.classes[i] for i in idx] if model.classes else idx
    return [float(v) for v in pred]


def format_prediction(value: Any) -> str:
    """One output line; floats in shortest round-trip form, like JSON."""
    return repr(value) if isinstance(value, float) else str(value)
