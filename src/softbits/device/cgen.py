"""C99 generator for the device encoder: ``softbits_encoder.h`` + ``softbits_encoder.c``.

The generated encoder uses no malloc, no libm, no division and no floating-point instruction:
each float is mapped to an order-preserving int32 key (sign-magnitude → two's complement, both
zeros → 0), and the thresholds are stored as such keys. Integer ``key(x) > key(t)`` equals
float32 ``x > t`` for every non-NaN x and finite t, so the result does not depend on an FPU,
on flush-to-zero or on compiler float flags, and subnormals compare exactly. NaN gets the key
INT32_MIN, below every threshold key, so NaN → code 0 (the policy of the Python encoder).

The search: with M = 2^n − 1 sorted keys, n steps ``if (key > t[c + s − 1]) c += s`` for
s = 2^(n−1) … 1 give c = #{t < x}, n comparisons per feature. Codes are packed LSB-first as in
:mod:`softbits.device.encode`. ``softbits_encode`` writes the packed sample only;
``softbits_encode_compact`` writes the whole compact frame (tag, model tag, sample) of
:mod:`softbits.device.wire`, and ``softbits_header_prefix`` serves devices that send full payloads.

The fixed C lives in ``templates/encoder.{h,c}.tmpl``; this module only fills in the spec's
values and the key table.
"""

from __future__ import annotations

import string
from importlib import resources
from pathlib import Path

from softbits.device.spec import EncoderSpec, float32_keys
from softbits.device.wire import COMPACT_FRAMING, COMPACT_TAG, HEADER_BYTES, WIRE_VERSION, header_prefix, model_tag

__all__ = ["C_HEADER_NAME", "C_SOURCE_NAME", "generate_c", "write_c"]

C_HEADER_NAME = "softbits_encoder.h"
C_SOURCE_NAME = "softbits_encoder.c"
_PER_LINE = 6


def _c_identifier_comment(name: str) -> str:
    """A feature name made inert inside a C block comment, whatever a CSV header held.

    Only printable ASCII other than backslash survives (a backslash could splice lines); ``*/``
    would end the comment and ``/*`` trips ``-Wcomment`` under ``-Werror``; ``??`` is broken up
    so that no trigraph (``??/`` is a backslash in C99) remains. Each replacement only adds ``?``
    or ``-``, which form none of these again, so one pass in this order is enough.
    """
    text = "".join(ch if 32 <= ord(ch) < 127 and ch != "\\" else "?" for ch in name)
    return text.replace("*/", "*?").replace("/*", "/?").replace("??", "?-")


def _template(name: str) -> string.Template:
    """The fixed C of the encoder, shipped as package data; ``${name}`` marks a value of the spec."""
    text = resources.files("softbits.device").joinpath("templates").joinpath(name).read_text(encoding="utf-8")
    return string.Template(text)


def _header(spec: EncoderSpec) -> str:
    return _template("encoder.h.tmpl").substitute(
        model_id=spec.model_id, format_version=spec.format_version, wire_version=WIRE_VERSION,
        n_features=spec.n_features, bits=spec.bits, n_thresholds=spec.n_thresholds,
        payload_bytes=spec.sample_bytes, header_bytes=HEADER_BYTES, compact_tag=f"0x{COMPACT_TAG:02X}U",
        model_tag=f"0x{model_tag(spec):02X}U", compact_framing=COMPACT_FRAMING)


def _table(spec: EncoderSpec) -> str:
    keys = float32_keys(spec.thresholds)
    lines = ["static const int32_t softbits_keys[SOFTBITS_N_FEATURES][SOFTBITS_N_THRESHOLDS] = {"]
    for name, row in zip(spec.feature_names, keys, strict=True):
        lines.append(f"    /* {_c_identifier_comment(name)} */ {{")
        literals = [str(int(v)) for v in row]
        for i in range(0, len(literals), _PER_LINE):
            lines.append("        " + ", ".join(literals[i:i + _PER_LINE]) + ",")
        lines.append("    },")
    lines.append("};")
    return "\n".join(lines)


def _source(spec: EncoderSpec) -> str:
    return _template("encoder.c.tmpl").substitute(
        model_id=spec.model_id, header_name=C_HEADER_NAME,
        header_prefix=", ".join(f"0x{b:02x}" for b in header_prefix(spec)),
        keys_table=_table(spec))


def generate_c(spec: EncoderSpec) -> dict[str, str]:
    """File name → text of the generated header and source."""
    return {C_HEADER_NAME: _header(spec), C_SOURCE_NAME: _source(spec)}


def write_c(spec: EncoderSpec, out_dir: Path) -> list[Path]:
    """Write both files into ``out_dir`` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in generate_c(spec).items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
