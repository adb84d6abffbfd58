"""Stacked training: K trainings of one architecture as one model, each member on its own.

Trainings that share the method, bits, layers, neurons, batch size and task (and the data's
width) but differ in seed, split or fold, learning rate, dropout, weight decay, optimizer,
temperature schedule and epochs train together: member k is built exactly as
:func:`softbits.training.train.fit_module` builds its single training (same seed, same quantizer
initialisation on its own rows, same build order) and then copied into one stacked model, a
:class:`StackedQuantizer` in front of a :class:`~softbits.nn.batched.BatchedMLP` that sees per-member
input [K, B, F]. Every step each member takes its own batch (its own generator's permutation of
its own rows), the loss is the sum of the members' mean losses (so member k's gradient is its own
loss's), and :class:`StackedAdam` updates each member with its own learning rate, weight decay and
step count. A member with fewer batches in an epoch, or past its own last epoch, skips the step:
no gradient, no optimizer state change. A member with ``val_fraction`` > 0 holds out its single
training's validation rows and ends at its own best epoch.

Without dropout, member k ends where its single training ends up to float rounding (the batched
matmuls sum in another order); with dropout the masks are drawn differently, so only the
distribution matches. :func:`can_stack` says which configurations stack and why others do not, so
a caller can fall back to single trainings visibly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from softbits.errors import ConfigError
from softbits.nn.batched import BatchedLinear, BatchedMLP
from softbits.nn.network import QuantizedMLP, QuantizerThenNetwork
from softbits.nn.quantizers import BitwiseQuantizer, MidpointQuantizer, Quantizer, SoftQuantizer, ThresholdQuantizer
from softbits.nn.schedules import make_schedule
from softbits.training.config import TrainConfig
from softbits.training.engine import (
    EpochPlan,
    FitResult,
    lr_factors,
    resolve_device,
    run_epochs,
    seed_everything,
    target_tensor,
    to_tensor,
)
from softbits.training.train import FittedModule, build_model, check_training_memory, hold_out_validation

__all__ = ["STACKABLE_METHODS", "StackCheck", "StackedAdam", "StackedModel", "StackedQuantizer",
           "StackedSteps", "can_stack", "fit_stacked", "stack_modules", "unstack_into"]

#: methods whose training stacks (po-* train the plain FP network, as fp does)
STACKABLE_METHODS = ("fp", "po-mq", "po-qq", "pr-mq", "pr-qq", "sq", "bw-mq", "bw-qq", "bw-sq")

#: settings every member must share: they fix the stacked model's shapes and the batch layout
SHARED_FIELDS = ("method", "bits", "layers", "neurons", "batch_size", "task", "device")


@dataclass(frozen=True)
class StackCheck:
    """Whether configurations stack; ``reason`` says why not (empty when they do)."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def can_stack(configs: Sequence[TrainConfig]) -> StackCheck:
    """Whether ``configs`` train as one stacked model, and if not, the reason in one line.

    Refused: methods outside :data:`STACKABLE_METHODS` (their quantizers have no stacked form
    yet) and members differing in a :data:`SHARED_FIELDS` setting.
    """
    if not configs:
        return StackCheck(False, "no trainings to stack")
    first = configs[0]
    if any(c.bits_per_feature is not None for c in configs):
        return StackCheck(False, "per-feature widths do not stack yet")
    if any(c.predictor != "mlp" for c in configs):
        return StackCheck(False, "a tree or auto predictor trains after its network, one at a time")
    if any(c.threshold_lr_scale != 1.0 for c in configs):
        return StackCheck(False, "a threshold learning-rate scale does not stack yet")
    if first.method not in STACKABLE_METHODS:
        return StackCheck(False, f"method {first.method} has no stacked training "
                                 f"(stackable: {', '.join(STACKABLE_METHODS)})")
    for name in SHARED_FIELDS:
        values = sorted({str(getattr(c, name)) for c in configs})
        if len(values) > 1:
            return StackCheck(False, f"members differ in {name} ({', '.join(values)}); "
                                     "a stack shares one architecture and batch size")
    return StackCheck(True)


class StackedQuantizer(nn.Module):
    """K threshold quantizers of one kind: thresholds [K, F, M], temperature [K].

    ``kind`` ``bitwise``: member k computes what its :class:`BitwiseQuantizer` computes (the
    same elementwise operations, so the same bits): soft σ((x − a)/τ_k) in training when
    ``soft``, the hard bits 1[x > a] otherwise. ``midpoint``: the level of the exceeded-threshold
    count, as :class:`MidpointQuantizer`. ``soft`` (SQ): Σ_j σ((x − a_j)/τ_k) in training, the
    count in eval, as :class:`SoftQuantizer`. Input [K, B, F], output [K, B, out_features].
    """

    temperature: torch.Tensor
    thresholds: torch.Tensor
    levels: torch.Tensor

    def __init__(self, members: Sequence[Quantizer]) -> None:
        super().__init__()
        first = members[0]
        if not all(isinstance(q, type(first)) for q in members):
            raise ConfigError("stacked members need quantizers of one kind")
        if isinstance(first, BitwiseQuantizer):
            self.kind, self.soft, trainable = "bitwise", first.soft, first.trainable
        elif isinstance(first, MidpointQuantizer):
            self.kind, self.soft, trainable = "midpoint", False, False
        elif isinstance(first, SoftQuantizer):
            self.kind, self.soft, trainable = "sum", True, first.trainable
        else:
            raise ConfigError(f"{type(first).__name__} has no stacked form")
        quantizers = [q for q in members if isinstance(q, ThresholdQuantizer)]
        thresholds = torch.stack([q.thresholds.detach().clone() for q in quantizers])
        if trainable:
            self.thresholds = nn.Parameter(thresholds)
        else:
            self.register_buffer("thresholds", thresholds)
        if self.kind == "midpoint":
            midpoints = [q for q in members if isinstance(q, MidpointQuantizer)]
            self.register_buffer("levels", torch.stack([q.levels.detach().clone() for q in midpoints]))
        self.register_buffer("temperature", torch.stack([q.temperature.detach().clone() for q in members]))

    @property
    def uses_temperature(self) -> bool:
        return self.soft

    @property
    def out_features(self) -> int:
        n_features, m = self.thresholds.shape[1:]
        return n_features * m if self.kind == "bitwise" else n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "midpoint":
            codes = (x.unsqueeze(-1) > self.thresholds.unsqueeze(1)).sum(-1)
            levels = self.levels.unsqueeze(1).expand(-1, x.shape[1], -1, -1)
            return torch.gather(levels, 3, codes.unsqueeze(-1)).squeeze(-1).to(x.dtype)
        if self.kind == "sum":
            if self.training:
                return torch.sigmoid((x.unsqueeze(-1) - self.thresholds.unsqueeze(1))
                                     / self.temperature.view(-1, 1, 1, 1)).sum(-1)
            return (x.unsqueeze(-1) > self.thresholds.unsqueeze(1)).sum(-1).to(x.dtype)
        if self.training and self.soft:
            inv_t = self.temperature.reciprocal().view(-1, 1, 1)
            z = (x * inv_t).unsqueeze(-1) + self.thresholds.unsqueeze(1) * -inv_t.unsqueeze(-1)
            return torch.sigmoid(z).flatten(2)
        return (x.unsqueeze(-1) > self.thresholds.unsqueeze(1)).to(x.dtype).flatten(2)


class StackedModel(QuantizerThenNetwork):
    """``network(quantizer(x))`` for K members: input [K, B, F], output [K, B, d_out]."""

    quantizer: StackedQuantizer | None
    network: BatchedMLP

    def __init__(self, quantizer: StackedQuantizer | None, network: BatchedMLP) -> None:
        super().__init__(quantizer, network)


def _linears(network: nn.Sequential) -> list[nn.Linear]:
    return [m for m in network if isinstance(m, nn.Linear)]


def stack_modules(modules: Sequence[QuantizedMLP], dropout: Sequence[float]) -> StackedModel:
    """One stacked model holding a copy of each single module's parameters (member k = modules[k])."""
    first = _linears(modules[0].require_network())
    network = BatchedMLP(first[0].in_features, first[-1].out_features, len(first) - 1,
                         first[0].out_features, list(dropout), len(modules))
    with torch.no_grad():
        for layer, batched in enumerate(m for m in network if isinstance(m, BatchedLinear)):
            for k, module in enumerate(modules):
                linear = _linears(module.require_network())[layer]
                batched.weight[k].copy_(linear.weight.T)
                batched.bias[k].copy_(linear.bias)
    quantizers = [m.quantizer for m in modules if m.quantizer is not None]
    quantizer = StackedQuantizer(quantizers) if quantizers else None
    return StackedModel(quantizer, network).to(first[0].weight.device)


def unstack_into(stacked: StackedModel, modules: Sequence[QuantizedMLP]) -> None:
    """Copy member k's trained parameters (and temperature) back into ``modules[k]``."""
    batched = [m for m in stacked.network if isinstance(m, BatchedLinear)]
    with torch.no_grad():
        for k, module in enumerate(modules):
            for layer, linear in zip(batched, _linears(module.require_network()), strict=True):
                linear.weight.copy_(layer.weight[k].T)
                linear.bias.copy_(layer.bias[k])
            if isinstance(module.quantizer, ThresholdQuantizer) and stacked.quantizer is not None:
                module.quantizer.thresholds.copy_(stacked.quantizer.thresholds[k])
                module.quantizer.temperature.copy_(stacked.quantizer.temperature[k])
            module.eval()


class StackedAdam:
    """Adam / AdamW on stacked parameters [K, ...], member k with its own rate, weight decay and
    step count: the update of ``torch.optim.Adam`` (L2 decay added to the gradient) or
    ``torch.optim.AdamW`` (decoupled decay) per member, bias corrections included.

    ``step(active, lr)``: members with ``active[k]`` False keep their parameters, moments and
    step count, as if the step did not happen for them.
    """

    def __init__(self, params: Sequence[nn.Parameter], *, weight_decay: Sequence[float],
                 decoupled: Sequence[bool], betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = list(params)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.l2 = torch.tensor([0.0 if d else w for w, d in zip(weight_decay, decoupled, strict=True)],
                               dtype=torch.float64)
        self.decay = torch.tensor([w if d else 0.0 for w, d in zip(weight_decay, decoupled, strict=True)],
                                  dtype=torch.float64)
        self.steps = torch.zeros(len(self.l2), dtype=torch.float64)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor, lr: torch.Tensor) -> None:
        """One update of the ``active`` members [K] (bool) with learning rates ``lr`` [K].

        In place, as torch's optimizers: an inactive member gets coefficients that leave its
        values exactly as they are (moment weights 0, step size 0, no decay).
        """
        self.steps += active.to(torch.float64)
        steps = self.steps.clamp(min=1)
        coefficients = {
            "m_weight": torch.where(active, 1 - self.beta1, 0.0),
            "v_keep": torch.where(active, self.beta2, 1.0),
            "v_weight": torch.where(active, 1 - self.beta2, 0.0),
            "bias2_sqrt": (1 - self.beta2 ** steps).sqrt(),
            "step_size": torch.where(active, -lr / (1 - self.beta1 ** steps), 0.0),
            "shrink": torch.where(active, 1 - lr * self.decay, 1.0),
            "l2": self.l2,
        }
        use_l2, use_decay = bool((self.l2 != 0).any()), bool((self.decay != 0).any())
        cast: dict[tuple[torch.device, torch.dtype], dict[str, torch.Tensor]] = {}
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            if (p.device, p.dtype) not in cast:
                cast[p.device, p.dtype] = {name: c.to(device=p.device, dtype=p.dtype)
                                           for name, c in coefficients.items()}
            c = {name: value.view((-1,) + (1,) * (p.dim() - 1)) for name, value in cast[p.device, p.dtype].items()}
            grad = p.grad.addcmul(c["l2"], p) if use_l2 else p.grad
            if use_decay:
                p.mul_(c["shrink"])
            m.lerp_(grad, c["m_weight"])
            v.mul_(c["v_keep"]).addcmul_(grad * c["v_weight"], grad)
            denom = v.sqrt().div_(c["bias2_sqrt"]).add_(self.eps)
            p.addcdiv_(m * c["step_size"], denom)


def _member_losses(out: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor,
                   task: str) -> torch.Tensor:
    """Each member's mean loss over its valid rows, [K] (0 for a member without rows)."""
    if task == "classification":
        rows = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
    else:
        rows = (out.squeeze(-1) - y) ** 2
    return rows.where(valid, 0.0).sum(1) / counts.clamp(min=1)


def _pad(tensors: Sequence[torch.Tensor | None], like: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Members' row sets [N_k, ...] as one zero-padded [K, max N_k, ...] tensor, and the N_k
    (0 for a member without rows)."""
    rows = [0 if t is None else t.shape[0] for t in tensors]
    out = torch.zeros(len(tensors), max(rows), *like.shape[1:], dtype=like.dtype, device=like.device)
    for k, t in enumerate(tensors):
        if t is not None:
            out[k, :rows[k]] = t
    return out, rows


def fit_stacked(configs: Sequence[TrainConfig], splits: Sequence[tuple[np.ndarray, np.ndarray]], *,
                task: str, n_outputs: int = 1) -> list[FittedModule]:
    """Train ``configs[k]`` on ``splits[k]`` (standardized X_train, y_train) for every k at once.

    Returns one :class:`~softbits.training.train.FittedModule` per member, as
    :func:`~softbits.training.train.fit_module` would: the member's own single module (eval mode) with the
    trained parameters, its history (losses and temperatures of its own epochs;
    ``train_seconds`` is the stack's wall time until the member's last epoch) and its training
    rows. A member with ``val_fraction`` > 0 holds out the same rows as its single training and
    ends at its own best epoch. Refuses with :class:`ConfigError` what :func:`can_stack` refuses.
    """
    check = can_stack(configs)
    if not check:
        raise ConfigError(f"cannot stack these trainings: {check.reason}")
    if len(splits) != len(configs):
        raise ConfigError(f"{len(configs)} trainings but {len(splits)} training splits")
    widths = sorted({np.shape(X)[1] if np.ndim(X) == 2 else -1 for X, _ in splits})
    if len(widths) > 1 or widths[0] < 1:
        raise ConfigError(f"stacked members need 2-D features of one width, got widths {widths}")
    device, cpu = resolve_device(configs[0].device), torch.device("cpu")
    members, generators = [], []
    train: list[tuple[torch.Tensor, torch.Tensor]] = []
    val: list[tuple[torch.Tensor | None, torch.Tensor | None]] = []
    inits: dict[tuple[object, ...], dict[str, torch.Tensor]] = {}
    digests: list[bytes] = []  # members' training rows, to share inits and device copies
    for config, (X_train, y_train) in zip(configs, splits, strict=True):
        generator = seed_everything(config.seed)  # as fit_module: same init, same batches
        X, y = to_tensor(X_train, cpu), target_tensor(y_train, cpu, task)
        if X.shape[0] != y.shape[0] or X.shape[0] == 0:
            raise ConfigError(f"a training split has {X.shape[0]} rows and {y.shape[0]} targets")
        X_tr, y_tr, X_val, y_val = hold_out_validation(X, y, config)
        digests.append(_fingerprint(X_tr))
        members.append(_build_member(config, X_tr, digests[-1], n_outputs, inits))
        generators.append(generator)
        train.append((X_tr, y_tr))
        val.append((X_val, y_val))
    K, batch_size = len(configs), configs[0].batch_size
    d_in = members[0].quantizer.out_features if members[0].quantizer is not None else train[0][0].shape[1]
    check_training_memory(configs[0], d_in, n_outputs, K, device, batch_rows=batch_size)
    # members are built and stacked on the CPU and the stack moves once: K small modules moved
    # one by one cost more than their training on a GPU
    stacked = stack_modules(members, [c.dropout for c in configs]).to(device)
    histories = _train(stacked, configs, generators, train, val, task=task, batch_size=batch_size, device=device)
    unstack_into(stacked.to(cpu), members)
    rows: dict[bytes, torch.Tensor] = {}
    return [FittedModule(module=m.to(device), fit=h, X_train=_on_device(X, digest, device, rows))
            for m, h, (X, _), digest in zip(members, histories, train, digests, strict=True)]


def _fingerprint(X: torch.Tensor) -> bytes:
    """A digest of a CPU tensor's shape and values: equal rows, equal digest."""
    digest = hashlib.blake2b(str(tuple(X.shape)).encode(), digest_size=16)
    digest.update(X.contiguous().numpy().tobytes())
    return digest.digest()


def _build_member(config: TrainConfig, X_tr: torch.Tensor, digest: bytes, n_outputs: int,
                  inits: dict[tuple[object, ...], dict[str, torch.Tensor]]) -> QuantizedMLP:
    """``build_model`` on the CPU, as the single training builds it. Members whose quantizer
    initialises on the same rows take the first one's initial quantizer state instead of
    recomputing its quantiles: the initialisation is deterministic and draws no random numbers,
    so the network's initialisation (the RNG's next draws) is unchanged. ``digest`` is
    :func:`_fingerprint` of ``X_tr``."""
    key = (config.method, config.bits, config.init, config.bits_per_feature, digest)
    state = inits.get(key)
    module = build_model(config, X_tr.shape[1], n_outputs, X_tr if state is None else None)
    if module.quantizer is not None:
        if state is None:
            inits[key] = {name: t.clone() for name, t in module.quantizer.state_dict().items()}
        else:
            module.quantizer.load_state_dict(state)
    return module


def _on_device(X: torch.Tensor, digest: bytes, device: torch.device,
               moved: dict[bytes, torch.Tensor]) -> torch.Tensor:
    """``X`` (whose :func:`_fingerprint` is ``digest``) on ``device``, one copy per distinct row
    set (members often share their rows)."""
    if device.type == "cpu":
        return X
    if digest not in moved:
        moved[digest] = X.to(device)
    return moved[digest]


@torch.no_grad()
def _validation_losses(stacked: StackedModel, X: torch.Tensor, y: torch.Tensor, rows: Sequence[int],
                       task: str, chunk: int = 4096) -> torch.Tensor:
    """Each member's eval-mode (hard) loss on its own validation rows, [K]; chunks of rows keep
    the [K, rows, F·M] input bounded."""
    stacked.eval()
    counts = torch.tensor(list(rows), device=X.device)
    total = torch.zeros(len(rows), device=X.device)
    for start in range(0, X.shape[1], chunk):
        xb, yb = X[:, start:start + chunk], y[:, start:start + chunk]
        valid_rows = (counts - start).clamp(0, xb.shape[1])
        valid = torch.arange(xb.shape[1], device=X.device).unsqueeze(0) < valid_rows.unsqueeze(1)
        total += _member_losses(stacked(xb), yb, valid, valid_rows, task) * valid_rows
    return total / counts.clamp(min=1)


class StackedSteps:
    """The step strategy of a stack: each epoch every live member draws its own permutation of
    its own rows; step s trains batch s of every member that has one, and :class:`StackedAdam`
    updates just those members."""

    def __init__(self, stacked: StackedModel, configs: Sequence[TrainConfig],
                 generators: Sequence[torch.Generator], train: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 val: Sequence[tuple[torch.Tensor | None, torch.Tensor | None]], *, task: str,
                 batch_size: int, device: torch.device) -> None:
        self.stacked, self.generators, self.task, self.batch_size = stacked, generators, task, batch_size
        self.device = device
        X_pad, self.rows = _pad([X for X, _ in train], train[0][0])
        y_pad, _ = _pad([y for _, y in train], train[0][1])
        X_val, self.val_rows = _pad([X for X, _ in val], train[0][0])
        y_val, _ = _pad([y for _, y in val], train[0][1])
        self.X, self.y, self.X_val, self.y_val = (t.to(device) for t in (X_pad, y_pad, X_val, y_val))
        self.optimizer = StackedAdam(list(stacked.parameters()), weight_decay=[c.weight_decay for c in configs],
                                     decoupled=[c.optimizer == "adamw" for c in configs])
        self.member = torch.arange(len(configs), device=device).unsqueeze(1)
        self.lr = torch.zeros(len(configs), dtype=torch.float64)
        self._best: dict[str, torch.Tensor] = {}

    def start_epoch(self, live: Sequence[bool], temperatures: Sequence[float | None],
                    lrs: Sequence[float]) -> None:
        quantizer = self.stacked.quantizer
        for k, tau in enumerate(temperatures):
            if tau is not None and quantizer is not None and quantizer.uses_temperature:
                quantizer.temperature[k] = tau
        self.lr = torch.tensor(list(lrs), dtype=torch.float64)

    def train_epoch(self, live: Sequence[bool]) -> list[float]:
        K, batch_size, device = len(live), self.batch_size, self.device
        n = [self.rows[k] if live[k] else 0 for k in range(K)]
        steps = max(math.ceil(r / batch_size) for r in n)
        order = torch.zeros(K, steps * batch_size, dtype=torch.long)
        for k in range(K):
            if live[k]:
                order[k, :n[k]] = torch.randperm(n[k], generator=self.generators[k])
        order = order.to(device)
        self.stacked.train()
        total = torch.zeros(K, device=device)
        for s in range(steps):
            counts_cpu = torch.tensor([min(max(r - s * batch_size, 0), batch_size) for r in n])
            width = int(counts_cpu.max())
            idx = order[:, s * batch_size: s * batch_size + width]
            counts = counts_cpu.to(device)
            valid = torch.arange(width, device=device).unsqueeze(0) < counts.unsqueeze(1)
            losses = _member_losses(self.stacked(self.X[self.member, idx]), self.y[self.member, idx],
                                    valid, counts, self.task)
            self.optimizer.zero_grad()
            losses.sum().backward()
            self.optimizer.step(counts_cpu > 0, self.lr)
            total += losses.detach() * counts
        return (total.cpu() / torch.tensor([max(r, 1) for r in n])).tolist()

    def validation_losses(self, live: Sequence[bool]) -> list[float | None]:
        checked = [rows if on else 0 for rows, on in zip(self.val_rows, live, strict=True)]
        if not any(checked):
            return [None] * len(live)
        losses = _validation_losses(self.stacked, self.X_val, self.y_val, checked, self.task).tolist()
        return [float(loss) if rows else None for loss, rows in zip(losses, checked, strict=True)]

    def keep(self, member: int) -> None:
        for name, value in self.stacked.state_dict().items():
            self._best.setdefault(name, value.detach().clone())[member].copy_(value[member])

    @torch.no_grad()
    def restore(self, members: Sequence[int]) -> None:
        self.stacked.eval()
        state = self.stacked.state_dict()
        for k in members:
            for name, value in state.items():
                value[k].copy_(self._best[name][k])


def _train(stacked: StackedModel, configs: Sequence[TrainConfig], generators: Sequence[torch.Generator],
           train: Sequence[tuple[torch.Tensor, torch.Tensor]],
           val: Sequence[tuple[torch.Tensor | None, torch.Tensor | None]], *, task: str,
           batch_size: int, device: torch.device) -> list[FitResult]:
    """The stack's members through the one epoch driver, each with its own plan (epochs,
    learning-rate factors, temperatures), as :func:`~softbits.training.engine.fit` plans a
    single training."""
    soft = stacked.quantizer is not None and stacked.quantizer.uses_temperature
    plans = [EpochPlan(epochs=c.epochs, lr=c.lr, lr_factors=lr_factors(c.lr_schedule, c.epochs, c.warmup_epochs),
                       temperatures=make_schedule(c.schedule, c.epochs, c.decrease_factor).values().tolist()
                       if soft else None)
             for c in configs]
    steps = StackedSteps(stacked, configs, generators, train, val, task=task, batch_size=batch_size,
                         device=device)
    return run_epochs(steps, plans)
