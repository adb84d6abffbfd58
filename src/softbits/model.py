"""The paper's MLP, and a quantizer in front of it as one module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from softbits.quantizers import Quantizer

__all__ = ["build_mlp", "network_eval", "QuantizedMLP"]


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


class QuantizedMLP(nn.Module):
    """``network(quantizer(x))``; without a quantizer it is the full-precision model."""

    def __init__(self, quantizer: Quantizer | None, network: nn.Sequential) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantizer is not None:
            x = self.quantizer(x)
        return self.network(x)

    def forward_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """The server side: codes from a device → the network's output (eval semantics)."""
        if self.quantizer is None:
            raise TypeError("a full-precision model has no codes")
        x = self.quantizer.decode(codes)
        return self.network(x) if self.training else network_eval(self.network, x)


def network_eval(network: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``network(x)`` in eval mode without ``nn.Module`` call dispatch.

    The same kernels run (``F.linear``, ``torch.relu``; dropout is the identity at eval), so the
    output has the same bits; for a one-sample request the dispatch cost more than the math.
    """
    for layer in network:
        if isinstance(layer, nn.Linear):
            x = F.linear(x, layer.weight, layer.bias)
        elif isinstance(layer, nn.ReLU):
            x = torch.relu(x)
        elif not isinstance(layer, nn.Dropout):
            x = layer(x)
    return x
