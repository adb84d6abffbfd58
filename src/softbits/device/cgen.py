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

Mixed widths (format version 2): ``SOFTBITS_BITS`` is 0 and ``softbits_feature_bits[f]`` gives
feature f's width w; the keys are one flat table holding each feature's 2^w − 1 keys in turn,
searched with w comparisons. A 0-width feature has no keys and its ``x[f]`` is never read (the
header says which). ``SOFTBITS_N_FEATURES`` stays the length of x and ``SOFTBITS_PAYLOAD_BYTES``
the packed bytes, so firmware written for uniform widths compiles and means the same.

The fixed C lives in ``templates/encoder.{h,c}.tmpl`` (uniform) and
``templates/encoder_mixed.{h,c}.tmpl``; this module only fills in the spec's values and the
key table. The header is C++-safe (``extern "C"``, no C++ keyword as an identifier). A
``prefix`` other than ``softbits`` renames every identifier, macro and the file names
(``<prefix>_encode``, ``<PREFIX>_N_FEATURES``, ``<prefix>_encoder.h``), so that encoders of
two models link into one firmware.
"""

from __future__ import annotations

import keyword
import re
import string
import textwrap
from importlib import resources
from pathlib import Path

import numpy as np

from softbits.device.spec import EncoderSpec, float32_keys
from softbits.device.wire import COMPACT_FRAMING, COMPACT_TAG, HEADER_BYTES, WIRE_VERSION, header_prefix, model_tag

__all__ = ["C_HEADER_NAME", "C_SOURCE_NAME", "DEFAULT_PREFIX", "check_prefix", "file_names", "generate_c",
           "write_c"]

DEFAULT_PREFIX = "softbits"
C_HEADER_NAME = "softbits_encoder.h"
C_SOURCE_NAME = "softbits_encoder.c"
_PER_LINE = 6
#: C and C++ keywords (and C's reserved forms) a prefix must not be
_RESERVED = frozenset("""alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t
char16_t char32_t class compl concept const consteval constexpr constinit const_cast continue co_await
co_return co_yield decltype default delete do double dynamic_cast else enum explicit export extern false
float for friend goto if inline int long mutable namespace new noexcept not not_eq nullptr operator or
or_eq private protected public register reinterpret_cast requires restrict return short signed sizeof
static static_assert static_cast struct switch template this thread_local throw true try typedef typeid
typename union unsigned using virtual void volatile wchar_t while xor xor_eq""".split())


def check_prefix(prefix: str) -> str:
    """``prefix`` when it can start C identifiers: lower-case ASCII letters, digits and ``_``,
    a letter first, at most 40 characters, not a C/C++ keyword; else a one-line ``ValueError``."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", prefix) or prefix in _RESERVED or keyword.iskeyword(prefix) \
            or "__" in prefix or prefix.endswith("_"):
        raise ValueError(f"C prefix {prefix!r} must be 1..40 lower-case letters, digits and single "
                         "underscores, start with a letter and not be a C or C++ keyword")
    return prefix


def file_names(prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """The header and source file names of an encoder with ``prefix``."""
    return f"{prefix}_encoder.h", f"{prefix}_encoder.c"


def _renamed(text: str, prefix: str) -> str:
    """Every ``softbits_`` identifier and ``SOFTBITS_`` macro of generated C under ``prefix``."""
    if prefix == DEFAULT_PREFIX:
        return text
    text = re.sub(r"\bsoftbits_", f"{prefix}_", text)
    return re.sub(r"\bSOFTBITS_", f"{prefix.upper()}_", text)


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
    values = dict(
        model_id=spec.model_id, format_version=spec.format_version, wire_version=WIRE_VERSION,
        n_features=spec.n_features, bits=spec.bits, n_thresholds=spec.n_thresholds,
        payload_bytes=spec.sample_bytes, header_bytes=HEADER_BYTES, compact_tag=f"0x{COMPACT_TAG:02X}U",
        model_tag=f"0x{model_tag(spec):02X}U", compact_framing=COMPACT_FRAMING)
    if spec.widths is None:
        return _template("encoder.h.tmpl").substitute(values)
    unread = [f"x[{f}] ({_c_identifier_comment(name)})"
              for f, (name, w) in enumerate(zip(spec.feature_names, spec.widths, strict=True)) if w == 0]
    return _template("encoder_mixed.h.tmpl").substitute(
        values, code_bits=spec.code_bits, n_keys=int(spec.active.sum()),
        widths_text=_wrapped(", ".join(map(str, spec.widths))),
        unread=_wrapped(", ".join(unread) if unread else "none, every feature is sent"))


def _wrapped(text: str) -> str:
    """A long list for a block comment, continued on lines indented like the comment's text."""
    return "\n   ".join(textwrap.wrap(text, width=90, break_long_words=False, break_on_hyphens=False))


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


def _mixed_table(spec: EncoderSpec) -> str:
    """One flat key table: each sent feature's 2^w − 1 keys, in feature order."""
    keys = float32_keys(np.where(spec.active, spec.thresholds, np.float32(0)))
    lines = ["static const int32_t softbits_keys[SOFTBITS_N_KEYS] = {"]
    for name, w, row, active in zip(spec.feature_names, spec.feature_bits, keys, spec.active, strict=True):
        label = _c_identifier_comment(name)
        if w == 0:
            lines.append(f"    /* {label}: 0 bits, not sent */")
            continue
        lines.append(f"    /* {label}: {w} bit{'s' if w > 1 else ''} */")
        literals = [str(int(v)) for v in row[active]]
        for i in range(0, len(literals), _PER_LINE):
            lines.append("        " + ", ".join(literals[i:i + _PER_LINE]) + ",")
    lines.append("};")
    return "\n".join(lines)


def _source(spec: EncoderSpec) -> str:
    prefix = ", ".join(f"0x{b:02x}" for b in header_prefix(spec))
    if spec.widths is None:
        return _template("encoder.c.tmpl").substitute(
            model_id=spec.model_id, header_name=C_HEADER_NAME, header_prefix=prefix, keys_table=_table(spec))
    return _template("encoder_mixed.c.tmpl").substitute(
        model_id=spec.model_id, header_name=C_HEADER_NAME, header_prefix=prefix,
        feature_bits=", ".join(map(str, spec.widths)), keys_table=_mixed_table(spec))


def generate_c(spec: EncoderSpec, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """File name → text of the generated header and source, identifiers under ``prefix``."""
    header, source = file_names(check_prefix(prefix))
    return {header: _renamed(_header(spec), prefix), source: _renamed(_source(spec), prefix)}


def write_c(spec: EncoderSpec, out_dir: Path, prefix: str = DEFAULT_PREFIX) -> list[Path]:
    """Write both files into ``out_dir`` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in generate_c(spec, prefix).items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
