"""One training from data to metrics: build the method's model, fit it, evaluate hard (and soft).

This is the function the CLI, the estimator and the protocol's tasks call.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from softbits.artifact import TrainedModel
from softbits.config import TrainConfig
from softbits.data import Dataset, Split, split_and_scale
from softbits.env import runtime_info
from softbits.errors import ConfigError
from softbits.methods import get_method
from softbits.model import QuantizedMLP, build_network
from softbits.schedules import make_schedule
from softbits.training import (FitResult, evaluate, fit, resolve_device, seed_everything,
                               target_tensor, to_tensor)

__all__ = ["attach_post_quantizer", "available_memory", "build_model", "check_training_memory",
           "fit_module", "summary", "train_dataset", "train_on_split"]


def build_model(config: TrainConfig, n_features: int, n_outputs: int,
                X_train: torch.Tensor | None = None, *,
                device: torch.device | None = None) -> QuantizedMLP:
    """The method's quantizer (initialised on ``X_train`` when given) in front of a fresh MLP,
    or of ``config.members`` MLPs for an ensemble method.

    With ``device``, a network whose training cannot fit that device's free memory is refused
    before any of it is allocated (:func:`check_training_memory`).
    """
    method = get_method(config.method)
    quantizer = None
    if method.train_quantizer is not None:
        quantizer = method.train_quantizer(n_features, config.bits, config.init)
        if X_train is not None:
            quantizer.init_from_data(X_train)
        d_in = quantizer.out_features
    else:
        d_in = n_features
    members = config.members if method.ensemble else None
    if device is not None:
        rows = config.batch_size if X_train is None else min(config.batch_size, X_train.shape[0])
        check_training_memory(config, d_in, n_outputs, members, device, batch_rows=rows)
    network = build_network(d_in, n_outputs, config.layers, config.neurons, config.dropout, members)
    return QuantizedMLP(quantizer, network)


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


def check_training_memory(config: TrainConfig, d_in: int, n_outputs: int, members: int | None,
                          device: torch.device, *, batch_rows: int) -> None:
    """One-line :class:`ConfigError` when a lower bound of the training's memory exceeds what
    ``device`` has free, instead of an out-of-memory crash (or swapping) minutes later.

    The bound counts float32 weights, gradients and Adam's two moments (16 bytes a parameter)
    and the hidden activations with their ReLU outputs of one batch of ``batch_rows`` rows; the
    real need is higher.
    """
    with torch.device("meta"):  # the real builder, so the count cannot drift from it
        network = build_network(d_in, n_outputs, config.layers, config.neurons, config.dropout, members)
    params = sum(p.numel() for p in network.parameters())
    k = members or 1
    activations = batch_rows * (k * (2 * config.layers * config.neurons + n_outputs) + d_in)
    need = 4 * (4 * params + activations)
    free = available_memory(device)
    if free is not None and need > free:
        what = f"{k} networks of {params // k:,} parameters" if members else f"a network of {params:,} parameters"
        raise ConfigError(f"training {what} needs at least {need / 2**30:.1f} GiB (weights, gradients, "
                          f"Adam state, one batch), but {device} has {free / 2**30:.1f} GiB free; "
                          "lower members, neurons, layers or batch size")


def attach_post_quantizer(module: QuantizedMLP, method_name: str, bits: int,
                          X_train: torch.Tensor) -> QuantizedMLP:
    """Po-MQ/Po-QQ: the same trained FP network behind a fixed quantizer fit on ``X_train``."""
    method = get_method(method_name)
    assert method.post_quantizer is not None, f"{method_name} has no post quantizer"
    q = method.post_quantizer(X_train.shape[1], bits, "quantile").to(X_train.device)
    q.init_from_data(X_train)
    return QuantizedMLP(q, module.network)


def _metrics(module: QuantizedMLP, X: torch.Tensor, y: torch.Tensor, task: str) -> dict[str, Any]:
    hard = evaluate(module, X, y, task=task)
    soft = None
    if module.quantizer is not None and module.quantizer.uses_temperature and task == "regression":
        soft = evaluate(module, X, y, task=task, soft=True).mse
    return {"test_mse": hard.mse, "test_mse_soft": soft, "test_accuracy": hard.accuracy,
            "test_loss": hard.loss}


def fit_module(
    X_train: np.ndarray,
    y_train: np.ndarray,
    config: TrainConfig,
    *,
    task: str,
    n_outputs: int = 1,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> tuple[QuantizedMLP, FitResult, torch.Tensor]:
    """Build and train the method's module on standardized arrays.

    Returns the module (for Po-* still the FP network), the fit record and the training tensor
    (the one thresholds were initialised on).
    """
    device = resolve_device(config.device)
    generator = seed_everything(config.seed)
    X_tr, y_tr = to_tensor(X_train, device), target_tensor(y_train, device, task)
    X_val = y_val = None
    if config.val_fraction > 0:
        n_val = max(1, int(round(config.val_fraction * X_tr.shape[0])))
        perm = torch.randperm(X_tr.shape[0], generator=torch.Generator().manual_seed(config.seed)).to(device)
        X_val, y_val = X_tr[perm[:n_val]], y_tr[perm[:n_val]]
        X_tr, y_tr = X_tr[perm[n_val:]], y_tr[perm[n_val:]]
    module = build_model(config, X_tr.shape[1], n_outputs, X_tr, device=device).to(device)
    schedule = make_schedule(config.schedule, config.epochs, config.decrease_factor)
    result = fit(module, X_tr, y_tr, task=task, epochs=config.epochs, lr=config.lr,
                 weight_decay=config.weight_decay, batch_size=config.batch_size,
                 schedule=schedule, generator=generator, X_val=X_val, y_val=y_val,
                 on_epoch_end=on_epoch_end)
    return module, result, X_tr


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
    """Train ``config`` on ``split.X_train`` and test on ``split.X_test`` (both standardized)."""
    n_out = len(classes) if task == "classification" and classes else 1
    module, result, X_tr = fit_module(split.X_train, split.y_train, config, task=task,
                                      n_outputs=n_out, on_epoch_end=on_epoch_end)
    device = X_tr.device
    X_te, y_te = to_tensor(split.X_test, device), target_tensor(split.y_test, device, task)
    metrics: dict[str, Any] = {}
    if get_method(config.method).post_quantizer is not None:
        metrics["test_mse_fp"] = _metrics(module, X_te, y_te, task)["test_mse"]
        module = attach_post_quantizer(module, config.method, config.bits, X_tr)
    metrics.update(_metrics(module, X_te, y_te, task))
    metrics.update({
        "train_seconds": result.train_seconds,
        "epochs": config.epochs,
        "final_train_loss": result.train_loss[-1] if result.train_loss else math.nan,
        "final_temperature": result.temperatures[-1] if result.temperatures else None,
        "best_epoch": result.best_epoch,
    })
    return TrainedModel(
        module=module, config=config, x_scaler=split.x_scaler, y_scaler=split.y_scaler,
        feature_names=list(feature_names), target_name=target_name, task=task, classes=classes,
        dataset=dataset, metrics=metrics, runtime=runtime_info(device),
    )


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
    }
    if "test_mse_fp" in m:
        out["test_mse_fp"] = m["test_mse_fp"]
    return out

