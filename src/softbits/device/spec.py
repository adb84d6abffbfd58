"""The encoder spec: what a device needs to turn raw features into codes, and its model id.

The spec is the public device contract (``encoder.json``): per feature the sorted thresholds in
*raw* input units as float32, the bits per feature and the feature order. The Python encoder, the
generated C and the server all derive from one :class:`EncoderSpec`, so they agree bit for bit.

Folding the standardizer into the thresholds: the network was trained on x_std = (x − mean) /
scale and the device compares raw x, so each stored float32 standardized threshold a_std becomes
the raw float32 ``a_raw`` with ``x > a_raw`` ⟺ ``float32((x − mean)/scale) > a_std`` for every
float32 x (see :func:`raw_thresholds`): device codes equal the model's codes on float32 inputs.
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
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from softbits.codes import check_bits, max_code, n_thresholds, payload_bytes
from softbits.errors import ConfigError, DataError

if TYPE_CHECKING:
    from softbits.trained_model import TrainedModel

__all__ = [
    "ENCODER_FORMAT",
    "ENCODER_FORMAT_VERSION",
    "EncoderSpec",
    "canonical_bytes",
    "float32_keys",
    "raw_thresholds",
]

ENCODER_FORMAT = "softbits-encoder"
ENCODER_FORMAT_VERSION = 1
_CANON_TAG = b"softbits-encoder\x00"


def float32_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving int32 keys of float32 values (NaN excluded): ``key(x) > key(t)`` ⟺ ``x > t``.

    Sign-magnitude bits become two's complement, so both zeros map to 0; the generated C
    compares these keys instead of floats.
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.int64)
    magnitude = bits & 0x7FFFFFFF
    return np.where(bits >> 31 == 1, -magnitude, magnitude).astype(np.int32)


def _from_keys(keys: np.ndarray) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.int64)
    bits = np.where(keys < 0, 0x80000000 | -keys, keys).astype(np.uint32)
    return bits.view(np.float32)


def raw_thresholds(std_sorted: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Standardized float32 thresholds [F, M] → raw-unit float32 thresholds, sorted per row.

    The model compares ``float32((x − mean) / scale) > a_std`` (float64 arithmetic, one rounding).
    That is monotone in x, so the inputs it calls "above" are exactly the float32 values
    ``x ≥ x0``. The raw threshold is ``a_raw`` = the float32 just below ``x0``, found by bisection
    over the ordered float32 values; then ``x > a_raw`` ⟺ the model's comparison, for every
    float32 x, including values that sit on a threshold (common for quantile thresholds of
    discrete features). ``a_raw`` differs from ``float32(a_std · scale + mean)`` by less than one
    float32 step of a_std (times scale) plus one raw ulp.
    """
    a = np.asarray(std_sorted, dtype=np.float32)
    mean = np.asarray(mean, dtype=np.float64).reshape(-1, 1)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1, 1)
    if np.any(scale <= 0):
        raise DataError("input scaler has a non-positive scale; cannot fold it into thresholds")
    top = 0x7F7FFFFF  # key of the largest finite float32
    lo = np.full(a.shape, -top, dtype=np.int64)  # smallest finite float32
    hi = np.full(a.shape, top + 1, dtype=np.int64)  # "no finite float32 is above"
    with np.errstate(over="ignore", invalid="ignore"):
        while np.any(lo < hi):
            mid = (lo + hi) // 2
            x = _from_keys(np.minimum(mid, top)).astype(np.float64)
            above = ((x - mean) / scale).astype(np.float32) > a
            hi = np.where((lo < hi) & above, mid, hi)
            lo = np.where((lo < hi) & ~above, mid + 1, lo)
    if np.any(lo == -top):
        raise DataError("a threshold lies below every finite float32 input; the encoder cannot be exported")
    raw = _from_keys(np.minimum(lo - 1, top))
    return np.sort(raw, axis=1)


def canonical_bytes(feature_names: tuple[str, ...], bits: int, thresholds: np.ndarray,
                    format_version: int = ENCODER_FORMAT_VERSION) -> bytes:
    """The byte string the model id hashes.

    ``b"softbits-encoder\\0"``, then ``<u8 format_version, u8 bits, u16 n_features>``, then per
    feature ``<u16 len(name_utf8)>`` + name_utf8 + its thresholds as little-endian float32.
    """
    parts = [_CANON_TAG, struct.pack("<BBH", format_version, bits, len(feature_names))]
    table = np.ascontiguousarray(thresholds, dtype="<f4")
    for name, row in zip(feature_names, table, strict=True):
        encoded = name.encode("utf-8")
        parts += [struct.pack("<H", len(encoded)), encoded, row.tobytes()]
    return b"".join(parts)


@dataclass(frozen=True, eq=False)
class EncoderSpec:
    """Raw-unit threshold table [F, 2^bits − 1] (float32, sorted rows) plus names and bits.

    Two specs are equal when their canonical bytes are (``source`` is informative only).
    """

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
            raise DataError(f"unsupported encoder format version {self.format_version} "
                                f"(this softbits reads {ENCODER_FORMAT_VERSION})")
        try:
            check_bits(self.bits)
        except ConfigError as exc:
            raise DataError(f"encoder spec: {exc}") from None
        if not 1 <= len(names) <= 0xFFFF:
            raise DataError(f"an encoder needs 1..65535 features, got {len(names)}")
        expected = (len(names), n_thresholds(self.bits))
        if table.shape != expected:
            raise DataError(f"threshold table has shape {table.shape}, expected {expected}")
        if not np.all(np.isfinite(table)):
            raise DataError("encoder thresholds must be finite float32 values")
        if np.any(np.diff(table, axis=1) < 0):
            raise DataError("encoder thresholds must be sorted ascending per feature")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EncoderSpec):
            return NotImplemented
        return self.canonical() == other.canonical()

    def __hash__(self) -> int:
        return hash(self.model_id_bytes)

    def canonical(self) -> bytes:
        return canonical_bytes(self.feature_names, self.bits, self.thresholds, self.format_version)

    # ---- derived sizes -----------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_thresholds(self) -> int:
        return n_thresholds(self.bits)

    @property
    def max_code(self) -> int:
        """The largest code: every threshold exceeded."""
        return max_code(self.bits)

    @property
    def sample_bytes(self) -> int:
        """Packed bytes per sample: ⌈F·bits / 8⌉."""
        return payload_bytes(self.n_features, self.bits)

    @cached_property
    def model_id_bytes(self) -> bytes:
        return hashlib.sha256(self.canonical()).digest()[:8]

    @cached_property
    def model_id(self) -> str:
        return self.model_id_bytes.hex()

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: TrainedModel) -> EncoderSpec:
        """The device encoder of a trained threshold model (raises for fp/lsq/llt)."""
        q = model.module.quantizer
        if q is None or not getattr(q, "has_thresholds", False):
            kind = "full precision" if q is None else f"quantizer {q.kind!r}"
            raise DataError(f"method {model.config.method} ({kind}) has no threshold encoder; "
                                "only threshold methods (bw-*, sq, pr-*, po-*) export a device encoder")
        table = raw_thresholds(q.sorted_thresholds(), model.x_scaler.mean, model.x_scaler.scale)
        source = {"method": model.config.method, "dataset": model.dataset, "task": model.task}
        return cls(tuple(model.feature_names), int(q.bits), table, source=source)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> EncoderSpec:
        """Read ``encoder.json``'s object; checks the model id it states."""
        try:
            if obj.get("format") != ENCODER_FORMAT:
                raise DataError(f"not a softbits encoder spec (format {obj.get('format')!r})")
            features = obj["features"]
            bits = {int(f["bits"]) for f in features}
            if len(bits) != 1:
                raise DataError(f"all features must share one bit width, got {sorted(bits)}")
            spec = cls(tuple(f["name"] for f in features), bits.pop(),
                       np.array([f["thresholds"] for f in features], dtype=np.float64).astype(np.float32),
                       format_version=int(obj["format_version"]), source=dict(obj.get("source", {})))
        except DataError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed encoder spec: {exc}") from None
        if obj.get("model_id") != spec.model_id:
            raise DataError(f"encoder spec states model id {obj.get('model_id')!r} "
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
                for name, row in zip(self.feature_names, self.thresholds, strict=True)
            ],
            "source": self.source,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"
