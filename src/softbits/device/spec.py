"""The encoder spec: what a device needs to turn raw features into codes, and its model id.

The spec is the public device contract (``encoder.json``): per feature the sorted thresholds in
*raw* input units as float32, the bits per feature and the feature order. The Python encoder, the
generated C and the server all derive from one :class:`EncoderSpec`, so they agree bit for bit.

Folding the standardizer into the thresholds: the network was trained on x_std = (x − mean) /
scale and the device compares raw x, so each stored float32 standardized threshold a_std becomes
``a_raw = float32(float64(a_std) · scale + mean)`` (float64 arithmetic, one rounding to float32).
Because scale > 0 the map is monotone, so sorted standardized thresholds stay sorted.

The model id is the first 8 bytes of SHA-256 over a canonical binary form of the spec (see
:func:`canonical_bytes`); it names the code contract, so a payload encoded for one spec is
rejected by a server holding another.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from softbits.errors import SoftbitsError

if TYPE_CHECKING:
    from softbits.artifact import TrainedModel

__all__ = [
    "ENCODER_FORMAT",
    "ENCODER_FORMAT_VERSION",
    "MAX_BITS",
    "EncoderSpec",
    "canonical_bytes",
    "raw_thresholds",
]

ENCODER_FORMAT = "softbits-encoder"
ENCODER_FORMAT_VERSION = 1
#: codes travel as at most 16-bit integers (uint16 on the server side)
MAX_BITS = 16
_CANON_TAG = b"softbits-encoder\x00"


def raw_thresholds(std_sorted: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Standardized float32 thresholds [F, M] → raw-unit float32 thresholds, sorted per row.

    Computed in float64 and rounded once to float32, the precision the device compares in.
    """
    a = np.asarray(std_sorted, dtype=np.float32).astype(np.float64)
    mean = np.asarray(mean, dtype=np.float64).reshape(-1, 1)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1, 1)
    if np.any(scale <= 0):
        raise SoftbitsError("input scaler has a non-positive scale; cannot fold it into thresholds")
    raw = np.sort((a * scale + mean).astype(np.float32), axis=1)
    if not np.all(np.isfinite(raw)):
        raise SoftbitsError("a raw-unit threshold is not finite in float32; the encoder cannot be exported")
    return raw


def canonical_bytes(feature_names: tuple[str, ...], bits: int, thresholds: np.ndarray,
                    format_version: int = ENCODER_FORMAT_VERSION) -> bytes:
    """The byte string the model id hashes.

    ``b"softbits-encoder\\0"``, then ``<u8 format_version, u8 bits, u16 n_features>``, then per
    feature ``<u16 len(name_utf8)>`` + name_utf8 + its thresholds as little-endian float32.
    """
    parts = [_CANON_TAG, struct.pack("<BBH", format_version, bits, len(feature_names))]
    table = np.ascontiguousarray(thresholds, dtype="<f4")
    for name, row in zip(feature_names, table):
        encoded = name.encode("utf-8")
        parts += [struct.pack("<H", len(encoded)), encoded, row.tobytes()]
    return b"".join(parts)


@dataclass(frozen=True)
class EncoderSpec:
    """Raw-unit threshold table [F, 2^bits − 1] (float32, sorted rows) plus names and bits."""

    feature_names: tuple[str, ...]
    bits: int
    thresholds: np.ndarray
    format_version: int = ENCODER_FORMAT_VERSION
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.feature_names)
        object.__setattr__(self, "feature_names", names)
        table = np.ascontiguousarray(self.thresholds, dtype=np.float32)
        table.setflags(write=False)
        object.__setattr__(self, "thresholds", table)
        if self.format_version != ENCODER_FORMAT_VERSION:
            raise SoftbitsError(f"unsupported encoder format version {self.format_version} "
                                f"(this softbits reads {ENCODER_FORMAT_VERSION})")
        if not 1 <= self.bits <= MAX_BITS:
            raise SoftbitsError(f"bits per feature must be 1..{MAX_BITS}, got {self.bits}")
        if not 1 <= len(names) <= 0xFFFF:
            raise SoftbitsError(f"an encoder needs 1..65535 features, got {len(names)}")
        expected = (len(names), (1 << self.bits) - 1)
        if table.shape != expected:
            raise SoftbitsError(f"threshold table has shape {table.shape}, expected {expected}")
        if not np.all(np.isfinite(table)):
            raise SoftbitsError("encoder thresholds must be finite float32 values")
        if np.any(np.diff(table, axis=1) < 0):
            raise SoftbitsError("encoder thresholds must be sorted ascending per feature")

    # ---- derived sizes -----------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_thresholds(self) -> int:
        return (1 << self.bits) - 1

    @property
    def max_code(self) -> int:
        return (1 << self.bits) - 1

    @property
    def sample_bytes(self) -> int:
        """Packed bytes per sample: ⌈F·bits / 8⌉."""
        return (self.n_features * self.bits + 7) // 8

    @property
    def model_id_bytes(self) -> bytes:
        digest = hashlib.sha256(canonical_bytes(self.feature_names, self.bits, self.thresholds,
                                                self.format_version)).digest()
        return digest[:8]

    @property
    def model_id(self) -> str:
        return self.model_id_bytes.hex()

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: "TrainedModel") -> "EncoderSpec":
        """The device encoder of a trained threshold model (raises for fp/lsq/llt)."""
        q = model.module.quantizer
        if q is None or not getattr(q, "has_thresholds", False):
            kind = "full precision" if q is None else f"quantizer {q.kind!r}"
            raise SoftbitsError(f"method {model.config.method} ({kind}) has no threshold encoder; "
                                "only threshold methods (bw-*, sq, pr-*, po-*) export a device encoder")
        table = raw_thresholds(q.sorted_thresholds(), model.x_scaler.mean, model.x_scaler.scale)
        source = {"method": model.config.method, "dataset": model.dataset, "task": model.task}
        return cls(tuple(model.feature_names), int(q.bits), table, source=source)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "EncoderSpec":
        """Read ``encoder.json``'s object; checks the model id it states."""
        try:
            if obj.get("format") != ENCODER_FORMAT:
                raise SoftbitsError(f"not a softbits encoder spec (format {obj.get('format')!r})")
            features = obj["features"]
            bits = {int(f["bits"]) for f in features}
            if len(bits) != 1:
                raise SoftbitsError(f"all features must share one bit width, got {sorted(bits)}")
            spec = cls(tuple(f["name"] for f in features), bits.pop(),
                       np.array([f["thresholds"] for f in features], dtype=np.float64).astype(np.float32),
                       format_version=int(obj["format_version"]), source=dict(obj.get("source", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise SoftbitsError(f"malformed encoder spec: {exc}") from None
        if obj.get("model_id") != spec.model_id:
            raise SoftbitsError(f"encoder spec states model id {obj.get('model_id')!r} "
                                f"but its content hashes to {spec.model_id}")
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The ``encoder.json`` object; float32 thresholds as exact decimal (float64 repr)."""
        return {
            "format": ENCODER_FORMAT,
            "format_version": self.format_version,
            "model_id": self.model_id,
            "n_features": self.n_features,
            "bits": self.bits,
            "sample_bytes": self.sample_bytes,
            "code": "k = number of thresholds t with x > t (strict, float32); NaN -> 0",
            "bit_order": "lsb-first",
            "features": [
                {"name": name, "bits": self.bits, "thresholds": [float(v) for v in row]}
                for name, row in zip(self.feature_names, self.thresholds)
            ],
            "source": self.source,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"
