"""Per-feature bit widths for a payload budget: the user's widths by name, budgets in bits or in
the bytes of a compact single-sample frame, and the allocator that chooses widths from training
data (docs/payload-budget.md).
"""

from __future__ import annotations

import csv
import io
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from softbits.codes import MAX_BITS, check_widths, n_thresholds, widths_payload_bytes
from softbits.data import Split
from softbits.errors import ConfigError, DataError
from softbits.nn.network import QuantizedMLP, network_eval
from softbits.text import ascii_int, strict_json
from softbits.training.config import TrainConfig
from softbits.training.engine import target_tensor, to_tensor
from softbits.training.methods import get_method
from softbits.training.predictors import GBDTParams
from softbits.training.train import (
    auto_candidates,
    build_model,
    evaluate_as,
    fit_module,
    outputs_of,
    train_screened,
)
from softbits.training.trained_model import TrainedModel

if TYPE_CHECKING:
    from softbits.training.predictors import GBDTPredictor

__all__ = ["UNIFORM_THRESHOLDS", "Allocation", "Coarsener", "allocate", "budget_bits", "parse_widths", "probe_epochs",
           "start_bits", "train_allocated", "uniform_candidate"]


def parse_widths(text: str, feature_names: Sequence[str], default_bits: int) -> tuple[int, ...]:
    """``--bits-per-feature``: ``name=n,name=n,…``, or a ``.json`` file ({name: n}) or ``.csv``
    file (rows ``name,bits``, a header row allowed) → one width per feature, in the data's order.

    Features not named get ``default_bits``. Unknown or repeated names, widths outside
    0..MAX_BITS and every feature at 0 bits are one-line errors.
    """
    pairs: list[tuple[str, object]] = []
    if text.lower().endswith((".json", ".csv")):
        pairs = _read_widths_file(Path(text))
    else:
        for item in (part.strip() for part in text.split(",")):
            key, sep, given = item.rpartition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--bits-per-feature wants name=bits items separated by commas, got {item!r}")
            pairs.append((key.strip(), given.strip()))
    known = {name: f for f, name in enumerate(feature_names)}
    widths = [default_bits] * len(feature_names)
    seen: set[str] = set()
    for name, value in pairs:
        if name not in known:
            raise ConfigError(f"--bits-per-feature names {name!r}, which is not a feature of the data "
                              f"(features: {', '.join(feature_names)})")
        if name in seen:
            raise ConfigError(f"--bits-per-feature names {name!r} twice")
        seen.add(name)
        widths[known[name]] = _width(value, name)
    return check_widths(widths, len(feature_names))


def _width(value: object, name: str) -> int:
    """One width from text or a JSON number, in 0..MAX_BITS."""
    if isinstance(value, str) and ascii_int(value) is not None:
        value = ascii_int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= int(value) <= MAX_BITS:
        raise ConfigError(f"--bits-per-feature: bits of {name!r} must be an integer in 0..{MAX_BITS}, got {value!r}")
    return int(value)


def _read_widths_file(path: Path) -> list[tuple[str, object]]:
    """(name, width) pairs of a widths file; a missing or malformed file is a :class:`DataError`."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first name
    except OSError as exc:
        raise DataError(f"cannot read --bits-per-feature file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"cannot read --bits-per-feature file {path}: not UTF-8 text") from None
    if path.suffix.lower() == ".json":
        mapping = strict_json(text, f"--bits-per-feature file {path}")
        if not isinstance(mapping, dict):
            raise DataError(f"--bits-per-feature file {path} must hold one JSON object {{name: bits}}")
        return list(mapping.items())
    # parsed as CSV, not split into lines first: a quoted name may hold a newline
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if rows and [cell.strip().lower() for cell in rows[0]] == ["name", "bits"]:
        rows = rows[1:]
    for number, row in enumerate(rows, 1):
        if len(row) != 2:
            raise DataError(f"--bits-per-feature file {path}: row {number} must be name,bits, got {row!r}")
    return [(row[0].strip(), row[1].strip()) for row in rows]


def budget_bits(bits: int | None, payload_bytes: int | None, n_features: int) -> int | None:
    """The code bits per sample that ``--budget-bits`` or ``--budget-bytes`` allow (None: no budget).

    ``--budget-bytes`` is the whole single-sample payload in the compact profile, so its framing
    comes off first: 8·(N − framing) bits. A budget must leave at least 1 bit and at most
    MAX_BITS per feature.
    """
    if bits is not None and payload_bytes is not None:
        raise ConfigError("give --budget-bits or --budget-bytes, not both")
    if payload_bytes is not None:
        from softbits.codes import COMPACT_FRAMING

        if payload_bytes <= COMPACT_FRAMING:
            raise ConfigError(f"--budget-bytes {payload_bytes} leaves no room for codes: a compact frame "
                              f"spends {COMPACT_FRAMING} bytes on framing")
        bits = 8 * (payload_bytes - COMPACT_FRAMING)
    if bits is None:
        return None
    if not 1 <= bits <= MAX_BITS * n_features:
        given = f"--budget-bytes {payload_bytes} gives {bits}" if payload_bytes is not None else f"got {bits}"
        raise ConfigError(f"a budget must be 1..{MAX_BITS * n_features} code bits for {n_features} features "
                          f"({MAX_BITS} bits each at most); {given}")
    return bits


#: share of the training rows the allocator validates its choices on (never the test split)
VALIDATION_SHARE = 0.2
#: the probe starts this many bits above the budget's mean width, so that the features that
#: matter can keep more bits than a uniform code would give them
HEADROOM_BITS = 2
#: the probe's widest start (2^8 − 1 thresholds per feature)
MAX_START_BITS = 8
#: for fixed thresholds scored by trees the probe trains nothing (its codes come from the data),
#: so it can start wider: trees use 9–12 bits of a feature that matters (a latitude)
TREE_HEADROOM_BITS = 4
TREE_MAX_START_BITS = 12
#: LightGBM settings of the trees that score a tree-scored search (None: the predictor's own,
#: :data:`~softbits.training.predictors.GBDT_PARAMS`). They only rank the steps: twice the
#: serving trees' learning rate, half their patience, so half as many trees to predict per step;
#: benchmarks/probe_trees_cv.py (5 seeds, training parts): the chosen widths score 0.999× the
#: validation loss on the geometric mean, in 0.55× the allocation time
PROBE_GBDT_PARAMS: GBDTParams | None = GBDTParams(learning_rate=0.1, early_stopping_rounds=50)
#: the probe trains this share of the epochs (and of a warm-up): it ranks features, it is not the
#: final model, and half the epochs keep the whole allocation within 3 uniform trainings
PROBE_EPOCH_SHARE = 0.5


def _narrower(width: int, min_bits: int) -> int:
    """One bit less, or 0 (not sent) below the method's minimum width."""
    return width - 1 if width - 1 >= min_bits else 0


@dataclass(frozen=True)
class Allocation:
    """What the allocator chose and how: the widths for the budget, the probe's uniform start
    width, and the trace of removals (feature, its new width, validation loss after it)."""

    widths: tuple[int, ...]
    budget_bits: int
    start_bits: int
    validation_rows: int
    start_loss: float | None
    trace: tuple[tuple[int, int, float], ...]
    probe_seconds: float
    search_seconds: float
    #: the model whose validation loss chose the widths: the probe's MLP, or trees on its codes
    scored_by: str = "mlp"
    #: how: ``greedy-removal``, or ``uniform`` for ``auto``'s every-feature-at-n candidate
    allocator: str = "greedy-removal"

    def to_dict(self, feature_names: Sequence[str]) -> dict[str, Any]:
        """The record kept in the model file and printed by ``train --json``."""
        return {
            "allocator": self.allocator,
            "scored_by": self.scored_by,
            "bits_per_feature": dict(zip(feature_names, self.widths, strict=True)),
            "budget_bits": self.budget_bits,
            "code_bits": sum(self.widths),
            "payload_bytes_per_sample": widths_payload_bytes(self.widths),
            "start_bits": self.start_bits,
            "validation_rows": self.validation_rows,
            "start_val_loss": self.start_loss,
            "trace": [{"feature": feature_names[f], "bits": w, "val_loss": loss} for f, w, loss in self.trace],
            "probe_seconds": self.probe_seconds,
            "search_seconds": self.search_seconds,
        }


def start_bits(budget: int, n_features: int, min_bits: int, *, trees: bool = False) -> int:
    """The probe's uniform width: ``HEADROOM_BITS`` above the smallest n with n·F ≥ budget,
    within the method's minimum and ``MAX_START_BITS`` (for fixed thresholds scored by trees,
    ``TREE_HEADROOM_BITS`` and ``TREE_MAX_START_BITS``)."""
    mean = -(-budget // n_features)
    if trees:
        return max(min_bits, min(mean + TREE_HEADROOM_BITS, TREE_MAX_START_BITS))
    return max(min_bits, min(mean + HEADROOM_BITS, MAX_START_BITS))


def _inside_edge(bounds: np.ndarray, k: int) -> float:
    """A value in bin k of sorted ``bounds`` (x > bounds[k − 1] and x ≤ bounds[k], compared in
    float32 as the model does): bin 0 its upper bound, any other the float32 just above its lower."""
    if k == 0:
        return float(bounds[0])
    return float(np.nextafter(np.float32(bounds[k - 1]), np.float32(np.inf)))


class Coarsener:
    """Feature f at a width w below the probe's: its raw values snapped to the training median
    of their bin in the coarser quantizer nested in the probe's thresholds.

    The coarser quantizer keeps every 2^(start − w)-th of the probe's sorted thresholds (for
    quantile thresholds, exactly the quantiles of width w), so the probe, run on snapped values,
    sees what a w-bit code can tell it about the feature, without retraining. Width 0 is one bin:
    the feature's training median. An empty bin stands at its edge (inside it).
    """

    def __init__(self, x_fit: np.ndarray, sorted_thresholds: np.ndarray, start: int) -> None:
        self.x_fit = np.asarray(x_fit, dtype=np.float64)
        self.table = np.asarray(sorted_thresholds, dtype=np.float64)
        self.start = start
        self._bins: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._sorted: dict[int, np.ndarray] = {}

    def bins(self, f: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Boundaries [2^w − 1] and the value of each bin [2^w] of feature ``f`` at ``width``."""
        key = (f, width)
        if key not in self._bins:
            if f not in self._sorted:
                self._sorted[f] = np.sort(self.x_fit[:, f])
            column = self._sorted[f]
            step = 1 << (self.start - width)
            bounds = self.table[f, step - 1::step][:n_thresholds(width)]
            # bin k holds bounds[k − 1] < x ≤ bounds[k] (the model's x > a): a run of the sorted column
            edges = np.concatenate([[0], np.searchsorted(column, bounds, side="right"), [column.size]])
            lo, count = edges[:-1], np.diff(edges)
            last = column.size - 1  # an empty bin's index is clipped, its value replaced below
            middle, upper = np.minimum(lo + np.maximum(count - 1, 0) // 2, last), np.minimum(lo + count // 2, last)
            medians = (column[middle] + column[upper]) / 2  # np.median's mean of the middle two
            empty = [_inside_edge(bounds, int(k)) for k in np.flatnonzero(count == 0)]
            medians[count == 0] = empty
            self._bins[key] = (bounds, medians)
        return self._bins[key]

    def snap(self, x: np.ndarray, f: int, width: int) -> np.ndarray:
        """Column ``x`` of feature ``f`` as a ``width``-bit code would leave it."""
        if width >= self.start:
            return x
        if width == 0:
            return np.full_like(x, np.median(self.x_fit[:, f]))
        bounds, values = self.bins(f, width)
        return values[np.searchsorted(bounds, x, side="left")].astype(x.dtype)


class _Probe:
    """The probe's validation loss with one feature's column replaced, computed incrementally.

    The network input of the current rows and, when the network starts with a linear layer,
    that layer's output are kept; a candidate changes one feature, so only the input columns it
    changes go through the first layer again (a few of F·(2^n − 1) for bitwise quantizers). A
    tried candidate's state becomes the current one without another forward pass.
    """

    def __init__(self, module: QuantizedMLP, x: np.ndarray, y: torch.Tensor, task: str) -> None:
        self.module, self.y, self.task = module.eval(), y, task
        network = module.require_network()
        first = network[0]
        self.first = first if isinstance(first, torch.nn.Linear) else None
        self.rest = torch.nn.Sequential(*list(network)[1:]) if self.first is not None else network
        with torch.no_grad():
            rows = torch.as_tensor(x, device=y.device)
            inputs = self._inputs(rows)
            self.state: tuple[torch.Tensor, ...] = (rows, inputs, inputs if self.first is None else self.first(inputs))
            self.loss = self._loss(self.state[2])

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.quantizer(x) if self.module.quantizer is not None else x

    @torch.no_grad()
    def try_column(self, f: int, column: np.ndarray) -> tuple[float, tuple[torch.Tensor, ...]]:
        """The loss of the current rows with feature ``f`` replaced by ``column``, and the state
        that :meth:`accept` makes current."""
        rows, inputs, hidden = self.state
        x = rows.clone()
        x[:, f] = torch.as_tensor(column, device=x.device)
        new_inputs = self._inputs(x)
        if self.first is None:
            new_hidden = new_inputs
        else:
            delta = new_inputs - inputs
            changed = torch.nonzero(delta.abs().sum(0))[:, 0]
            new_hidden = hidden + delta[:, changed] @ self.first.weight[:, changed].T
        return self._loss(new_hidden), (x, new_inputs, new_hidden)

    def accept(self, loss: float, state: tuple[torch.Tensor, ...]) -> None:
        self.loss, self.state = loss, state

    def _loss(self, hidden: torch.Tensor) -> float:
        out = network_eval(self.rest, hidden)
        if self.task == "classification":
            return float(torch.nn.functional.cross_entropy(out, self.y))
        return float((out[:, 0] - self.y).square().mean())


def _codes(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Codes of finite rows ``x`` [N, F] under sorted thresholds ``table`` [F, M]: #{a < x} per
    feature (the model's x > a, in float32), without the model's [N, F, M] comparison tensor."""
    x = np.asarray(x, dtype=np.float32)
    return np.stack([np.searchsorted(table[f], x[:, f], side="left") for f in range(x.shape[1])], axis=1)


class _TreeProbe:
    """:class:`_Probe` for a tree predictor: trees fitted on the probe's codes of the fit rows
    score the validation rows' codes, a candidate's column snapped to its coarser bins first,
    so the widths are chosen for the model that will serve them (no refit in the search).
    The validation codes and outputs are kept; a candidate re-encodes only its own column and
    the trees predict only the rows whose code it changes (the others' outputs stand).
    """

    def __init__(self, table: np.ndarray, trees: GBDTPredictor, x: np.ndarray, y: np.ndarray) -> None:
        self.table, self.trees, self.y = table, trees, y
        codes = _codes(table, x)
        self.state = (codes, trees.raw(codes))
        self.loss = trees.loss_of(self.state[1], y)

    def try_column(self, f: int, column: np.ndarray) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
        codes, out = self.state[0].copy(), self.state[1].copy()
        codes[:, f] = _codes(self.table[f:f + 1], column[:, None])[:, 0]
        changed = codes[:, f] != self.state[0][:, f]
        out[changed] = self.trees.raw(codes[changed])
        return self.trees.loss_of(out, self.y), (codes, out)

    def accept(self, loss: float, state: tuple[np.ndarray, np.ndarray]) -> None:
        self.loss, self.state = loss, state


def _tree_probe(module: QuantizedMLP, config: TrainConfig, X_fit: np.ndarray, y_fit: np.ndarray,
                X_val: np.ndarray, y_val: np.ndarray, task: str, n_outputs: int, start: int) -> _TreeProbe:
    """Trees on the probe's start-width codes of the fit rows, early-stopped on the validation rows."""
    from softbits.training.predictors import GBDT_PARAMS, GBDTPredictor

    if module.quantizer is None:
        raise ConfigError(f"method {config.method} sends no codes")
    table = module.quantizer.sorted_thresholds()
    trees = GBDTPredictor.fit(_codes(table, X_fit), y_fit, _codes(table, X_val), y_val, task=task,
                              n_outputs=n_outputs, inputs="codes", seed=config.seed, max_code=(1 << start) - 1,
                              params=PROBE_GBDT_PARAMS or GBDT_PARAMS)
    return _TreeProbe(table, trees, X_val, y_val)


def probe_epochs(config: TrainConfig) -> int:
    """Epochs of the allocation's probe training."""
    return max(1, round(PROBE_EPOCH_SHARE * config.epochs))


def allocate(X_train: np.ndarray, y_train: np.ndarray, config: TrainConfig, budget: int, *,
             task: str, n_outputs: int = 1,
             on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None) -> Allocation:
    """Widths with Σ w_f ≤ ``budget`` chosen on the training rows alone (greedy removal).

    1. ``VALIDATION_SHARE`` of the rows (seeded by ``config.seed``) validate; the probe, the
       method at :func:`start_bits` for every feature, trains on the rest with ``config``'s
       network for ``PROBE_EPOCH_SHARE`` of its epochs.
    2. While the widths exceed the budget, sent features are tried one step narrower (one bit;
       to 0 below the method's minimum width) by snapping their validation values to the
       coarser bins (:class:`Coarsener`), and the step with the least validation loss increase
       per freed bit is taken. No retraining happens in this search. The first step tries every
       feature; later steps re-evaluate only the features whose last known cost could still be
       the least (lazy greedy), which cuts the search several-fold.

    With a tree or ``auto`` predictor the losses in step 2 are those of trees fitted on the
    probe's codes of the fit rows (:class:`_TreeProbe`): trees use wide codes where an MLP cannot,
    so the widths follow the model that will serve them.

    When the probe's start width fits the budget (a budget of ``MAX_START_BITS`` per feature
    or more) every feature gets it, without a probe. ``on_epoch_end`` follows the probe's epochs.
    """
    method = get_method(config.method)
    n_rows, n_features = X_train.shape
    method.check_widths((method.min_bits,) * n_features)  # the method takes per-feature widths at all
    if budget < method.min_bits:
        raise ConfigError(f"method {config.method} sends at least {method.min_bits} bits for a feature, "
                          f"but the budget is {budget} bit{'s' if budget != 1 else ''}")
    # fixed thresholds scored by trees: the probe is the quantizer on the fit rows, no network
    untrained = config.predictor != "mlp" and method.fixed_inputs
    start = start_bits(budget, n_features, method.min_bits, trees=untrained)
    if start * n_features <= budget:  # the widest start fits: nothing to choose
        return Allocation(widths=(start,) * n_features, budget_bits=budget, start_bits=start, validation_rows=0,
                          start_loss=None, trace=(), probe_seconds=0.0, search_seconds=0.0)
    n_val = max(1, int(round(VALIDATION_SHARE * n_rows)))
    if n_rows - n_val < 2:
        raise DataError(f"allocation needs more training rows than {n_rows}")
    order = np.random.default_rng(config.seed).permutation(n_rows)
    fit_rows, val_rows = order[n_val:], order[:n_val]

    clock = time.perf_counter()
    epochs = probe_epochs(config)
    probe_config = replace(config, bits=start, bits_per_feature=None, epochs=epochs,
                           warmup_epochs=min(round(PROBE_EPOCH_SHARE * config.warmup_epochs), epochs - 1))
    X_val = np.asarray(X_train[val_rows], dtype=np.float32)
    if untrained:
        cpu = torch.device("cpu")
        module = build_model(probe_config, n_features, n_outputs, to_tensor(X_train[fit_rows], cpu),
                             y_train=target_tensor(y_train[fit_rows], cpu, task), task=task, network=False)
        y_val = target_tensor(y_train[val_rows], cpu, task)
    else:
        fitted = fit_module(X_train[fit_rows], y_train[fit_rows], probe_config, task=task, n_outputs=n_outputs,
                            on_epoch_end=on_epoch_end)
        device = fitted.X_train.device
        y_val = target_tensor(y_train[val_rows], device, task)
        module, _ = evaluate_as(fitted, config.method, start, to_tensor(X_val, device), y_val, task=task)
    probe: _Probe | _TreeProbe
    if config.predictor == "mlp":
        probe = _Probe(module, X_val, y_val, task)
    else:  # the trees will serve (gbdt, and auto's usual choice): choose widths for them
        probe = _tree_probe(module, config, np.asarray(X_train[fit_rows], dtype=np.float32), y_train[fit_rows],
                            X_val, np.asarray(y_train[val_rows]), task, n_outputs, start)
    probe_seconds = time.perf_counter() - clock

    clock = time.perf_counter()
    if module.quantizer is None:  # excluded by check_widths; says so to the type checker
        raise ConfigError(f"method {config.method} sends no codes")
    coarse = Coarsener(X_train[fit_rows], module.quantizer.sorted_thresholds(), start)
    widths = [start] * n_features
    start_loss, trace = probe.loss, []
    # lazy greedy: a feature's cost per freed bit from an earlier step stands in until it might
    # be the cheapest, then it is re-evaluated at the current widths (-inf: never evaluated)
    stale = dict.fromkeys(range(n_features), -np.inf)
    while sum(widths) > budget:
        fresh: dict[int, tuple[float, float, Any]] = {}  # f → (cost per bit, loss, probe state)
        while True:
            waiting = sorted((c, f) for f, c in stale.items() if widths[f] and f not in fresh)
            cheapest = min(fresh.items(), key=lambda item: item[1][0]) if fresh else None
            if cheapest is not None and (not waiting or cheapest[1][0] <= waiting[0][0]):
                break
            f = waiting[0][1]
            w = _narrower(widths[f], method.min_bits)
            loss, state = probe.try_column(f, coarse.snap(X_val[:, f], f, w))
            if not np.isfinite(loss):
                raise DataError("the allocation probe's validation loss is not finite; training diverged, "
                                "try a lower learning rate")
            stale[f] = (loss - probe.loss) / (widths[f] - w)
            fresh[f] = (stale[f], loss, state)
        f, (_, loss, state) = cheapest
        widths[f] = _narrower(widths[f], method.min_bits)
        probe.accept(loss, state)
        stale[f] = -np.inf  # its next step is another one
        trace.append((f, widths[f], loss))
    return Allocation(widths=tuple(widths), budget_bits=budget, start_bits=start, validation_rows=n_val,
                      start_loss=start_loss, trace=tuple(trace), probe_seconds=probe_seconds,
                      search_seconds=time.perf_counter() - clock,
                      scored_by="mlp" if isinstance(probe, _Probe) else "gbdt")


def train_allocated(split: Split, config: TrainConfig, budget: int, *, task: str, feature_names: list[str],
                    target_name: str = "y", classes: list[str] | None = None, dataset: str = "",
                    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None) -> TrainedModel:
    """Allocate widths for ``budget`` on ``split``'s training part, then train the method at them
    with ``config``'s network and epochs on the whole training part, as a uniform training would.

    The model keeps the allocation's record (:meth:`Allocation.to_dict`) in ``allocation``.
    ``on_epoch_end`` follows the probe's epochs, then the final training's. With ``auto`` every
    :func:`~softbits.training.train.auto_candidates` config gets widths of its own, and the best
    on the validation share serves.
    """
    n_out = outputs_of(task, classes)
    choices = [(candidate, allocate(split.X_train, split.y_train, candidate, budget, task=task, n_outputs=n_out,
                                    on_epoch_end=on_epoch_end)) for candidate in auto_candidates(config)]
    choices += uniform_candidate(config, budget, split.X_train.shape[1])
    return train_screened(split, [replace(candidate, bits_per_feature=chosen.widths) for candidate, chosen in choices],
                          allocations=[chosen.to_dict(feature_names) for _, chosen in choices], task=task,
                          feature_names=feature_names, target_name=target_name, classes=classes, dataset=dataset,
                          on_epoch_end=on_epoch_end)


#: the thresholds of ``auto``'s uniform candidate at a budget of n·F bits
UNIFORM_THRESHOLDS = "bw-bq"


def uniform_candidate(config: TrainConfig, budget: int, n_features: int) -> list[tuple[TrainConfig, Allocation]]:
    """For ``auto`` at a budget of n·F bits: :data:`UNIFORM_THRESHOLDS` with every feature at n
    bits, beside the allocated candidates. Trees on uniform bins can beat any allocation the
    greedy removal reaches from its wider start (measured on cpu_act at 8 bits), and the choice
    between them is made on the validation share as for every candidate."""
    n, rest = divmod(budget, n_features)
    thresholds = replace(config, method=UNIFORM_THRESHOLDS)
    if (len(auto_candidates(config)) < 2 or rest
            or not get_method(UNIFORM_THRESHOLDS).min_bits <= n <= MAX_BITS):
        return []
    widths = (n,) * n_features
    return [(thresholds, Allocation(widths=widths, budget_bits=budget, start_bits=n, validation_rows=0,
                                    start_loss=None, trace=(), probe_seconds=0.0, search_seconds=0.0,
                                    scored_by="none", allocator="uniform"))]
