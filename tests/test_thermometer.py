"""Fixed thermometer codes: encoding by binary search and training on the codes
(``thermometer_forward``) give what the dense bits give."""

from __future__ import annotations

import copy

import pytest
import torch

from softbits.nn.network import DENSE_COLUMNS, QuantizedMLP, build_mlp, thermometer_forward
from softbits.nn.quantizers import BitwiseQuantizer
from softbits.training import engine


def _quantizer(widths: tuple[int, ...] | None, bits: int, *, shuffle: bool = False,
               soft: bool = False, trainable: bool = False, seed: int = 0) -> tuple[BitwiseQuantizer, torch.Tensor]:
    torch.manual_seed(seed)
    n = len(widths) if widths else 4
    X = torch.randn(2000, n)
    q = BitwiseQuantizer(n, bits, soft=soft, trainable=trainable, init="quantile", widths=widths)
    q.init_from_data(X)
    if shuffle:  # thresholds out of order in their slots: the codes count, the order must not matter
        with torch.no_grad():
            q.thresholds.copy_(q.thresholds[:, torch.randperm(q.thresholds.shape[1])])
    return q, X


@pytest.mark.parametrize("widths", [None, (3, 0, 8, 1)])
def test_encode_counts_the_thresholds_below_as_the_comparisons_do(widths):
    q, X = _quantizer(widths, 8, shuffle=True, soft=True, trainable=True)
    with torch.no_grad():
        q.thresholds[0, 2] = float("nan")  # x > NaN is false: counts as no threshold below
    X = X[:300].clone()
    X[0, 0], X[1, 1], X[2, 2] = float("nan"), float("inf"), -float("inf")
    X[3] = q.thresholds[:, 1].detach()  # x == a_j: strictly greater only
    for x in (X, X.double()):
        expected = q._exceeds(x).sum(dim=-1)
        assert torch.equal(q.encode(x), expected)
    assert int(q.encode(X)[0, 0]) == 0
    # a changed threshold changes the codes (the sorted table is not kept stale)
    with torch.no_grad():
        q.thresholds.add_(5.0)
    assert torch.equal(q.encode(X), q._exceeds(X).sum(dim=-1))


@pytest.mark.parametrize("widths", [(8, 8, 8, 8), (8, 0, 12, 7)])
def test_thermometer_forward_is_the_dense_first_layer(widths):
    q, X = _quantizer(widths, max(widths), shuffle=True)
    model = QuantizedMLP(q, build_mlp(q.out_features, 1, 2, 32, 0.0)).train()
    forward = thermometer_forward(model)
    assert forward is not None
    X = X[:64]  # a batch: some of the 255–4,095 bits per feature are set by none of its rows
    codes = q.encode(X)
    dense, fast = model(X), forward(codes)
    torch.testing.assert_close(fast, dense, rtol=1e-5, atol=1e-6)
    weight = model.network[0].weight
    g_dense, = torch.autograd.grad(dense.square().mean(), weight)
    g_fast, = torch.autograd.grad(fast.square().mean(), weight)
    torch.testing.assert_close(g_fast, g_dense, rtol=1e-4, atol=1e-7)
    # a bit no row sets has an exactly zero gradient in both (Adam would step on rounding noise)
    unset = (q.decode(codes).sum(0) == 0)
    assert unset.any()
    assert torch.equal(g_fast[:, unset], torch.zeros_like(g_fast[:, unset]))


def test_thermometer_forward_only_where_it_is_the_same_model_and_faster():
    narrow, _ = _quantizer((6, 6, 6, 6), 6)  # 63 columns per feature: the dense layer is as fast
    assert narrow.out_features <= DENSE_COLUMNS * 4
    assert thermometer_forward(QuantizedMLP(narrow, build_mlp(narrow.out_features, 1, 1, 8, 0.0))) is None
    for soft, trainable in ((True, True), (False, True), (True, False)):
        q, _ = _quantizer((8, 8, 8, 8), 8, soft=soft, trainable=trainable)
        assert thermometer_forward(QuantizedMLP(q, build_mlp(q.out_features, 1, 1, 8, 0.0))) is None


def test_training_on_codes_tracks_the_dense_training():
    """The same seeds and batches: a few epochs on the codes end where the dense bits end."""
    q, X = _quantizer((8, 8, 10, 8), 10)
    y = X[:, 0] ** 2 + X[:, 1].sin()
    torch.manual_seed(1)
    fast_model = QuantizedMLP(q, build_mlp(q.out_features, 1, 2, 32, 0.0))
    dense_model = copy.deepcopy(fast_model)
    results = {}
    for name, model, enabled in (("fast", fast_model, True), ("dense", dense_model, False)):
        original = engine.thermometer_forward
        if not enabled:
            engine.thermometer_forward = lambda m: None  # type: ignore[assignment]
        try:
            results[name] = engine.fit(model, X, y, task="regression", epochs=3, lr=1e-3,
                                       generator=torch.Generator().manual_seed(0), X_val=X[:400], y_val=y[:400])
        finally:
            engine.thermometer_forward = original
    for a, b in zip(results["fast"].val_loss, results["dense"].val_loss, strict=True):
        assert a == pytest.approx(b, rel=1e-3)
    for a, b in zip(fast_model.parameters(), dense_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3)
    # the trained weights serve through the dense path: the model file is the usual one
    assert engine.evaluate(fast_model, X[:400], y[:400], task="regression").loss == pytest.approx(
        results["fast"].val_loss[results["fast"].best_epoch], rel=1e-5)
