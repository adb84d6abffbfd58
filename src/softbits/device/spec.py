"""The encoder spec: what a device needs to turn raw features into codes, and its model id.

The spec is the public device contract (``encoder.json``): per feature the sorted thresholds in
*raw* input units as float32, the bits per feature and the feature order. The Python encoder, the
generated C and the server all derive from one :class:`EncoderSpec`, so they agree bit for bit.

Widths: format version 1 gives every feature the same ``bits`` (the paper's setting, unchanged
byte for byte). Version 2 carries one width per feature (``widths``, 0..16; 0 = the feature is
neither measured nor sent); the table stays dense [F, 2^max − 1] with +inf in the slots a
feature does not use, so every counting encoder gives feature f codes ≤ 2^w_f − 1 unchanged
(no float32 x is ``> +inf``). Widths that are all equal are the version-1 spec, same model id.

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

from softbits.codes import check_bits, check_widths, max_code, n_thresholds, payload_bytes, widths_payload_bytes
from softbits.data.names import check_feature_names
from softbits.errors import ConfigError, DataError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike

    from softbits.nn.quantizers import Quantizer
    from softbits.training.trained_model import TrainedModel

__all__ = [
    "ENCODER_FORMAT",
    "ENCODER_FORMAT_VERSION",
    "MIXED_FORMAT_VERSION",
    "EncoderSpec",
    "canonical_bytes",
    "float32_keys",
    "raw_thresholds",
]

ENCODER_FORMAT = "softbits-encoder"
#: the version a uniform spec keeps; mixed widths are :data:`MIXED_FORMAT_VERSION`
ENCODER_FORMAT_VERSION = 1
MIXED_FORMAT_VERSION = 2
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
    float32 step of a_std (times scale) plus one raw ulp. +inf entries (the unused slots of a
    mixed-width table) are not thresholds: they stay +inf, after each row's finite ones.
    """
    given = np.asarray(std_sorted, dtype=np.float32)
    unused = np.isposinf(given)
    a = np.where(unused, np.float32(0), given)
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
    raw = np.where(unused, np.float32(np.inf), _from_keys(np.minimum(lo - 1, top)))
    return np.sort(raw, axis=1)


def canonical_bytes(feature_names: tuple[str, ...], bits: int, thresholds: np.ndarray,
                    format_version: int = ENCODER_FORMAT_VERSION,
                    widths: tuple[int, ...] | None = None) -> bytes:
    """The byte string the model id hashes.

    ``b"softbits-encoder\\0"``, then ``<u8 format_version, u8 bits, u16 n_features>``, then per
    feature ``<u16 len(name_utf8)>`` + name_utf8 + its thresholds as little-endian float32.
    With ``widths`` (version 2) the bits byte is 0 and each name is followed by ``<u8 w_f>`` and
    only the feature's 2^w_f − 1 active thresholds.
    """
    parts = [_CANON_TAG, struct.pack("<BBH", format_version, 0 if widths else bits, len(feature_names))]
    table = np.ascontiguousarray(thresholds, dtype="<f4")
    for f, (name, row) in enumerate(zip(feature_names, table, strict=True)):
        encoded = name.encode("utf-8")
        parts += [struct.pack("<H", len(encoded)), encoded]
        if widths:
            parts += [struct.pack("<B", widths[f]), row[:n_thresholds(widths[f])].tobytes()]
        else:
            parts.append(row.tobytes())
    return b"".join(parts)


@dataclass(frozen=True, eq=False)
class EncoderSpec:
    """Raw-unit threshold table [F, 2^bits − 1] (float32, sorted rows) plus names and bits.

    ``widths``: one width per feature (0..16, 0 = not sent) for a mixed-width spec, whose
    ``bits`` is the widest; feature f uses its row's first 2^w_f − 1 slots, the rest are +inf.
    Equal widths are stored as the uniform spec (``widths`` None). ``format_version`` follows
    from the widths (1 uniform, 2 mixed); a stated one must agree. Two specs are equal when
    their canonical bytes are (``source`` is informative only).
    """

    feature_names: tuple[str, ...]
    bits: int
    thresholds: np.ndarray
    format_version: int | None = None
    source: dict[str, Any] = field(default_factory=dict, compare=False)
    widths: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        try:
            names = tuple(check_feature_names(list(self.feature_names), "the encoder spec", allow_empty=True))
        except DataError as exc:
            raise DataError(f"encoder spec: {exc}") from None
        object.__setattr__(self, "feature_names", names)
        table = np.ascontiguousarray(self.thresholds, dtype=np.float32)
        table.setflags(write=False)
        object.__setattr__(self, "thresholds", table)
        try:
            check_bits(self.bits)
            widths = None if self.widths is None else check_widths(self.widths, len(names))
        except ConfigError as exc:
            raise DataError(f"encoder spec: {exc}") from None
        if widths is not None and max(widths) != self.bits:
            raise DataError(f"encoder spec states bits {self.bits} but its widest feature has {max(widths)}")
        if widths is not None and len(set(widths)) == 1:
            widths = None  # every feature at `bits`: the uniform spec, same bytes and id
        object.__setattr__(self, "widths", widths)
        version = MIXED_FORMAT_VERSION if widths else ENCODER_FORMAT_VERSION
        if self.format_version is not None and _readable(self.format_version) != version:
            if version == ENCODER_FORMAT_VERSION:
                raise DataError("encoder format_version 2 is for mixed widths; a spec whose features all "
                                "share one width is format_version 1")
            raise DataError("encoder format version 1 is for uniform widths; mixed widths are format version 2")
        object.__setattr__(self, "format_version", version)
        if not 1 <= len(names) <= 0xFFFF:
            raise DataError(f"an encoder needs 1..65535 features, got {len(names)}")
        expected = (len(names), n_thresholds(self.bits))
        if table.shape != expected:
            raise DataError(f"threshold table has shape {table.shape}, expected {expected}")
        active = self.active
        if not np.all(np.isfinite(table[active])):
            raise DataError("encoder thresholds must be finite float32 values")
        if not np.all(np.isposinf(table[~active])):
            raise DataError("inactive threshold slots must be +inf: feature f of width w uses only "
                            "its first 2^w - 1 thresholds")
        with np.errstate(invalid="ignore"):  # inf - inf in the inactive tail
            if np.any(np.diff(table, axis=1) < 0):
                raise DataError("encoder thresholds must be sorted ascending per feature")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EncoderSpec):
            return NotImplemented
        return self.canonical() == other.canonical()

    def __hash__(self) -> int:
        return hash(self.model_id_bytes)

    def canonical(self) -> bytes:
        version = MIXED_FORMAT_VERSION if self.widths else ENCODER_FORMAT_VERSION
        return canonical_bytes(self.feature_names, self.bits, self.thresholds, version, self.widths)

    # ---- derived sizes -----------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def feature_bits(self) -> tuple[int, ...]:
        """Each feature's width, uniform or not: what packing and unpacking walk."""
        return self.widths if self.widths is not None else (self.bits,) * self.n_features

    @property
    def unsent_features(self) -> tuple[str, ...]:
        """Names of the 0-width features: neither measured nor sent, never read by an encoder."""
        return tuple(name for name, w in zip(self.feature_names, self.feature_bits, strict=True) if w == 0)

    @property
    def code_bits(self) -> int:
        """Bits of codes per sample, Σ w_f (F·bits when uniform)."""
        return sum(self.feature_bits)

    @property
    def active(self) -> np.ndarray:
        """[F, 2^bits − 1] bool: the slots that hold thresholds (all of them when uniform)."""
        counts = np.array([n_thresholds(w) for w in self.feature_bits])
        return np.arange(self.n_thresholds)[None, :] < counts[:, None]

    @property
    def n_thresholds(self) -> int:
        """Slots per row of the dense table, 2^bits − 1 (the widest feature's count)."""
        return n_thresholds(self.bits)

    @property
    def max_code(self) -> int:
        """The largest code of the widest feature: every threshold exceeded."""
        return max_code(self.bits)

    @property
    def sample_bytes(self) -> int:
        """Packed bytes per sample: ⌈Σ w_f / 8⌉ (⌈F·bits / 8⌉ when uniform)."""
        if self.widths is None:
            return payload_bytes(self.n_features, self.bits)
        return widths_payload_bytes(self.widths)

    @cached_property
    def model_id_bytes(self) -> bytes:
        return hashlib.sha256(self.canonical()).digest()[:8]

    @cached_property
    def model_id(self) -> str:
        return self.model_id_bytes.hex()

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_quantizer(cls, quantizer: Quantizer, feature_names: Sequence[str], *,
                       mean: ArrayLike | None = None, scale: ArrayLike | None = None,
                       source: dict[str, Any] | None = None) -> EncoderSpec:
        """The device encoder of any threshold quantizer, e.g. one inside a model of your own.

        Parameters
        ----------
        quantizer
            A threshold quantizer (``BitwiseQuantizer``, ``SoftQuantizer``, ``MidpointQuantizer``,
            ...); LSQ and LLT have no threshold table and are refused.
        feature_names
            One name per feature, in the quantizer's feature order.
        mean, scale
            The standardization the quantizer's inputs went through, ``(x − mean) / scale``, so
            the device compares raw readings; leave both out when it saw raw units.
        source
            Free-form provenance stored in the spec (not part of the model id).
        """
        if not getattr(quantizer, "has_thresholds", False):
            raise DataError(f"quantizer {getattr(quantizer, 'kind', type(quantizer).__name__)!r} has no "
                            "threshold table; only threshold quantizers (bitwise, soft, midpoint, ...) "
                            "export a device encoder")
        names = tuple(str(name) for name in feature_names)
        n = int(quantizer.n_features)
        if len(names) != n:
            raise DataError(f"got {len(names)} feature names for a quantizer of {n} features")
        if (mean is None) != (scale is None):
            raise DataError("give both mean and scale (the standardization the inputs went through) or neither")
        mu = np.zeros(n) if mean is None else np.asarray(mean, dtype=np.float64).reshape(-1)
        sd = np.ones(n) if scale is None else np.asarray(scale, dtype=np.float64).reshape(-1)
        if mu.shape != (n,) or sd.shape != (n,):
            raise DataError(f"mean and scale must hold {n} values each, got {mu.size} and {sd.size}")
        # a mixed-width quantizer pads each row's unused slots with +inf, which stay +inf
        table = raw_thresholds(quantizer.sorted_thresholds(), mu, sd)
        widths = getattr(quantizer, "widths", None)
        return cls(names, int(quantizer.bits), table, source=dict(source or {}),
                   widths=None if widths is None else tuple(widths))

    @classmethod
    def from_model(cls, model: TrainedModel) -> EncoderSpec:
        """The device encoder of a trained threshold model (raises for fp/lsq/llt)."""
        q = model.module.quantizer
        if q is None or not getattr(q, "has_thresholds", False):
            kind = "full precision" if q is None else f"quantizer {q.kind!r}"
            raise DataError(f"method {model.config.method} ({kind}) has no threshold encoder; "
                            "only threshold methods (bw-*, sq, pr-*, po-*) export a device encoder")
        source = {"method": model.config.method, "dataset": model.dataset, "task": model.task}
        return cls.from_quantizer(q, model.feature_names, mean=model.x_scaler.mean,
                                  scale=model.x_scaler.scale, source=source)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> EncoderSpec:
        """Read ``encoder.json``'s object; checks the model id it states. Anything wrong with it
        is a :class:`DataError`."""
        if not isinstance(obj, dict):
            raise DataError(f"not a softbits encoder spec (a JSON {type(obj).__name__}, not an object)")
        try:
            if obj.get("format") != ENCODER_FORMAT:
                raise DataError(f"not a softbits encoder spec (format {obj.get('format')!r})")
            version = _readable(_whole(obj["format_version"], "format_version"))
            features = obj["features"]
            if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
                raise DataError("malformed encoder spec: features must be a list of objects")
            if version == MIXED_FORMAT_VERSION:
                spec = _mixed_from_dict(cls, obj)
            else:
                bits = {_whole(f["bits"], "bits") for f in features}
                if len(bits) != 1:
                    raise DataError(f"all features must share one bit width, got {sorted(bits)}")
                spec = cls(tuple(f["name"] for f in features), bits.pop(),
                           np.array([f["thresholds"] for f in features], dtype=np.float64).astype(np.float32),
                           format_version=version, source=dict(obj.get("source", {})))
        except DataError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError, UnicodeError) as exc:
            raise DataError(f"malformed encoder spec: {type(exc).__name__}: {str(exc)[:200]}") from None
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
            "bits": None if self.widths else self.bits,
            "sample_bytes": self.sample_bytes,
            "code": "k = number of thresholds t with x > t (strict, float32); NaN -> 0",
            "bit_order": "lsb-first",
            "features": [
                {"name": name, "bits": w, "thresholds": [float(v) for v in row[:n_thresholds(w)]]}
                for name, w, row in zip(self.feature_names, self.feature_bits, self.thresholds, strict=True)
            ],
            "source": self.source,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"


def _whole(value: Any, name: str) -> int:
    """A JSON integer (2 or 2.0), never a bool, a fraction or an infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (isinstance(value, float) and not value.is_integer()):
        raise DataError(f"malformed encoder spec: {name} must be a whole number, got {value!r}")
    return int(value)


def _readable(version: int) -> int:
    """``version`` if this softbits reads it, else a one-line :class:`DataError`."""
    if version not in (ENCODER_FORMAT_VERSION, MIXED_FORMAT_VERSION):
        raise DataError(f"unsupported encoder format version {version} "
                        f"(this softbits reads {ENCODER_FORMAT_VERSION} and {MIXED_FORMAT_VERSION})")
    return version


def _mixed_from_dict(cls: type[EncoderSpec], obj: dict[str, Any]) -> EncoderSpec:
    """A version-2 ``encoder.json``: per feature its width and its own 2^w − 1 thresholds."""
    features = obj["features"]
    names = tuple(str(f["name"]) for f in features)
    try:
        widths = check_widths([f["bits"] for f in features], len(features))
    except ConfigError as exc:
        raise DataError(f"encoder spec: {exc}") from None
    table = np.full((len(names), n_thresholds(max(widths))), np.inf, dtype=np.float32)
    for f, (name, w, feature) in enumerate(zip(names, widths, features, strict=True)):
        row = np.array(feature["thresholds"], dtype=np.float64).astype(np.float32)
        if row.shape != (n_thresholds(w),):
            raise DataError(f"feature {name!r} has {row.size} thresholds, {w} bits need {n_thresholds(w)}")
        table[f, :row.size] = row
    return cls(names, max(widths), table, format_version=MIXED_FORMAT_VERSION,
               source=dict(obj.get("source", {})), widths=widths)
