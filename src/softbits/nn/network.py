"""The paper's MLP (or an ensemble of them), and a quantizer in front of it as one module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from softbits.errors import DataError
from softbits.nn.batched import BatchedLinear, BatchedMLP, MemberMean, batched_linear
from softbits.nn.quantizers import BitwiseQuantizer, Quantizer

__all__ = ["build_mlp", "build_network", "describe_network", "network_eval", "QuantizedMLP",
           "QuantizerThenNetwork", "thermometer_forward"]


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


#: what a model whose trees serve without a network says when asked for one
NO_NETWORK = "this model has no network: trees serve its codes"


class QuantizerThenNetwork(nn.Module):
    """``network(quantizer(x))``, the shape of every softbits model (one MLP, an ensemble, or K
    stacked trainings); without a quantizer the network sees the features as they are."""

    def __init__(self, quantizer: nn.Module | None, network: nn.Module | None) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantizer is not None:
            x = self.quantizer(x)
        if self.network is None:
            raise DataError(NO_NETWORK)
        return self.network(x)


class QuantizedMLP(QuantizerThenNetwork):
    """``network(quantizer(x))``; without a quantizer it is the full-precision model.

    With an ensemble network the output in training mode is the members' [K, N, d_out] (the
    engine's loss averages the members' losses) and in eval mode their mean [N, d_out].
    ``network`` is None where trees serve codes that no training moves (fixed thresholds):
    the module is then the quantizer alone.
    """

    quantizer: Quantizer | None
    network: nn.Sequential | None

    def __init__(self, quantizer: Quantizer | None, network: nn.Sequential | None) -> None:
        super().__init__(quantizer, network)

    def forward_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """The server side: codes from a device → the network's output (eval semantics)."""
        if self.quantizer is None:
            raise DataError("a full-precision model has no codes")
        network = self.require_network()
        x = self.quantizer.decode(codes)
        return network(x) if self.training else network_eval(network, x)

    def require_network(self) -> nn.Sequential:
        """The network; a one-line :class:`DataError` for a model whose trees serve without one."""
        if self.network is None:
            raise DataError(NO_NETWORK)
        return self.network


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


#: thermometer columns per sent feature up to which the dense first layer trains as fast as
#: :func:`thermometer_forward`'s sums (measured on a 2-vCPU VM, 3×128 MLP, batch 512: equal at
#: 63 — 6 bits —, the sums 1.1× faster at 127, 1.9× at 255 and 4.6× at widths of 5–12 bits)
DENSE_COLUMNS = 64


def thermometer_forward(model: QuantizedMLP) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``model.forward_codes`` in training form, for a quantizer whose bits are a function of the
    codes alone (hard bits at fixed thresholds) in front of a single MLP; None for any other model.

    The first layer's ``W · bits(c)`` is, per feature, the sum of the weight columns of its bits
    below code c: a cumulative sum of the feature's columns in threshold order
    (:meth:`~softbits.nn.quantizers.BitwiseQuantizer.rank_order`), read at c. A step takes those
    sums once and adds F of them per sample, where the dense layer multiplies every sample by
    Σ_f (2^w_f − 1) columns. Each feature's sums are its own, so a bit that no sample of a batch
    sets gets an exactly zero gradient, as in the dense layer (Adam would turn rounding noise
    there into full steps); the rest agrees with the dense layer to float32 rounding.

    Returns None as well where the dense layer is as fast (up to :data:`DENSE_COLUMNS` columns
    per sent feature).
    """
    quantizer, network = model.quantizer, model.network
    if not (isinstance(quantizer, BitwiseQuantizer) and quantizer.fixed and network is not None
            and isinstance(network[0], nn.Linear)):
        return None
    order, counts = quantizer.rank_order()
    starts = torch.cumsum(counts, 0) - counts
    if order.numel() <= DENSE_COLUMNS * int((counts > 0).sum()):
        return None
    ordered = not torch.equal(order, torch.arange(order.numel(), device=order.device))
    offsets = starts + torch.arange(starts.numel(), device=starts.device)  # code 0 of feature f
    sizes = counts.tolist()
    first, rest = network[0], network[1:]

    def forward(codes: torch.Tensor) -> torch.Tensor:
        weight = first.weight  # [H, D]
        columns = weight.index_select(1, order) if ordered else weight
        zero = weight.new_zeros(weight.shape[0], 1)
        sums = torch.cat([t for part in columns.split(sizes, 1) for t in (zero, part.cumsum(1))], 1)
        return rest(F.embedding_bag(codes + offsets, sums.t(), mode="sum") + first.bias)

    return forward
