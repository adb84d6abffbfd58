"""softbits.codes: the one home of code-width arithmetic, and the modules that must ask it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from softbits import codes
from softbits.errors import ConfigError
from softbits.training.config import TrainConfig
from softbits.training.methods import METHODS, get_method

SRC = Path(__file__).resolve().parents[1] / "src" / "softbits"


@pytest.mark.parametrize("bits", range(1, codes.MAX_BITS + 1))
def test_sizes_follow_the_spec(bits: int) -> None:
    assert codes.n_levels(bits) == 2 ** bits
    assert codes.n_thresholds(bits) == 2 ** bits - 1 == codes.max_code(bits)
    for n_features in (1, 3, 7, 8, 65535):
        assert codes.payload_bytes(n_features, bits) == -(-n_features * bits // 8)


@pytest.mark.parametrize("bits", [1, 16, np.int64(4), np.uint8(8)])
def test_check_bits_accepts_integers_in_range(bits) -> None:
    assert codes.check_bits(bits) == int(bits) and type(codes.check_bits(bits)) is int


@pytest.mark.parametrize("bits", [0, 17, -1, True, 2.5, "4", None])
def test_check_bits_refuses_with_one_message(bits) -> None:
    with pytest.raises(ConfigError, match=r"^bits must be an integer in 1\.\.16, got "):
        codes.check_bits(bits)


def test_method_check_bits_states_range_then_minimum() -> None:
    with pytest.raises(ConfigError, match=r"^bits must be an integer in 1\.\.16, got 17$"):
        get_method("bw-sq").check_bits(17)
    with pytest.raises(ConfigError, match=r"^method pr-qq needs bits >= 2 \(midpoint decoding needs "
                                          r"at least 2 thresholds\), got 1$"):
        get_method("pr-qq").check_bits(1)
    for method in METHODS.values():
        assert method.check_bits(method.min_bits) == method.min_bits


def test_every_place_sizes_codes_like_codes_module() -> None:
    from softbits.device.spec import EncoderSpec
    from softbits.nn.quantizers import n_thresholds

    for bits in (1, 3, 8, 9, 16):
        spec = EncoderSpec(("a", "b", "c"), bits, np.zeros((3, codes.n_thresholds(bits))))
        assert spec.n_thresholds == codes.n_thresholds(bits) == n_thresholds(bits)
        assert spec.max_code == codes.max_code(bits)
        assert spec.sample_bytes == codes.payload_bytes(3, bits)
        assert TrainConfig(bits=bits).payload_bytes(3) == codes.payload_bytes(3, bits)


def test_protocol_bits_use_the_same_rule() -> None:
    from softbits.experiments.commands import parse_bits

    assert parse_bits("2-4,16") == [2, 3, 4, 16]
    with pytest.raises(ConfigError, match=r"^bits must be an integer in 1\.\.16, got 17$"):
        parse_bits("15-17")


def test_no_module_restates_the_arithmetic() -> None:
    """Width limits, threshold counts and payload sizes are written only in codes.py (LSQ/LLT's
    signed range 2^(n-1) is their own math and allowed)."""
    patterns = {
        "MAX_BITS defined": re.compile(r"^MAX_BITS\s*=", re.M),
        "(F*bits + 7) // 8": re.compile(r"\+\s*7\)\s*//\s*8"),
        "1 << bits": re.compile(r"1 << [\w.]*bits\b"),
    }
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "codes.py":
            continue
        text = path.read_text(encoding="utf-8")
        for what, pattern in patterns.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(SRC)}:{line}: {what}")
    assert not found, "use softbits.codes instead:\n" + "\n".join(found)


def test_check_widths_accepts_zero_width_features_and_sums_payload() -> None:
    assert codes.check_widths([0, 3, np.int64(16)], 3) == (0, 3, 16)
    assert codes.widths_payload_bytes((0, 3, 16)) == 3
    assert codes.widths_payload_bytes((2,) * 21) == codes.payload_bytes(21, 2)


@pytest.mark.parametrize("widths, message", [
    ([0, 0], "every feature has 0 bits"),
    ([], "0 bit widths given for 2 features"),
    ([1, 17], r"integers in 0\.\.16, got 17"),
    ([1, True], "got True"),
    ("12", "must be a list of integers"),
    ([1, 2, 3], "3 bit widths given for 2 features"),
])
def test_check_widths_refuses_with_one_line(widths, message) -> None:
    with pytest.raises(ConfigError, match=message):
        codes.check_widths(widths, 2)
