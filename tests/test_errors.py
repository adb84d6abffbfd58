"""The error rule of softbits.errors: ConfigError for what the user chose, DataError for files,
payloads and models that cannot be used, bare SoftbitsError only for the environment."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from softbits.data import load_dataset
from softbits.device.encode import pack, unpack
from softbits.device.spec import EncoderSpec
from softbits.device.wire import PayloadError, build_payload, parse_payload
from softbits.errors import ConfigError, DataError, SoftbitsError
from softbits.training.config import TrainConfig
from softbits.training.train import train_dataset


def _spec(bits: int = 2) -> EncoderSpec:
    return EncoderSpec(("a", "b"), bits, np.tile(np.arange(2 ** bits - 1, dtype=np.float32), (2, 1)))


@pytest.fixture(scope="module")
def fp_model():
    cfg = TrainConfig(method="fp", layers=1, neurons=4, epochs=1, device="cpu")
    return train_dataset(load_dataset("diabetes"), cfg)


def test_encoder_spec_problems_are_data_errors() -> None:
    table = np.zeros((2, 3), np.float32)
    with pytest.raises(DataError, match=r"encoder spec: bits must be an integer in 1\.\.16, got 17"):
        EncoderSpec(("a", "b"), 17, table)
    with pytest.raises(DataError, match="shape"):
        EncoderSpec(("a", "b"), 3, table)
    good = _spec().to_dict()
    with pytest.raises(DataError, match="not a softbits encoder spec"):
        EncoderSpec.from_dict({**good, "format": "other"})
    with pytest.raises(DataError, match="one bit width"):
        EncoderSpec.from_dict({**good, "features": [{**good["features"][0], "bits": 3}, good["features"][1]]})
    with pytest.raises(DataError, match="hashes to"):
        EncoderSpec.from_dict({**good, "model_id": "00" * 8})


def test_codes_and_payloads_that_cannot_be_used_are_data_errors() -> None:
    spec = _spec()
    with pytest.raises(DataError, match=r"codes must lie in 0\.\.3 for 2 bits"):
        pack(np.array([[0, 4]]), 2)
    with pytest.raises(DataError, match="packed samples"):
        unpack(np.zeros((1, 3), np.uint8), 2, 2)
    with pytest.raises(DataError, match="packed samples"):
        build_payload(spec, np.zeros((1, 2), np.uint8))
    assert issubclass(PayloadError, DataError)
    with pytest.raises(PayloadError):
        parse_payload(spec, b"XX")


def test_a_model_without_encoder_is_a_data_error(fp_model) -> None:
    with pytest.raises(DataError, match="no threshold encoder"):
        EncoderSpec.from_model(fp_model)


def test_serve_options_are_config_errors() -> None:
    from softbits.serve.client import send_payloads
    from softbits.serve.server import parse_address, run_servers

    for text in ("[::1", "[::1]x", "host:port"):
        with pytest.raises(ConfigError, match="bad"):
            parse_address(text, 80)
    with pytest.raises(ConfigError, match="--to must be"):
        send_payloads("ftp://x", [b""])
    with pytest.raises(ConfigError, match="--verb must be"):
        send_payloads("coap://x", [b""], verb="get")
    with pytest.raises(ConfigError, match="POST only"):
        send_payloads("http://x", [b""], verb="put")
    with pytest.raises(ConfigError, match="nothing to serve"):
        asyncio.run(run_servers(None, None, None, lambda urls: None))  # type: ignore[arg-type]


def test_an_unreachable_server_is_the_environment() -> None:
    from softbits.serve.client import send_payloads

    with pytest.raises(SoftbitsError, match="cannot reach") as info:
        send_payloads("http://127.0.0.1:9/v1/predict", [b"x"], timeout=2.0)
    assert not isinstance(info.value, (ConfigError, DataError))


def test_service_refuses_a_too_small_limit_as_config_error() -> None:
    from softbits.serve.service import PredictionService

    with pytest.raises(ConfigError, match="max_payload_bytes"):
        PredictionService(None, max_payload_bytes=3)  # type: ignore[arg-type]


def test_midpoint_decoder_refusal_is_a_config_error() -> None:
    from softbits.nn.quantizers import midpoint_levels

    with pytest.raises(ConfigError, match="at least 2 thresholds"):
        midpoint_levels(np.zeros((2, 1)))
