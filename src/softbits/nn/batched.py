"""K independent MLPs as one module: one batched matmul per layer instead of K small ones.

:class:`BatchedMLP` is the general block: member k has its own weights [in, out] and bias, drawn
independently with ``nn.Linear``'s default distribution, and sees either a shared input [N, in]
(an ensemble behind one quantizer) or its own input [K, N, in] (many independent trainings
stacked into one model, each member with its own batch). Its output is always [K, N, out], so a
caller decides how members combine; the members never mix (the gradient of member k's loss
touches member k's parameters only).

:class:`MemberMean` is the ensemble's combination step (TabM, Gorishniy et al. 2025): in training
the members' outputs pass through, so the loss can be the mean of the members' losses; in eval
the prediction is their mean. For classification the logits are averaged (the normalised
geometric mean of the members' probabilities): the network stays task-agnostic and its output
stays logits for cross-entropy and argmax.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["BatchedLinear", "BatchedMLP", "MemberDropout", "MemberMean", "batched_linear"]


def batched_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x[k] @ weight[k] + bias[k]`` for every member k in one ``baddbmm``.

    ``x`` is [N, in] (shared: broadcast to the members without a copy) or [K, N, in].
    """
    if x.dim() == 2:
        x = x.expand(weight.shape[0], *x.shape)
    return torch.baddbmm(bias.unsqueeze(1), x, weight)


class BatchedLinear(nn.Module):
    """K linear layers: ``weight`` [K, in, out] (stored input-major for ``baddbmm``), ``bias`` [K, out]."""

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.members = int(members)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = nn.Parameter(torch.empty(self.members, self.in_features, self.out_features))
        self.bias = nn.Parameter(torch.empty(self.members, self.out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s default: weight and bias ~ U(±1/sqrt(in)), every member drawn anew.

        (``nn.Linear`` uses kaiming_uniform with a = sqrt(5) for the weight, which is this bound.)
        """
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batched_linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"members={self.members}, in_features={self.in_features}, out_features={self.out_features}"


class MemberMean(nn.Module):
    """Members' outputs [K, N, out] unchanged in training; their mean [N, out] in eval."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.training else x.mean(0)


class MemberDropout(nn.Module):
    """Dropout on [K, N, width] with member k's own rate ``rates[k]`` (stacked trainings that
    differ in dropout): zero with probability p_k, scale the kept values by 1/(1 − p_k)."""

    rates: torch.Tensor

    def __init__(self, rates: Sequence[float]) -> None:
        super().__init__()
        if any(not 0 <= p < 1 for p in rates):
            raise ValueError(f"dropout rates must be in [0, 1), got {list(rates)}")
        self.register_buffer("rates", torch.tensor([float(p) for p in rates]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = (1 - self.rates).to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return x * (torch.rand_like(x) < keep) / keep

    def extra_repr(self) -> str:
        return f"rates={self.rates.tolist()}"


class BatchedMLP(nn.Sequential):
    """K MLPs of the paper's shape ([d_in] + [neurons]·layers + [d_out], ReLU then Dropout after
    each hidden layer), evaluated together.

    Dropout acts elementwise on [K, N, neurons], so every member draws its own mask; a sequence of
    K rates gives member k its own rate (:class:`MemberDropout`). With
    ``mean=True`` a :class:`MemberMean` ends the block (an ensemble); without it the output is
    [K, N, d_out] in every mode.
    """

    def __init__(self, d_in: int, d_out: int, layers: int, neurons: int,
                 dropout: float | Sequence[float], members: int, *, mean: bool = False) -> None:
        if isinstance(dropout, Sequence) and len(dropout) != members:
            raise ValueError(f"{len(dropout)} dropout rates for {members} members")
        modules: list[nn.Module] = []
        width = d_in
        for _ in range(layers):
            modules += [BatchedLinear(members, width, neurons), nn.ReLU()]
            if isinstance(dropout, Sequence):
                if any(p > 0 for p in dropout):
                    modules.append(MemberDropout(dropout))
            elif dropout > 0:
                modules.append(nn.Dropout(dropout))
            width = neurons
        modules.append(BatchedLinear(members, width, d_out))
        if mean:
            modules.append(MemberMean())
        super().__init__(*modules)
        self.members = int(members)
