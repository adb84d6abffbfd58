"""One training from data to metrics: build the method's model, fit it, evaluate hard (and soft).

This is the function the CLI, the estimator and the protocol's tasks call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from softbits.codes import max_code
from softbits.data import Dataset, Split, split_and_scale
from softbits.errors import ConfigError
from softbits.nn.network import QuantizedMLP, build_network
from softbits.nn.schedules import make_schedule
from softbits.provenance import runtime_info
from softbits.training.config import TrainConfig
from softbits.training.engine import (
    FitResult,
    evaluate,
    fit,
    resolve_device,
    seed_everything,
    target_tensor,
    to_tensor,
)
from softbits.training.methods import get_method
from softbits.training.predictors import GBDTPredictor, check_gbdt_installed, needs_gbdt, split_points
from softbits.training.trained_model import TrainedModel

__all__ = ["FittedModule", "TestMetrics", "available_memory", "build_model",
           "check_training_memory", "code_histogram", "evaluate_as", "fit_module", "fit_predictor", "hold_out_validation",
           "score", "score_trees", "summary", "trains_network",
           "AUTO_MLP_WITHIN", "AUTO_THRESHOLDS", "PREDICTOR_KEYS", "auto_candidates", "candidate_name", "choose_candidate",
           "outputs_of", "predictor_record", "screen_loss", "train_dataset",
           "train_on_split", "train_screened", "train_single", "training_memory"]


def build_model(config: TrainConfig, n_features: int, n_outputs: int,
                X_train: torch.Tensor | None = None, *,
                device: torch.device | None = None, y_train: torch.Tensor | None = None,
                task: str = "regression", network: bool = True) -> QuantizedMLP:
    """The method's quantizer (initialised on ``X_train`` when given) in front of a fresh MLP,
    or of ``config.members`` MLPs for an ensemble method; with ``network=False`` the quantizer
    alone (trees will serve its codes).

    Thresholds at trees' split points (init ``splits``, ``bw-tq``) need ``y_train`` and
    ``task``: float32 trees fit on those rows alone (:func:`~softbits.training.predictors.split_points`).
    With ``device``, a network whose training cannot fit that device's free memory is refused
    before any of it is allocated (:func:`check_training_memory`).
    """
    method = get_method(config.method)
    quantizer = None
    if method.train_quantizer is not None:
        quantizer = method.train_quantizer(n_features, config.bits, config.init, config.bits_per_feature)
        if X_train is not None:
            splits = None
            if getattr(quantizer, "init", None) == "splits":
                if y_train is None:
                    raise ConfigError(f"method {config.method} places thresholds at trees' split points "
                                      "and needs the training targets")
                splits = split_points(X_train.cpu().numpy(), y_train.cpu().numpy(), task=task,
                                      n_outputs=n_outputs, seed=config.seed)
            quantizer.init_from_data(X_train, splits)
        d_in = quantizer.out_features
    else:
        d_in = n_features
    if not network:
        return QuantizedMLP(quantizer, None)
    members = config.members if method.ensemble else None
    if device is not None:
        rows = config.batch_size if X_train is None else min(config.batch_size, X_train.shape[0])
        check_training_memory(config, d_in, n_outputs, members, device, batch_rows=rows)
    return QuantizedMLP(quantizer, build_network(d_in, n_outputs, config.layers, config.neurons, config.dropout,
                                                 members))


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a training on ``device`` (None when the system does not say)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def training_memory(config: TrainConfig, d_in: int, n_outputs: int, members: int | None, *,
                    batch_rows: int) -> tuple[int, int]:
    """A lower bound of a training's memory in bytes, and its parameter count.

    The bound counts float32 weights, gradients and Adam's two moments (16 bytes a parameter)
    and the hidden activations with their ReLU outputs of one batch of ``batch_rows`` rows; the
    real need is higher. ``members`` networks train side by side (an ensemble or a stack).
    """
    with torch.device("meta"):  # the real builder, so the count cannot drift from it
        network = build_network(d_in, n_outputs, config.layers, config.neurons, config.dropout, members)
    params = sum(p.numel() for p in network.parameters())
    k = members or 1
    activations = batch_rows * (k * (2 * config.layers * config.neurons + n_outputs) + d_in)
    return 4 * (4 * params + activations), params


def check_training_memory(config: TrainConfig, d_in: int, n_outputs: int, members: int | None,
                          device: torch.device, *, batch_rows: int) -> None:
    """One-line :class:`ConfigError` when :func:`training_memory`'s lower bound exceeds what
    ``device`` has free, instead of an out-of-memory crash (or swapping) minutes later."""
    need, params = training_memory(config, d_in, n_outputs, members, batch_rows=batch_rows)
    k = members or 1
    free = available_memory(device)
    if free is not None and need > free:
        what = f"{k} networks of {params // k:,} parameters" if members else f"a network of {params:,} parameters"
        raise ConfigError(f"training {what} needs at least {need / 2**30:.1f} GiB (weights, gradients, "
                          f"Adam state, one batch), but {device} has {free / 2**30:.1f} GiB free; "
                          "lower members, neurons, layers or batch size")


@dataclass(frozen=True)
class TestMetrics:
    """A module's metrics on the test rows (MSE on the standardized target; None where a
    metric does not apply to the task or the quantizer).

    ``fp``: for a post-training quantized method, the metrics of the full-precision network it
    quantizes (stored as ``test_mse_fp``).
    """

    __test__ = False  # a library class, not a pytest test class

    test_mse: float | None
    test_mse_soft: float | None
    test_accuracy: float | None
    test_loss: float
    fp: TestMetrics | None = None

    def to_dict(self) -> dict[str, Any]:
        """The flat names the model file, ``train --json`` and the results store use."""
        out = {"test_mse": self.test_mse, "test_mse_soft": self.test_mse_soft,
               "test_accuracy": self.test_accuracy, "test_loss": self.test_loss}
        if self.fp is not None:
            out["test_mse_fp"] = self.fp.test_mse
        return out


@dataclass(frozen=True)
class FittedModule:
    """A trained module as :func:`fit_module` leaves it.

    ``module`` is what trained: for Po-MQ/Po-QQ the bare FP network, which :func:`evaluate_as`
    puts behind the post quantizer. ``X_train`` holds the training rows (standardized, on the
    device) that trainable thresholds were initialised on and post quantizers are fit on.
    """

    module: QuantizedMLP
    fit: FitResult
    X_train: torch.Tensor
    #: the training targets and the held-out validation rows (None without a validation share)
    y_train: torch.Tensor | None = None
    X_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None


def score(module: QuantizedMLP, X: torch.Tensor, y: torch.Tensor, task: str) -> TestMetrics:
    """Hard (device-exact) metrics, and the soft MSE where the quantizer has a temperature."""
    hard = evaluate(module, X, y, task=task)
    soft = None
    if module.quantizer is not None and module.quantizer.uses_temperature and task == "regression":
        soft = evaluate(module, X, y, task=task, soft=True).mse
    return TestMetrics(test_mse=hard.mse, test_mse_soft=soft, test_accuracy=hard.accuracy,
                       test_loss=hard.loss)


def evaluate_as(fitted: FittedModule, method: str, bits: int, X_test: torch.Tensor,
                y_test: torch.Tensor, *, task: str, trained: TestMetrics | None = None,
                widths: tuple[int, ...] | None = None) -> tuple[QuantizedMLP, TestMetrics]:
    """The module that ``method`` at ``bits`` (or per-feature ``widths``) tests, and its test metrics.

    The one place post-training quantization happens: for Po-MQ/Po-QQ the trained FP network
    goes behind the method's fixed quantizer, fit on ``fitted.X_train``; any other method tests
    the module as trained. ``trained``: the trained module's metrics when already computed, so
    that one FP training serves FP and every post-quantized cell without re-evaluating it.
    """
    if trained is None:
        trained = score(fitted.module, X_test, y_test, task)
    post = get_method(method).post_quantizer
    if post is None:
        return fitted.module, trained
    if fitted.module.quantizer is not None:
        raise ConfigError(f"method {method} quantizes a full-precision network after training, "
                          "but this module trained with a quantizer")
    quantizer = post(fitted.X_train.shape[1], bits, "quantile", widths).to(fitted.X_train.device)
    quantizer.init_from_data(fitted.X_train)
    module = QuantizedMLP(quantizer, fitted.module.network)
    return module, replace(score(module, X_test, y_test, task), fp=trained)


def hold_out_validation(X: torch.Tensor, y: torch.Tensor, config: TrainConfig
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Training and validation rows: ``validation_share`` of the rows (a permutation seeded with
    the config's seed) validate, the rest train; without a share every row trains."""
    share = config.validation_share
    if share <= 0:
        return X, y, None, None
    n_val = max(1, int(round(share * X.shape[0])))
    perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(config.seed)).to(X.device)
    return X[perm[n_val:]], y[perm[n_val:]], X[perm[:n_val]], y[perm[:n_val]]


def fit_module(
    X_train: np.ndarray,
    y_train: np.ndarray,
    config: TrainConfig,
    *,
    task: str,
    n_outputs: int = 1,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> FittedModule:
    """Build and train the method's module on standardized arrays (for Po-* the FP network)."""
    generator = seed_everything(config.seed)
    module, X_tr, y_tr, X_val, y_val = _module_and_rows(X_train, y_train, config, task=task, n_outputs=n_outputs)
    schedule = make_schedule(config.schedule, config.epochs, config.decrease_factor)
    result = fit(module, X_tr, y_tr, task=task, epochs=config.epochs, lr=config.lr,
                 weight_decay=config.weight_decay, batch_size=config.batch_size,
                 schedule=schedule, generator=generator, X_val=X_val, y_val=y_val,
                 on_epoch_end=on_epoch_end, optimizer=config.optimizer,
                 lr_schedule=config.lr_schedule, warmup_epochs=config.warmup_epochs,
                 threshold_lr_scale=config.threshold_lr_scale)
    return FittedModule(module=module, fit=result, X_train=X_tr, y_train=y_tr, X_val=X_val, y_val=y_val)


def _module_and_rows(X_train: np.ndarray, y_train: np.ndarray, config: TrainConfig, *, task: str, n_outputs: int,
                     network: bool = True
                     ) -> tuple[QuantizedMLP, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The method's untrained module (without ``network``, its quantizer alone), built on the
    training rows less the validation share, and those rows and the validation rows as tensors
    on the config's device."""
    device = resolve_device(config.device)
    X_tr, y_tr = to_tensor(X_train, device), target_tensor(y_train, device, task)
    X_tr, y_tr, X_val, y_val = hold_out_validation(X_tr, y_tr, config)
    module = build_model(config, X_tr.shape[1], n_outputs, X_tr, device=device, y_train=y_tr, task=task,
                         network=network).to(device)
    return module, X_tr, y_tr, X_val, y_val


def _predictor_inputs(module: QuantizedMLP, X: torch.Tensor) -> np.ndarray:
    """What the trees read: the hard codes, or for a full-precision model the standardized features."""
    if module.quantizer is None:
        return X.cpu().numpy().astype(np.float64)
    with torch.no_grad():
        return module.quantizer.encode(X).cpu().numpy().astype(np.float64)


def fit_predictor(fitted: FittedModule, module: QuantizedMLP, config: TrainConfig, *, task: str,
                  n_outputs: int, trees: GBDTPredictor | None = None) -> tuple[GBDTPredictor | None, dict[str, Any]]:
    """The server model ``config.predictor`` asks for behind ``module``'s codes.

    Trees fit on the codes of ``fitted``'s training rows and early-stop on its validation rows
    (carved from the training part); ``auto`` keeps the MLP or the trees, whichever has the
    lower validation loss. Returns the trees (None when the MLP serves) and what was chosen
    and why (each candidate's validation loss). ``trees``: those fitted already on these codes
    and rows (:func:`screen_loss`'s), used instead of fitting them again.
    """
    if fitted.X_val is None or fitted.y_val is None or fitted.y_train is None:
        raise ConfigError(f"predictor {config.predictor} needs validation rows; the training part is too small")
    X_val, y_val = _predictor_inputs(module, fitted.X_val), fitted.y_val.cpu().numpy()
    if trees is None:
        trees = _fit_trees(module, config, fitted.X_train, fitted.y_train, X_val, y_val, task=task,
                           n_outputs=n_outputs)
    losses = {"mlp": evaluate(module, fitted.X_val, fitted.y_val, task=task).loss,
              "gbdt": trees.loss(X_val, y_val)}
    chosen = "gbdt" if config.predictor == "gbdt" else min(losses, key=losses.__getitem__)
    record = {"predictor": chosen, "predictor_val_loss": losses, "gbdt_rounds": trees.rounds}
    return (trees if chosen == "gbdt" else None), record


def _fit_trees(module: QuantizedMLP, config: TrainConfig, X_fit: torch.Tensor, y_fit: torch.Tensor,
               X_val: np.ndarray, y_val: np.ndarray, *, task: str, n_outputs: int) -> GBDTPredictor:
    """Trees on what ``module`` gives them of the fit rows, early-stopped on the validation rows'
    (``X_val``: already as the trees read them)."""
    top = None if module.quantizer is None else max_code(config.bits)
    return GBDTPredictor.fit(_predictor_inputs(module, X_fit), y_fit.cpu().numpy(), X_val, y_val, task=task,
                             n_outputs=n_outputs, inputs="features" if module.quantizer is None else "codes",
                             seed=config.seed, max_code=top)


def code_histogram(module: QuantizedMLP, X: torch.Tensor, config: TrainConfig) -> list[list[int]] | None:
    """Per feature, how often each code occurs on the rows ``X`` (2^w counts; one for width 0)."""
    if module.quantizer is None:
        return None
    codes = _predictor_inputs(module, X).astype(np.int64)
    widths = config.feature_widths(codes.shape[1])
    return [np.bincount(codes[:, f], minlength=1 << w)[:1 << w].tolist() for f, w in enumerate(widths)]


def score_trees(trees: GBDTPredictor, module: QuantizedMLP, X: torch.Tensor, y: torch.Tensor,
                task: str) -> TestMetrics:
    """The trees' hard metrics on ``X, y``, in the names :func:`score` gives the MLP's."""
    inputs, target = _predictor_inputs(module, X), y.cpu().numpy()
    loss = trees.loss(inputs, target)
    if task == "classification":
        accuracy = float((trees.raw(inputs).argmax(-1) == target).mean())
        return TestMetrics(test_mse=None, test_mse_soft=None, test_accuracy=accuracy, test_loss=loss)
    return TestMetrics(test_mse=loss, test_mse_soft=None, test_accuracy=None, test_loss=loss)


#: the thresholds ``auto`` also tries beside the method's own: tie-aware equal-frequency bins,
#: the codes trees split on best at many bits (on features with repeated values far better than
#: quantiles), and float32 trees' split points, far better at 1–2 bits where bins are coarse
AUTO_THRESHOLDS = ("bw-bq", "bw-tq")


def auto_candidates(config: TrainConfig) -> list[TrainConfig]:
    """The configs a training with ``config`` trains: itself and, for ``auto`` with a method
    whose codes are per-feature thresholds, the same with each of :data:`AUTO_THRESHOLDS`."""
    method = get_method(config.method)
    if (config.predictor != "auto" or config.method in AUTO_THRESHOLDS or not method.per_feature_widths
            or method.ensemble or method.train_quantizer is None):
        return [config]
    return [config, *(replace(config, method=m) for m in AUTO_THRESHOLDS)]


def candidate_name(method: str, predictor: str, allocation: dict[str, Any] | None = None) -> str:
    """``method+predictor``, and `` (uniform)`` for the every-feature-at-n candidate of a budget."""
    uniform = allocation is not None and allocation.get("allocator") == "uniform"
    return f"{method}+{predictor}" + (" (uniform)" if uniform else "")


def choose_candidate(models: list[TrainedModel], screened: dict[str, float] | None = None,
                     screen_seconds: float = 0.0) -> TrainedModel:
    """The candidate with the least validation loss (each scored on the same validation rows of
    the training part), with every candidate's loss recorded as ``auto_val_loss`` — also the
    tree losses of the ``screened`` candidates that :func:`train_screened` did not train."""
    losses = {candidate_name(m.config.method, name, m.allocation): loss for m in models
              for name, loss in m.metrics["predictor_val_loss"].items()}
    best = min(models, key=lambda m: min(m.metrics["predictor_val_loss"].values()))
    best.metrics["auto_val_loss"] = {**(screened or {}), **losses}
    best.metrics["auto_choice"] = candidate_name(best.config.method, best.metrics["predictor"], best.allocation)
    best.metrics["auto_seconds"] = screen_seconds + sum(
        float(m.metrics["train_seconds"]) + float(m.metrics["predictor_seconds"]) for m in models)
    return best


def screen_loss(split: Split, config: TrainConfig, *, task: str, n_outputs: int) -> tuple[float, GBDTPredictor]:
    """The validation loss of trees on ``config``'s codes, without training a network (the codes
    of a fixed-threshold method follow from the training rows alone), and the trees. The rows,
    quantizer and trees are those :func:`train_single` fits, so the loss is the one it records
    for ``gbdt``, and it can take the trees instead of fitting them again."""
    _, _, trees, loss = _trees_on_fixed_codes(split, config, task=task, n_outputs=n_outputs)
    return loss, trees


def _trees_on_fixed_codes(split: Split, config: TrainConfig, *, task: str, n_outputs: int,
                          trees: GBDTPredictor | None = None
                          ) -> tuple[QuantizedMLP, torch.Tensor, GBDTPredictor, float]:
    """For a method whose codes no training moves: its quantizer alone, built on the training
    rows less the validation share as a training builds it; trees on its codes of those rows
    (``trees``: fitted on them already), early-stopped on the validation rows; and the fit rows
    and the trees' validation loss."""
    module, X_fit, y_fit, X_val, y_val = _module_and_rows(split.X_train, split.y_train, config, task=task,
                                                          n_outputs=n_outputs, network=False)
    if X_val is None or y_val is None:
        raise ConfigError(f"predictor {config.predictor} needs validation rows; the training part is too small")
    val_inputs, val_targets = _predictor_inputs(module, X_val), y_val.cpu().numpy()
    if trees is None:
        trees = _fit_trees(module, config, X_fit, y_fit, val_inputs, val_targets, task=task, n_outputs=n_outputs)
    return module, X_fit, trees, trees.loss(val_inputs, val_targets)


def trains_network(config: TrainConfig, *, mlp: bool = True) -> bool:
    """Whether a training of ``config`` trains a network: not where trees serve codes that no
    network training moves (a fixed-threshold method, or ``fp``'s features) — ``gbdt``, or
    ``auto`` told not to try the MLP (``mlp=False``)."""
    trees_alone = config.predictor == "gbdt" or (config.predictor == "auto" and not mlp)
    return not (trees_alone and get_method(config.method).fixed_inputs)


#: ``auto`` trains a network behind the screened fixed-threshold codes only where the method's
#: own MLP came within this share of its own trees' validation loss: an MLP behind fixed
#: thresholds won only where it beat trees on the learned codes too (fried: the method's MLP at
#: 0.94-1.00x its trees; cpu_act and california, where trees always won: 1.04-1.18x; 81 auto
#: trainings in benchmarks/results, validation shares of the training parts)
AUTO_MLP_WITHIN = 0.02


def train_screened(split: Split, configs: list[TrainConfig], *, task: str,
                   allocations: list[dict[str, Any] | None] | None = None, **names: Any) -> TrainedModel:
    """``auto``'s candidates, trained and chosen: the method's own (``configs[0]``, network and
    trees) and, of the fixed-threshold rest, the one whose codes the trees fit best on the
    validation rows (:func:`screen_loss`); the least validation loss of the trained ones serves
    (:func:`choose_candidate`, which records the screened ones' tree losses too). Screening costs
    a tree fit per candidate where training each would cost a network.

    The screened candidate's network trains only where the method's own MLP came within
    :data:`AUTO_MLP_WITHIN` of its trees; otherwise its trees alone are the candidate.

    ``allocations``: each config's allocation record, kept by the model trained from it.
    """
    records = allocations or [None] * len(configs)

    def train(i: int, screened: GBDTPredictor | None = None, mlp: bool = True) -> TrainedModel:
        model = train_single(split, configs[i], task=task, screened=screened, mlp=mlp, **names)
        model.allocation = records[i]
        return model

    first = train(0)
    if len(configs) == 1:
        return first
    started = time.perf_counter()
    n_outputs = outputs_of(task, names.get("classes"))
    screens = {i: screen_loss(split, c, task=task, n_outputs=n_outputs) for i, c in enumerate(configs) if i}
    seconds = time.perf_counter() - started
    best = min(screens, key=lambda i: screens[i][0])
    untrained = {candidate_name(configs[i].method, "gbdt", records[i]): loss
                 for i, (loss, _) in screens.items() if i != best}
    own = first.metrics["predictor_val_loss"]
    mlp = "mlp" in own and own["mlp"] <= (1 + AUTO_MLP_WITHIN) * own.get("gbdt", float("inf"))
    return choose_candidate([first, train(best, screens[best][1], mlp=mlp)], untrained, seconds)


def train_on_split(
    split: Split,
    config: TrainConfig,
    *,
    task: str,
    feature_names: list[str],
    target_name: str = "y",
    classes: list[str] | None = None,
    dataset: str = "",
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainedModel:
    """Train ``config`` on ``split.X_train`` and test on ``split.X_test`` (both standardized).

    With a tree or ``auto`` predictor the test rows reach neither the early stopping nor the
    choice: both use the validation share of the training part. ``auto`` trains the
    :func:`auto_candidates` that :func:`train_screened` keeps and serves the best on that share
    (:func:`choose_candidate`)."""
    names: dict[str, Any] = {"feature_names": feature_names, "target_name": target_name,
                             "classes": classes, "dataset": dataset, "on_epoch_end": on_epoch_end}
    return train_screened(split, auto_candidates(config), task=task, **names)


def outputs_of(task: str, classes: list[str] | None) -> int:
    """The network's outputs: one per class for classification, else one."""
    return len(classes) if task == "classification" and classes else 1


def train_single(
    split: Split,
    config: TrainConfig,
    *,
    task: str,
    feature_names: list[str],
    target_name: str = "y",
    classes: list[str] | None = None,
    dataset: str = "",
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    screened: GBDTPredictor | None = None,
    mlp: bool = True,
) -> TrainedModel:
    """:func:`train_on_split` for ``config``'s method alone (``auto`` chooses only the predictor);
    ``screened``: :func:`screen_loss`'s trees, fitted already on this config's codes of these rows.

    Where trees serve codes that no network training moves (:func:`trains_network`; ``mlp=False``
    tells ``auto`` not to try the MLP) no network trains: the model is the quantizer and the
    trees, and its metrics have no MLP side (``epochs`` 0, no history)."""
    if needs_gbdt(config.method, config.predictor, config.init):
        check_gbdt_installed()
    n_out = outputs_of(task, classes)
    trees: GBDTPredictor | None = None
    history: FitResult | None = None
    if not trains_network(config, mlp=mlp):
        started = time.perf_counter()
        module, rows, trees, val_loss = _trees_on_fixed_codes(split, config, task=task, n_outputs=n_out,
                                                              trees=screened)
        X_te, y_te = to_tensor(split.X_test, rows.device), target_tensor(split.y_test, rows.device, task)
        tested = score_trees(trees, module, X_te, y_te, task)
        metrics = {**tested.to_dict(), "train_seconds": 0.0, "epochs": 0, "final_train_loss": None,
                   "final_temperature": None, "best_epoch": None, "predictor": "gbdt",
                   "predictor_val_loss": {"gbdt": val_loss}, "gbdt_rounds": trees.rounds,
                   "predictor_seconds": time.perf_counter() - started}
    else:
        fitted = fit_module(split.X_train, split.y_train, config, task=task, n_outputs=n_out,
                            on_epoch_end=on_epoch_end)
        rows, history = fitted.X_train, fitted.fit
        X_te, y_te = to_tensor(split.X_test, rows.device), target_tensor(split.y_test, rows.device, task)
        module, tested = evaluate_as(fitted, config.method, config.bits, X_te, y_te, task=task,
                                     widths=config.bits_per_feature)
        chosen: dict[str, Any] = {}
        if config.predictor != "mlp":
            started = time.perf_counter()
            trees, chosen = fit_predictor(fitted, module, config, task=task, n_outputs=n_out, trees=screened)
            chosen["predictor_seconds"] = time.perf_counter() - started
            chosen["test_mse_mlp"] = tested.test_mse
            if trees is not None:
                tested = score_trees(trees, module, X_te, y_te, task)
        metrics = {**tested.to_dict(), "train_seconds": history.train_seconds, "epochs": config.epochs,
                   "final_train_loss": history.final_train_loss,
                   "final_temperature": history.final_temperature, "best_epoch": history.best_epoch, **chosen}
    return TrainedModel(
        module=module, config=config, x_scaler=split.x_scaler, y_scaler=split.y_scaler,
        feature_names=list(feature_names), target_name=target_name, task=task, classes=classes,
        dataset=dataset, metrics=metrics,
        runtime=runtime_info(rows.device) | ({} if trees is None else trees.versions()),
        history=history, trees=trees, code_histogram=code_histogram(module, rows, config),
    )


#: what a tree or auto training records of its choice, beside ``predictor``
PREDICTOR_KEYS = ("predictor_val_loss", "test_mse_mlp", "auto_val_loss", "auto_choice")


def predictor_record(metrics: dict[str, Any], asked: str) -> dict[str, Any]:
    """The predictor that served (``asked`` when the metrics name none) and, for a tree or auto
    training, each candidate's validation loss and the network's test MSE: what ``train
    --json`` prints and a store row keeps."""
    return {"predictor": metrics.get("predictor", asked), **{k: metrics[k] for k in PREDICTOR_KEYS if k in metrics}}


def train_dataset(ds: Dataset, config: TrainConfig, *,
                  on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None) -> TrainedModel:
    """The paper's split (90/10, ``random_state=config.seed``), scaling, training and test."""
    if config.task != "auto" and config.task != ds.task:
        raise ConfigError(f"dataset {ds.name} is a {ds.task} task, but the config says {config.task}")
    split = split_and_scale(ds, seed=config.seed)
    return train_on_split(split, config, task=ds.task, feature_names=ds.feature_names,
                          target_name=ds.target_name, classes=ds.classes, dataset=ds.name,
                          on_epoch_end=on_epoch_end)


def summary(model: TrainedModel, ds: Dataset, n_train: int, n_test: int) -> dict[str, Any]:
    """The JSON object ``softbits train --json`` prints."""
    cfg = model.config
    m = model.metrics
    out = {
        "dataset": ds.name,
        "source": ds.source,
        "method": cfg.method,
        "bits": cfg.bits if get_method(cfg.method).quantized else None,
        "n_features": ds.n_features,
        "n_train": n_train,
        "n_test": n_test,
        "task": ds.task,
        "test_mse": m.get("test_mse"),
        "test_mse_soft": m.get("test_mse_soft"),
        "test_accuracy": m.get("test_accuracy"),
        "train_seconds": m.get("train_seconds"),
        "epochs": cfg.epochs,
        "members": cfg.members,
        "compression_factor": cfg.compression_factor,
        "payload_bytes_per_sample": cfg.payload_bytes(ds.n_features),
        "seed": cfg.seed,
        "device": model.runtime.get("device"),
        "settings": cfg.to_dict(),
        "versions": {k: v for k, v in model.runtime.items() if k != "device"},
        "notes": ds.notes,
        "history": model.history.epochs() if model.history is not None else [],
    }
    if "test_mse_fp" in m:
        out["test_mse_fp"] = m["test_mse_fp"]
    out.update(predictor_record(m, cfg.predictor))
    if cfg.bits_per_feature is not None:
        out["bits_per_feature"] = dict(zip(ds.feature_names, cfg.bits_per_feature, strict=True))
    if model.allocation is not None:  # a budget's widths, also when they came out equal
        out["bits_per_feature"] = model.allocation["bits_per_feature"]
        out["budget_bits"] = model.allocation["budget_bits"]
        out["allocation"] = model.allocation
    return out

