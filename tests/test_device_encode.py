"""Encoder spec and batch encoder/packer: raw-unit thresholds, codes, bit order, backends."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softbits.data import load_dataset
from softbits.device.encode import encode, encode_packed, has_numba, pack, unpack
from softbits.device.spec import EncoderSpec, raw_thresholds
from softbits.errors import SoftbitsError
from softbits.training.config import TrainConfig
from softbits.training.train import train_dataset

BACKENDS = ["numpy"] + (["numba"] if has_numba() else [])


def _train(method: str, bits: int, epochs: int = 3):
    cfg = TrainConfig(method=method, bits=bits, layers=1, neurons=8, epochs=epochs, lr=0.05,
                      device="cpu", seed=3)
    return train_dataset(load_dataset("diabetes"), cfg)


@pytest.fixture(scope="module")
def models():
    return {m: _train(m, 3) for m in ("bw-sq", "sq", "pr-qq", "po-mq")}


def _reference_codes(table: np.ndarray, X: np.ndarray) -> np.ndarray:
    """k = #{t : x > t} by brute force in float32."""
    x = np.asarray(X, dtype=np.float32)
    return (x[:, :, None] > table[None, :, :]).sum(-1)


def _random_spec(rng, n_features: int, bits: int) -> EncoderSpec:
    m = (1 << bits) - 1
    table = np.sort(rng.standard_normal((n_features, m)).astype(np.float32), axis=1)
    table[0, : m // 2] = table[0, m // 2]  # duplicated thresholds (discrete features)
    return EncoderSpec(tuple(f"f{i}" for i in range(n_features)), bits, table)


def test_bwsq_training_leaves_thresholds_unsorted_and_spec_sorts_them(models):
    q = models["bw-sq"].module.quantizer
    t = q.thresholds.detach().numpy()
    assert np.any(np.diff(t, axis=1) < 0), "lr 0.05 should disorder some Bw-SQ thresholds"
    spec = EncoderSpec.from_model(models["bw-sq"])
    assert np.all(np.diff(spec.thresholds, axis=1) >= 0)


@pytest.mark.parametrize("method", ["bw-sq", "sq", "pr-qq", "po-mq"])
def test_raw_thresholds_fold_the_scaler_exactly(models, method):
    """x > a_raw ⟺ the model's float32((x − mean)/scale) > a_std, checked on both sides of
    every threshold; a_raw differs from the naive float32(a_std·scale + mean) by less than one
    float32 step of a_std (scaled) plus one raw ulp."""
    model = models[method]
    spec = EncoderSpec.from_model(model)
    std = model.module.quantizer.sorted_thresholds()
    naive = (std.astype(np.float64) * model.x_scaler.scale[:, None]
             + model.x_scaler.mean[:, None]).astype(np.float32)
    assert spec.thresholds.dtype == np.float32
    bound = (np.spacing(np.abs(std)).astype(np.float64) * model.x_scaler.scale[:, None]
             + np.spacing(np.abs(naive)))
    assert (np.abs(spec.thresholds.astype(np.float64) - naive) <= bound).all()
    assert spec.bits == 3 and spec.n_features == 10 and spec.sample_bytes == 4
    assert spec.feature_names == tuple(model.feature_names)
    for side, expect in ((spec.thresholds, 0), (np.nextafter(spec.thresholds, np.float32(np.inf)), 1)):
        for j in range(spec.n_thresholds):
            X = side[:, j][None, :].astype(np.float64)
            x_std = model.standardize(X)[0].numpy()
            exceeded = (x_std[:, None] > std).sum(-1)
            np.testing.assert_array_equal(exceeded, (side[:, j][:, None] > spec.thresholds).sum(-1))
            np.testing.assert_array_equal(encode(spec, X)[0], exceeded)
            assert ((x_std > std[:, j]) == bool(expect)).all()


@pytest.mark.parametrize("method", ["bw-sq", "sq", "pr-qq", "po-mq"])
def test_device_codes_equal_trained_model_encode_on_float32_data(models, method):
    """On float32 inputs (what a device holds) the device codes are the model's codes, also for
    diabetes' discrete features whose values sit exactly on quantile thresholds."""
    model = models[method]
    spec = EncoderSpec.from_model(model)
    X = load_dataset("diabetes").X.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(encode(spec, X).astype(np.int64), model.encode(X))
    rng = np.random.default_rng(0)
    near = spec.thresholds[:, rng.integers(0, spec.n_thresholds, 500)].T
    for X in (near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, np.float32(-np.inf))):
        X = X.astype(np.float64)
        np.testing.assert_array_equal(encode(spec, X).astype(np.int64), model.encode(X))


def test_decode_after_device_encode_matches_model_predict(models):
    model = models["bw-sq"]
    spec = EncoderSpec.from_model(model)
    X = load_dataset("diabetes").X[:200].astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(model.predict_codes(encode(spec, X)), model.predict(X))


def test_model_id_is_stable_and_content_addressed(models):
    spec = EncoderSpec.from_model(models["bw-sq"])
    again = EncoderSpec.from_model(models["bw-sq"])
    assert spec.model_id == again.model_id and len(spec.model_id) == 16
    moved = spec.thresholds.copy()
    moved[0, 0] = np.nextafter(moved[0, 0], np.float32(-np.inf))
    assert EncoderSpec(spec.feature_names, spec.bits, moved).model_id != spec.model_id
    renamed = ("other",) + spec.feature_names[1:]
    assert EncoderSpec(renamed, spec.bits, spec.thresholds).model_id != spec.model_id
    assert EncoderSpec.from_model(models["sq"]).model_id != spec.model_id


def test_spec_json_round_trips_exact_float32(models):
    spec = EncoderSpec.from_model(models["pr-qq"])
    obj = json.loads(spec.to_json())
    assert obj["format_version"] == 1 and obj["model_id"] == spec.model_id
    assert [f["name"] for f in obj["features"]] == list(spec.feature_names)
    assert all(f["bits"] == 3 and len(f["thresholds"]) == 7 for f in obj["features"])
    back = EncoderSpec.from_dict(obj)
    np.testing.assert_array_equal(back.thresholds.view(np.uint32), spec.thresholds.view(np.uint32))
    obj["features"][0]["thresholds"][0] -= 1.0
    with pytest.raises(SoftbitsError, match="hashes to"):
        EncoderSpec.from_dict(obj)


def test_spec_rejects_bad_tables():
    with pytest.raises(SoftbitsError, match="sorted"):
        EncoderSpec(("a",), 2, np.array([[1.0, 0.0, 2.0]]))
    with pytest.raises(SoftbitsError, match="shape"):
        EncoderSpec(("a",), 2, np.array([[1.0, 2.0]]))
    with pytest.raises(SoftbitsError, match="finite"):
        EncoderSpec(("a",), 2, np.array([[0.0, 1.0, np.inf]]))
    with pytest.raises(SoftbitsError, match="below every finite float32"):
        raw_thresholds(np.array([[-3e38, 0.0, 1.0]]), np.array([0.0]), np.array([1e10]))
    above_all = raw_thresholds(np.array([[0.0, 1.0, 3e38]]), np.array([0.0]), np.array([1e10]))
    assert above_all[0, 2] == np.finfo(np.float32).max  # only +inf exceeds it, as in the model


def test_full_precision_model_has_no_encoder():
    fp = _train("fp", 3, epochs=1)
    with pytest.raises(SoftbitsError, match="no threshold encoder"):
        EncoderSpec.from_model(fp)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 6, 8, 10])
def test_encode_equals_brute_force_with_special_values(backend, bits, rng):
    spec = _random_spec(rng, 5, bits)
    X = rng.standard_normal((4000, 5)).astype(np.float32)
    X[:50] = spec.thresholds[:, rng.integers(0, spec.n_thresholds, 50)].T
    X[50:100] = np.nextafter(X[:50], np.float32(np.inf))
    X[100:150] = np.nextafter(X[:50], np.float32(-np.inf))
    X[150, :] = np.nan
    X[151, :] = np.inf
    X[152, :] = -np.inf
    X[153, :] = np.float32(1e-45)
    X[154, :] = -0.0
    codes = encode(spec, X, backend)
    np.testing.assert_array_equal(codes, _reference_codes(spec.thresholds, X))
    assert (codes[150] == 0).all() and (codes[152] == 0).all()
    assert (codes[151] == spec.max_code).all()


def test_encode_casts_float64_inputs_to_float32_first():
    spec = EncoderSpec(("a",), 1, np.array([[1.0]], dtype=np.float32))
    just_above = 1.0 + 2.0**-30  # > 1 in float64, rounds to 1.0f: the device sees 1.0f
    assert encode(spec, np.array([[just_above]]))[0, 0] == 0
    assert encode(spec, np.array([[1.0 + 2.0**-20]]))[0, 0] == 1


def test_encode_rejects_wrong_width():
    spec = EncoderSpec(("a", "b"), 1, np.array([[0.0], [0.0]], dtype=np.float32))
    with pytest.raises(SoftbitsError, match="expected 2 features per sample, got 3"):
        encode(spec, np.zeros((4, 3)))


def test_bit_order_documented_examples():
    """docs/wire-format.md: 2-bit codes [1, 2, 3, 0] → 0x39; 3-bit codes [5, 2, 7] → d5 01."""
    assert pack(np.array([[1, 2, 3, 0]]), 2).tobytes() == bytes([0x39])
    assert pack(np.array([[5, 2, 7]]), 3).tobytes() == bytes([0xD5, 0x01])
    assert pack(np.array([[0x1234]]), 13).tobytes() == bytes([0x34, 0x12])


@settings(max_examples=300, deadline=None, database=None)
@given(bits=st.integers(1, 16), n_features=st.integers(1, 40), n=st.integers(0, 9), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip(bits, n_features, n, seed):
    codes = np.random.default_rng(seed).integers(0, 1 << bits, (n, n_features))
    packed = pack(codes, bits, "numpy")
    assert packed.shape == (n, (n_features * bits + 7) // 8)
    np.testing.assert_array_equal(unpack(packed, n_features, bits, "numpy"), codes)
    used = n_features * bits % 8
    if used and n:
        assert (packed[:, -1] >> used == 0).all()


@pytest.mark.skipif(not has_numba(), reason="numba is not installed")
@pytest.mark.parametrize("bits", [1, 2, 3, 5, 7, 8, 9, 16])
def test_numba_and_numpy_backends_agree(bits, rng):
    codes = rng.integers(0, 1 << bits, (300, 13))
    a, b = pack(codes, bits, "numba"), pack(codes, bits, "numpy")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(unpack(a, 13, bits, "numba"), codes)
    spec = _random_spec(rng, 13, min(bits, 10))
    X = rng.standard_normal((2000, 13))
    np.testing.assert_array_equal(encode_packed(spec, X, "numba"), encode_packed(spec, X, "numpy"))


def test_pack_rejects_out_of_range_codes():
    with pytest.raises(SoftbitsError, match="0..3"):
        pack(np.array([[4]]), 2)


def test_midpoint_and_soft_decoders_accept_device_codes(models):
    for method in ("sq", "pr-qq", "po-mq"):
        model = models[method]
        spec = EncoderSpec.from_model(model)
        codes = encode(spec, load_dataset("diabetes").X[:64])
        with torch.no_grad():
            out = model.predict_codes(codes)
        assert out.shape == (64,) and np.isfinite(out).all()


def test_predict_codes_refuses_bad_codes_in_one_line(models):
    model = models["sq"]
    good = encode(EncoderSpec.from_model(model), load_dataset("diabetes").X[:4])
    np.testing.assert_array_equal(model.predict_codes(good.astype(np.float64)), model.predict_codes(good))
    bad = {"codes must be integers": good.astype(np.float64) + 0.5,
           "dtype object": good.astype(object),
           "shape": good[:, :3],
           f"0..{(1 << model.bits) - 1}": good + (1 << model.bits)}
    for message, codes in bad.items():
        with pytest.raises(SoftbitsError, match=message):
            model.predict_codes(codes)
    nan = good.astype(np.float64)
    nan[0, 0] = np.nan
    with pytest.raises(SoftbitsError, match="codes must be integers"):
        model.predict_codes(nan)
