"""Stacked training: each member of a stack ends where its own single training ends (same seed,
same batches), members with fewer rows or epochs stop on their own, the vectorised Adam/AdamW is
torch's per member, and what does not stack is refused with a reason."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, make_classification

import softbits.training.stacked as stack_module
from softbits.errors import ConfigError
from softbits.nn.batched import BatchedMLP, MemberDropout
from softbits.training.config import TrainConfig
from softbits.training.engine import lr_factors, predict_tensor, seed_everything, to_tensor
from softbits.training.stacked import StackedAdam, can_stack, fit_stacked
from softbits.training.train import FittedModule, fit_module

BASE = dict(bits=3, layers=2, neurons=16, batch_size=64, device="cpu")
ATOL = 1e-5


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_diabetes(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


def _mixed_stack(method: str) -> list[TrainConfig]:
    """Four members differing in seed, lr, decrease factor, epochs, weight decay, optimizer and
    lr schedule."""
    base = dict(BASE, method=method)
    return [TrainConfig(**base, seed=1, lr=1e-3, epochs=4),
            TrainConfig(**base, seed=2, lr=3e-3, epochs=2, decrease_factor=0.1),
            TrainConfig(**base, seed=3, lr=1e-2, epochs=3, weight_decay=1e-2, optimizer="adamw"),
            TrainConfig(**base, seed=4, lr=2e-3, epochs=4, weight_decay=1e-3, lr_schedule="cosine",
                        warmup_epochs=1)]


def _splits(X: np.ndarray, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Unequal row counts (as CV folds differ by a row), so batch counts per epoch differ too."""
    return [(X[:400], y[:400]), (X[1:400], y[1:400]), (X[:350], y[:350]), (X[10:], y[10:])]


def _max_difference(single: FittedModule, stacked: FittedModule, X_test: torch.Tensor) -> float:
    """Largest difference over all parameters/buffers and the test predictions."""
    a, b = single.module.state_dict(), stacked.module.state_dict()
    assert a.keys() == b.keys()
    diffs = [float((a[name] - b[name]).abs().max()) for name in a]
    diffs.append(float((predict_tensor(single.module, X_test) - predict_tensor(stacked.module, X_test)).abs().max()))
    return max(diffs)


def _assert_members_match(configs: list[TrainConfig], splits: list[tuple[np.ndarray, np.ndarray]],
                          stacked: list[FittedModule], X_test: np.ndarray, task: str = "regression",
                          n_outputs: int = 1) -> None:
    X_te = to_tensor(X_test, torch.device("cpu"))
    for config, (X, y), member in zip(configs, splits, stacked, strict=True):
        single = fit_module(X, y, config, task=task, n_outputs=n_outputs)
        assert _max_difference(single, member, X_te) < ATOL, config
        assert len(member.fit.train_loss) == config.epochs
        np.testing.assert_allclose(member.fit.train_loss, single.fit.train_loss, rtol=1e-5, atol=1e-6)
        assert member.fit.temperatures == single.fit.temperatures
        assert member.fit.lrs == single.fit.lrs
        assert member.fit.best_epoch == single.fit.best_epoch
        np.testing.assert_allclose(member.fit.val_loss, single.fit.val_loss, rtol=1e-5, atol=1e-6)
        assert not member.module.training
        assert member.X_train.shape[0] == X.shape[0] - round(config.val_fraction * X.shape[0])


def test_each_bw_sq_member_reproduces_its_single_training(diabetes) -> None:
    X, y = diabetes
    configs, splits = _mixed_stack("bw-sq"), _splits(X, y)
    stacked = fit_stacked(configs, splits, task="regression")
    _assert_members_match(configs, splits, stacked, X[400:])
    # members trained at all (not a stack that kept its initial state)
    init = fit_module(*splits[0], replace(configs[0], epochs=1), task="regression")
    assert _max_difference(init, stacked[0], to_tensor(X[400:], torch.device("cpu"))) > 1e-3


@pytest.mark.parametrize("method", ["fp", "bw-mq", "bw-qq", "pr-qq", "po-mq", "sq"])
def test_other_stackable_methods_reproduce_their_single_trainings(diabetes, method: str) -> None:
    X, y = diabetes
    configs, splits = _mixed_stack(method)[1:3], _splits(X, y)[1:3]
    _assert_members_match(configs, splits, fit_stacked(configs, splits, task="regression"), X[400:])


def test_classification_members_reproduce_their_single_trainings() -> None:
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=0)
    X = (X - X.mean(0)) / X.std(0)
    base = dict(BASE, method="bw-sq", task="classification")
    configs = [TrainConfig(**base, seed=5, lr=5e-3, epochs=3), TrainConfig(**base, seed=6, lr=1e-3, epochs=2)]
    splits = [(X[:250], y[:250]), (X[20:260], y[20:260])]
    stacked = fit_stacked(configs, splits, task="classification", n_outputs=3)
    _assert_members_match(configs, splits, stacked, X[260:], task="classification", n_outputs=3)


def test_members_with_validation_end_at_their_own_best_epoch(diabetes) -> None:
    """val_fraction holds out each member's own rows, as its single training, and each member with
    validation ends at its own best epoch (one member here without validation keeps its last)."""
    X, y = diabetes
    base = dict(BASE, method="bw-sq")
    configs = [TrainConfig(**base, seed=1, lr=3e-2, epochs=6, val_fraction=0.2),
               TrainConfig(**base, seed=2, lr=1e-3, epochs=4, val_fraction=0.1),
               TrainConfig(**base, seed=3, lr=5e-3, epochs=3)]
    splits = _splits(X, y)[:3]
    stacked = fit_stacked(configs, splits, task="regression")
    _assert_members_match(configs, splits, stacked, X[400:])
    assert [len(m.fit.val_loss) for m in stacked] == [6, 4, 0]
    assert stacked[0].fit.best_epoch == 4  # not the last epoch: the restore is exercised
    assert stacked[2].fit.best_epoch is None
    assert stacked[0].X_train.shape[0] == 320


def test_stacked_histories_are_the_single_histories_epoch_by_epoch(diabetes) -> None:
    """One epoch driver: the stacked histories hold the same records (temperature, lr, losses,
    best epoch) as the single trainings, for members of different lengths and lr schedules."""
    X, y = diabetes
    configs = [replace(c, val_fraction=0.2) for c in _mixed_stack("bw-sq")]
    splits = _splits(X, y)
    stacked = fit_stacked(configs, splits, task="regression")
    for config, (Xk, yk), member in zip(configs, splits, stacked, strict=True):
        single = fit_module(Xk, yk, config, task="regression").fit
        records, expected = member.fit.epochs(), single.epochs()
        assert [sorted(r) for r in records] == [sorted(r) for r in expected]
        assert [r["lr"] for r in records] == [r["lr"] for r in expected]
        assert [r["lr"] for r in records] == [config.lr * f for f in
                                              lr_factors(config.lr_schedule, config.epochs, config.warmup_epochs)]
        for got, want in zip(records, expected, strict=True):
            assert got["temperature"] == want["temperature"]
            np.testing.assert_allclose([got["train_loss"], got["val_loss"]],
                                       [want["train_loss"], want["val_loss"]], rtol=1e-5, atol=1e-6)
        assert member.fit.best_epoch == single.best_epoch
        assert 0 < member.fit.train_seconds


def test_swapped_member_generators_break_equivalence(diabetes, monkeypatch) -> None:
    """The comparison can fail: members that shuffle with each other's generators no longer
    match their single trainings."""
    X, y = diabetes
    configs, splits = _mixed_stack("bw-sq")[:2], _splits(X, y)[:2]
    seeds = iter([configs[1].seed, configs[0].seed])

    def swapped(seed: int) -> torch.Generator:
        seed_everything(seed)
        return torch.Generator().manual_seed(next(seeds))

    monkeypatch.setattr(stack_module, "seed_everything", swapped)
    stacked = fit_stacked(configs, splits, task="regression")
    X_te = to_tensor(X[400:], torch.device("cpu"))
    for config, (Xs, ys), member in zip(configs, splits, stacked, strict=True):
        assert _max_difference(fit_module(Xs, ys, config, task="regression"), member, X_te) > 1e-3


@pytest.mark.parametrize("decoupled", [False, True])
def test_stacked_adam_is_torch_adam_per_member_and_skips_inactive_members(decoupled: bool) -> None:
    torch.manual_seed(0)
    K, lrs, decays = 3, [1e-2, 3e-3, 5e-2], [0.0, 1e-2, 0.1]
    start = torch.randn(K, 4, 5)
    grads = [torch.randn(K, 4, 5) for _ in range(4)]
    active = [torch.tensor([True, True, True]), torch.tensor([True, False, True]),
              torch.tensor([False, True, True]), torch.tensor([True, True, False])]
    stacked = torch.nn.Parameter(start.clone())
    optimizer = StackedAdam([stacked], weight_decay=decays, decoupled=[decoupled] * K)
    for grad, on in zip(grads, active, strict=True):
        stacked.grad = grad.clone()
        optimizer.step(on, torch.tensor(lrs, dtype=torch.float64))
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    for k in range(K):
        single = torch.nn.Parameter(start[k].clone())
        reference = kind([single], lr=lrs[k], weight_decay=decays[k])
        for grad, on in zip(grads, active, strict=True):
            if on[k]:
                single.grad = grad[k].clone()
                reference.step()
        torch.testing.assert_close(stacked.detach()[k], single.detach(), rtol=0, atol=1e-6)
    assert optimizer.steps.tolist() == [3.0, 3.0, 3.0]


def test_member_dropout_uses_each_members_rate() -> None:
    torch.manual_seed(0)
    drop = MemberDropout([0.0, 0.5, 0.9])
    x = torch.ones(3, 2000, 8)
    out = drop(x)
    assert torch.equal(out[0], x[0])
    zeros = (out == 0).float().mean((1, 2))
    assert abs(float(zeros[1]) - 0.5) < 0.03 and abs(float(zeros[2]) - 0.9) < 0.03
    assert torch.allclose(out[1][out[1] != 0], torch.tensor(2.0))
    drop.eval()
    assert torch.equal(drop(x), x)
    assert not any(isinstance(m, MemberDropout) for m in BatchedMLP(4, 1, 2, 8, [0.0, 0.0], 2))
    with pytest.raises(ValueError, match="3 dropout rates for 2 members"):
        BatchedMLP(4, 1, 2, 8, [0.0, 0.1, 0.2], 2)


def test_stacked_dropout_trains_each_member_with_its_rate(diabetes) -> None:
    X, y = diabetes
    configs = [TrainConfig(**BASE, method="bw-sq", seed=1, epochs=2),
               TrainConfig(**BASE, method="bw-sq", seed=2, epochs=2, dropout=0.3)]
    splits = _splits(X, y)[:2]
    stacked = fit_stacked(configs, splits, task="regression")
    X_te = to_tensor(X[400:], torch.device("cpu"))
    # the member without dropout is untouched by its neighbour's dropout
    assert _max_difference(fit_module(*splits[0], configs[0], task="regression"), stacked[0], X_te) < ATOL
    assert np.isfinite(stacked[1].fit.train_loss).all()


@pytest.mark.parametrize("change, reason", [
    ({"method": "lsq"}, "method lsq has no stacked training"),
    ({"method": "bw-sq-ens"}, "method bw-sq-ens has no stacked training"),
    ({"neurons": 32}, "members differ in neurons"),
    ({"batch_size": 128}, "members differ in batch_size"),
])
def test_can_stack_refuses_with_a_reason(diabetes, change: dict, reason: str) -> None:
    first = TrainConfig(**BASE, method="bw-sq")
    other = replace(first, **change)
    configs = [replace(first, method=other.method), other] if "method" in change else [first, other]
    check = can_stack(configs)
    assert not check and reason in check.reason
    X, y = diabetes
    with pytest.raises(ConfigError, match="cannot stack these trainings"):
        fit_stacked(configs, [(X, y), (X, y)], task="regression")


def test_stack_inputs_are_checked(diabetes) -> None:
    X, y = diabetes
    configs = [TrainConfig(**BASE, seed=s) for s in (1, 2)]
    assert can_stack(configs) and not can_stack([])
    with pytest.raises(ConfigError, match="2 trainings but 1 training splits"):
        fit_stacked(configs, [(X, y)], task="regression")
    with pytest.raises(ConfigError, match="one width"):
        fit_stacked(configs, [(X, y), (X[:, :5], y)], task="regression")
