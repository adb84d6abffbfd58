"""Each quantizer's math against the paper's equations (docs/training.md, "Quantizers"), and the device view (encode/decode) against eval forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from softbits.errors import ConfigError
from softbits.nn.quantizers import (
    BitwiseQuantizer,
    MidpointQuantizer,
    SoftQuantizer,
    build_quantizer,
    midpoint_levels,
    minmax_thresholds,
    n_thresholds,
    quantile_thresholds,
)


def test_minmax_thresholds_formula():
    x = np.array([[0.0, -2.0], [7.0, 6.0], [3.0, 1.0]])
    a = minmax_thresholds(x, bits=3)
    assert a.shape == (2, 7)
    s = np.array([7.0, 8.0]) / 7
    expected = np.array([[0.0 + (k - 0.5) * s[0] for k in range(1, 8)],
                         [-2.0 + (k - 0.5) * s[1] for k in range(1, 8)]])
    np.testing.assert_allclose(a, expected)
    # decoded levels of min-max thresholds are the 2^n uniform levels min + j*s
    np.testing.assert_allclose(midpoint_levels(a)[0], 0.0 + np.arange(8) * s[0])


def test_quantile_thresholds_are_k_over_2n_quantiles(rng):
    x = rng.normal(size=(1001, 3))
    a = quantile_thresholds(x, bits=2)
    for f in range(3):
        np.testing.assert_allclose(a[f], np.quantile(x[:, f], [0.25, 0.5, 0.75]))
    # median of 0..100 with linear interpolation
    b = quantile_thresholds(np.arange(101.0)[:, None], bits=1)
    assert b.tolist() == [[50.0]]


def test_midpoint_levels_formula():
    a = np.array([[1.0, 2.0, 4.0]])
    q = midpoint_levels(a)
    np.testing.assert_allclose(q, [[0.5, 1.5, 3.0, 5.0]])
    with pytest.raises(ValueError):
        midpoint_levels(np.array([[1.0]]))


def _bitwise(thresholds: np.ndarray, **kw) -> BitwiseQuantizer:
    f, m = thresholds.shape
    bits = int(np.log2(m + 1))
    q = BitwiseQuantizer(f, bits, **kw)
    with torch.no_grad():
        q.thresholds.copy_(torch.as_tensor(thresholds, dtype=torch.float32))
    return q.eval()


def test_strict_greater_and_ties():
    q = _bitwise(np.array([[-1.0, 0.0, 1.0]]))
    x = torch.tensor([[-1.0], [0.0], [0.5], [1.0], [1.0001], [-5.0]])
    assert q.encode(x)[:, 0].tolist() == [0, 1, 2, 2, 3, 0]
    out = q(x)
    assert out[1].tolist() == [1.0, 0.0, 0.0]  # x == a_2: bit 2 is 0 (strict >)
    # the soft form at x == a is exactly 1/2, which rounds half-to-even to 0 — same as the hard bit
    q.train()
    soft = q(torch.tensor([[0.0]]))
    assert soft[0, 1].item() == 0.5 and torch.round(soft[0, 1]).item() == 0.0


def test_nan_input_gives_code_zero_like_eval_forward():
    q = _bitwise(np.array([[-1.0, 0.0, 1.0]]))
    x = torch.tensor([[float("nan")], [float("inf")], [float("-inf")]])
    assert q.encode(x)[:, 0].tolist() == [0, 3, 0]
    assert torch.equal(q.decode(q.encode(x)), q(x))


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_decode_encode_equals_eval_forward_with_unsorted_thresholds(bits, rng):
    f, m = 6, n_thresholds(bits)
    a = rng.normal(size=(f, m))
    a = np.take_along_axis(a, rng.permuted(np.tile(np.arange(m), (f, 1)), axis=1), axis=1)
    a[0, :] = 0.25  # all thresholds tied
    if m >= 2:
        a[1, 0] = a[1, -1]  # one duplicate pair
    q = _bitwise(a)
    x = rng.normal(size=(4000, f))
    # inputs exactly on thresholds and on the float32 neighbours of thresholds
    a32 = a.astype(np.float32)
    on = np.repeat(a32.reshape(1, f, m), 3, axis=0)
    on[1] = np.nextafter(on[1], np.float32(np.inf))
    on[2] = np.nextafter(on[2], np.float32(-np.inf))
    x = np.concatenate([x.astype(np.float32), on.transpose(0, 2, 1).reshape(-1, f)])
    xt = torch.as_tensor(x)
    if m > 2:
        assert not torch.equal(q.thresholds, torch.sort(q.thresholds, dim=-1).values)
    assert torch.equal(q.decode(q.encode(xt)), q(xt))
    # the rebuilt bits are a thermometer code in the sorted order
    k = q.encode(xt)
    assert int(k.min()) >= 0 and int(k.max()) <= m


def test_sorted_thresholds_are_float32_and_sorted(rng):
    q = _bitwise(rng.normal(size=(3, 7)))
    s = q.sorted_thresholds()
    assert s.dtype == np.float32 and s.shape == (3, 7)
    assert np.all(np.diff(s, axis=1) >= 0)
    assert q.bits == 3 and q.out_features == 21


def test_bitwise_soft_output_layout_and_limit():
    q = _bitwise(np.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]]))
    q.train()
    x = torch.tensor([[1.5, 9.0]])
    q.set_temperature(1.0)
    out = q(x)
    assert out.shape == (1, 6)
    expected = torch.sigmoid(torch.tensor([1.5, 0.5, -0.5, -1.0, -2.0, -3.0]))
    torch.testing.assert_close(out[0], expected)
    q.set_temperature(1e-4)
    assert q(x)[0].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_gradients_reach_bwsq_thresholds_not_bwmq_bwqq(rng):
    x = torch.as_tensor(rng.normal(size=(64, 4)), dtype=torch.float32)
    sq = BitwiseQuantizer(4, 2, soft=True, trainable=True)
    sq.init_from_data(x)
    sq.train()
    sq(x).sum().backward()
    assert sq.thresholds.grad is not None and sq.thresholds.grad.abs().sum() > 0
    for init in ("minmax", "quantile"):
        hard = BitwiseQuantizer(4, 2, soft=False, trainable=False, init=init)
        hard.init_from_data(x)
        hard.train()
        assert list(hard.parameters()) == []
        assert not hard.thresholds.requires_grad
        out = hard(x.requires_grad_(False))
        assert not out.requires_grad
        assert set(out.unique().tolist()) <= {0.0, 1.0}  # hard bits in training too


def test_soft_quantizer_sums_sigmoids_and_counts_in_eval(rng):
    q = SoftQuantizer(2, 2)
    with torch.no_grad():
        q.thresholds.copy_(torch.tensor([[0.0, 1.0, 2.0], [2.0, 0.0, 1.0]]))  # second unsorted
    x = torch.tensor([[1.5, 1.5], [2.0, -3.0]])
    q.train()
    torch.testing.assert_close(q(x)[0, 0], torch.sigmoid(torch.tensor([1.5, 0.5, -0.5])).sum())
    q.eval()
    assert q(x).tolist() == [[2.0, 2.0], [2.0, 0.0]]
    assert torch.equal(q.decode(q.encode(x)), q(x))
    grad_x = torch.as_tensor(rng.normal(size=(8, 2)), dtype=torch.float32)
    q.train()
    q(grad_x).sum().backward()
    assert q.thresholds.grad.abs().sum() > 0


def test_midpoint_quantizer_decodes_to_midpoints(rng):
    x = torch.as_tensor(rng.uniform(0, 7, size=(500, 2)), dtype=torch.float32)
    q = MidpointQuantizer(2, 3, init="minmax")
    q.init_from_data(x)
    lo, hi = x.min(0).values, x.max(0).values
    s = (hi - lo) / 7
    torch.testing.assert_close(q.levels, lo[:, None] + torch.arange(8)[None, :] * s[:, None])
    out = q(x)
    k = q.encode(x)
    torch.testing.assert_close(out, torch.gather(q.levels.expand(500, -1, -1), 2, k[..., None])[..., 0])
    assert torch.equal(q.decode(q.encode(x)), q(x))
    # quantization error is at most half a step inside the range
    assert torch.all((out - x).abs() <= s / 2 + 1e-5)
    with pytest.raises(ConfigError):
        MidpointQuantizer(2, 1)


@pytest.mark.parametrize("q", [
    BitwiseQuantizer(3, 2), BitwiseQuantizer(3, 2, soft=False, trainable=False, init="minmax"),
    SoftQuantizer(3, 3), MidpointQuantizer(3, 2, init="quantile"),
])
def test_rebuild_from_config_and_state(q, rng):
    x = torch.as_tensor(rng.normal(size=(100, 3)), dtype=torch.float32)
    q.init_from_data(x)
    q.set_temperature(0.01)
    clone = build_quantizer(q.kind, q.config())
    clone.load_state_dict(q.state_dict())
    q.eval(), clone.eval()
    assert torch.equal(q(x), clone(x))
    assert clone.temperature.item() == pytest.approx(0.01)


def test_midpoint_quantizer_has_no_trainable_switch_but_reads_old_configs():
    from softbits.errors import ConfigError
    from softbits.nn.quantizers import MidpointQuantizer, build_quantizer

    q = MidpointQuantizer(3, 2, init="quantile")
    assert "trainable" not in q.config()
    old = build_quantizer("midpoint", {"n_features": 3, "bits": 2, "init": "quantile", "trainable": False})
    assert old.config() == q.config()
    with pytest.raises(ConfigError, match="trainable must be False"):
        build_quantizer("midpoint", {"n_features": 3, "bits": 2, "init": "quantile", "trainable": True})


def test_bins_give_frequent_values_their_own_bin_and_never_repeat_a_code():
    """Quantiles of a column that is 70 % zeros coincide; bins put one boundary just above 0
    and spread the others over the rest, each between two distinct values."""
    from softbits.nn.quantizers import bin_thresholds, quantile_thresholds

    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros(700), rng.exponential(size=300)])[:, None]
    quantiles = quantile_thresholds(x, 3)[0]
    bins = bin_thresholds(x, 3)[0]
    assert np.unique(quantiles).size < 7 and np.unique(bins).size == 7
    assert 0 < bins[0] < x[x > 0].min()
    codes = (x > bins).sum(-1)
    assert np.unique(codes).size == 8 and (codes == 0).sum() == 700


def test_bins_of_few_distinct_values_split_between_each_and_of_continuous_data_follow_the_quantiles():
    from softbits.nn.quantizers import bin_thresholds, quantile_thresholds

    three = np.array([[1.0], [1.0], [2.0], [5.0]] * 10)
    np.testing.assert_allclose(bin_thresholds(three, 2)[0], [1.5, 3.5, 3.5])
    x = np.random.default_rng(1).normal(size=(4000, 2))
    np.testing.assert_allclose(bin_thresholds(x, 4), quantile_thresholds(x, 4), atol=0.02)


def test_split_thresholds_sit_at_gain_weighted_quantiles_of_the_split_values():
    """Threshold k where the summed gain first reaches (k − ½)/M; a value carrying most of the
    gain takes several thresholds; a feature with no split gets bins; init 'splits' without
    split points is a one-line error."""
    from softbits.errors import ConfigError
    from softbits.nn.quantizers import bin_thresholds, split_thresholds
    from softbits.nn.quantizers.threshold_init import init_thresholds

    x = np.random.default_rng(2).normal(size=(500, 2))
    splits = [(np.array([2.0, 0.0, 1.0]), np.array([8.0, 1.0, 1.0])), (np.array([]), np.array([]))]
    np.testing.assert_allclose(split_thresholds(x, 1, splits)[0], [2.0])
    np.testing.assert_allclose(split_thresholds(x, 2, splits)[0], [1.0, 2.0, 2.0])
    even = [(np.arange(15.0), np.ones(15)), splits[1]]
    np.testing.assert_allclose(split_thresholds(x, 2, even)[0], [2.0, 7.0, 12.0])
    np.testing.assert_allclose(split_thresholds(x, 2, splits)[1], bin_thresholds(x[:, 1:], 2)[0])
    with pytest.raises(ConfigError, match="needs the split points"):
        init_thresholds(x, 2, "splits")
    with pytest.raises(ConfigError, match="split points for 2 features, but the data has 1"):
        split_thresholds(x[:, :1], 2, splits)
