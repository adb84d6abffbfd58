"""The paper's MLP (or an ensemble of them), and a quantizer in front of it as one module."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from softbits.errors import DataError
from softbits.nn.batched import BatchedLinear, BatchedMLP, MemberMean, batched_linear
from softbits.nn.quantizers import Quantizer

__all__ = ["build_mlp", "build_network", "describe_network", "network_eval", "QuantizedMLP",
           "QuantizerThenNetwork"]


def build_mlp(d_in: int, d_out: int, layers: int, neurons: int, dropout: float) -> nn.Sequential:
    """Widths [d_in] + [neurons]·layers + [d_out]; ReLU then Dropout after each hidden layer."""
    modules: list[nn.Module] = []
    width = d_in
    for _ in range(layers):
        modules += [nn.Linear(width, neurons), nn.ReLU()]
        if dropout > 0:
            modules.append(nn.Dropout(dropout))
        width = neurons
    modules.append(nn.Linear(width, d_out))
    return nn.Sequential(*modules)


def build_network(d_in: int, d_out: int, layers: int, neurons: int, dropout: float,
                  members: int | None = None) -> nn.Sequential:
    """The server-side network: one MLP (``members=None``) or an ensemble of ``members`` MLPs.

    The ensemble's members train on the mean of their losses and predict their mean
    (:class:`~softbits.nn.batched.BatchedMLP` with ``mean=True``). Training and loading a saved
    model both build through here, so :func:`describe_network` rebuilds the same module.
    """
    if members is None:
        return build_mlp(d_in, d_out, layers, neurons, dropout)
    return BatchedMLP(d_in, d_out, layers, neurons, dropout, members, mean=True)


def describe_network(network: nn.Sequential) -> dict[str, Any]:
    """The :func:`build_network` arguments of ``network`` (for the model file's header)."""
    linear = [m for m in network if isinstance(m, (nn.Linear, BatchedLinear))]
    dropout = next((m.p for m in network if isinstance(m, nn.Dropout)), 0.0)
    return {"d_in": linear[0].in_features, "d_out": linear[-1].out_features,
            "layers": len(linear) - 1, "neurons": linear[0].out_features if len(linear) > 1 else 0,
            "dropout": dropout,
            "members": network.members if isinstance(network, BatchedMLP) else None}


class QuantizerThenNetwork(nn.Module):
    """``network(quantizer(x))``, the shape of every softbits model (one MLP, an ensemble, or K
    stacked trainings); without a quantizer the network sees the features as they are."""

    def __init__(self, quantizer: nn.Module | None, network: nn.Module) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantizer is not None:
            x = self.quantizer(x)
        return self.network(x)


class QuantizedMLP(QuantizerThenNetwork):
    """``network(quantizer(x))``; without a quantizer it is the full-precision model.

    With an ensemble network the output in training mode is the members' [K, N, d_out] (the
    engine's loss averages the members' losses) and in eval mode their mean [N, d_out].
    """

    quantizer: Quantizer | None
    network: nn.Sequential

    def __init__(self, quantizer: Quantizer | None, network: nn.Sequential) -> None:
        super().__init__(quantizer, network)

    def forward_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """The server side: codes from a device → the network's output (eval semantics)."""
        if self.quantizer is None:
            raise DataError("a full-precision model has no codes")
        x = self.quantizer.decode(codes)
        return self.network(x) if self.training else network_eval(self.network, x)


def network_eval(network: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``network(x)`` in eval mode without ``nn.Module`` call dispatch.

    The same kernels run (``F.linear`` or ``batched_linear``, ``torch.relu``, the members' mean;
    dropout is the identity at eval), so the output has the same bits; for a one-sample request
    the dispatch cost more than the math.
    """
    for layer in network:
        if isinstance(layer, nn.Linear):
            x = F.linear(x, layer.weight, layer.bias)
        elif isinstance(layer, BatchedLinear):
            x = batched_linear(x, layer.weight, layer.bias)
        elif isinstance(layer, nn.ReLU):
            x = torch.relu(x)
        elif isinstance(layer, MemberMean):
            x = x.mean(0)
        elif not isinstance(layer, nn.Dropout):
            x = layer(x)
    return x
