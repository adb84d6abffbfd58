"""``softbits train``: one training from the command line, its summary and its model file.

Lives with the trainers it drives; :mod:`softbits.cli` registers it.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from softbits.cliutil import DataDirOpt, check_output_file, console, err_console, print_json, writing
from softbits.codes import MAX_BITS
from softbits.data.registry import DATASETS
from softbits.errors import ConfigError, DataError
from softbits.training.methods import METHODS

__all__ = ["load_input", "train"]


def load_input(dataset: str | None, data: Path | None, target: str | None, task: str,
               dropna: bool, data_dir: Path | None):
    """Resolve ``--dataset NAME`` or ``--data PATH`` into a :class:`~softbits.data.Dataset`."""
    from softbits.data import load_dataset, load_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if data is not None and dataset is None:
            return load_table(data, target, task=task, dropna=dropna)
        if dataset is not None and data is None:
            if target is not None:
                raise ConfigError("--target applies to --data files; named datasets know their target")
            return load_dataset(dataset, data_dir=data_dir, task=task, dropna=dropna)
    raise ConfigError("give exactly one of --dataset NAME or --data PATH")


#: the registries name the choices, so a new method or dataset shows up in the help by itself
_METHOD_HELP = ", ".join(f"{name} (paper)" if name == "bw-sq" else name for name in METHODS) + "."


def train(
    dataset: Annotated[str | None, typer.Option(help=f"A registered dataset ({', '.join(DATASETS)}).")] = None,
    data: Annotated[Path | None, typer.Option(help="Your own CSV, CSV.GZ or Parquet file.")] = None,
    target: Annotated[str | None, typer.Option(help="Target column of --data (default: the last).")] = None,
    method: Annotated[str, typer.Option(help=_METHOD_HELP)] = "bw-sq",
    bits: Annotated[int, typer.Option(help="Bits per feature (1..16; >= 2 for midpoint methods).")] = 4,
    bits_per_feature: Annotated[str | None, typer.Option(help="Bits of named features: name=n,name=n,... or a .json ({name: n}) or .csv (name,bits) file; 0 = not sent; unnamed features get --bits (0 allowed here). Threshold methods only.")] = None,
    budget_bits: Annotated[int | None, typer.Option(help="Code bits per sample: choose each feature's bits (0 = not sent, sum <= this) from the training data; see docs/payload-budget.md. Threshold methods only.")] = None,
    budget_bytes: Annotated[int | None, typer.Option(help="Like --budget-bits, for a whole single-sample payload in the compact frame (2 bytes of framing, then the codes): 11 fits a LoRaWAN US915 DR0 uplink.")] = None,
    layers: Annotated[int, typer.Option(help="Hidden layers.")] = 5,
    neurons: Annotated[int, typer.Option(help="Neurons per hidden layer.")] = 128,
    epochs: Annotated[int, typer.Option(help="Training epochs (the last one is evaluated).")] = 30,
    lr: Annotated[float, typer.Option(help="Learning rate, thresholds included (the peak of --lr-schedule cosine).")] = 1e-3,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay (L2 for adam, decoupled for adamw; default: the recipe's).")] = None,
    dropout: Annotated[float, typer.Option(help="Dropout after each hidden layer.")] = 0.0,
    decrease_factor: Annotated[float, typer.Option(help="Temperature decays to this over the epochs (paper: 1e-3 or 1e-4).")] = 1e-3,
    schedule: Annotated[str, typer.Option(help="Temperature schedule: exponential (paper), linear, logspace, warmup, cosine, cyclical, constant.")] = "exponential",
    init: Annotated[str, typer.Option(help="Threshold init for trainable quantizers: quantile (paper), minmax, bins (tie-aware equal frequency, as bw-bq) or splits (gain-weighted quantiles of float32 trees' split points, as bw-tq; needs softbits[gbdt]).")] = "quantile",
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 512,
    val_fraction: Annotated[float | None, typer.Option(help="> 0: keep this share for validation and restore the best epoch (default: the recipe's).")] = None,
    recipe: Annotated[str, typer.Option(help="Defaults for the options below and --weight-decay, --val-fraction: paper (Adam, constant lr, last epoch) or best (chosen by CV on training data; see docs/training.md). Options given explicitly win.")] = "paper",
    optimizer: Annotated[str | None, typer.Option(help="adam (paper) or adamw (default: the recipe's).")] = None,
    lr_schedule: Annotated[str | None, typer.Option(help="constant (paper) or cosine: warm-up, then decay to about 0 (default: the recipe's).")] = None,
    warmup_epochs: Annotated[int | None, typer.Option(help="Linear warm-up epochs of --lr-schedule cosine (default: the recipe's share of the epochs).")] = None,
    members: Annotated[int | None, typer.Option(help="MLPs behind the quantizer for an ensemble method such as bw-sq-ens (default: the method's); other methods train 1.")] = None,
    threshold_lr_scale: Annotated[float, typer.Option(help="The quantizer's thresholds (steps, tables) train at --lr times this; 1 = the paper's one rate. Small datasets (few steps per epoch) may gain from 3-30: choose it by CV (docs/training.md).")] = 1.0,
    predictor: Annotated[str, typer.Option(help="The server model behind the codes: mlp (the paper's network), ensemble (bw-sq becomes bw-sq-ens: --members networks), gbdt (gradient-boosted trees on the codes; for fp on the float features; needs softbits[gbdt]) or auto (the lowest validation loss of the MLP and trees; for threshold methods also fixed thresholds, bw-bq bins and bw-tq split points, ranked by trees on their codes, the best of them with its MLP too). gbdt and auto validate on --val-fraction of the training part (0.15 when 0), never on the test split; see docs/predictors.md.")] = "mlp",
    seed: Annotated[int, typer.Option(help="Seed of the split, initialisation and shuffling.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")] = "auto",
    task: Annotated[str, typer.Option(help="auto, regression or classification.")] = "auto",
    dropna: Annotated[bool, typer.Option(help="Drop rows with NaN/inf instead of failing.")] = False,
    save: Annotated[Path | None, typer.Option(help="Write the trained model (safetensors) here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the summary.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Train one model and report its test metrics with hard (device-exact) quantization."""
    from softbits.data import split_and_scale
    from softbits.training.config import resolve
    from softbits.training.train import summary, train_on_split

    # with --bits-per-feature, --bits only fills the unnamed features (0 included) once the data's
    # feature names are known; until then the widest width stands in for it
    config = resolve(recipe, method=method.lower(), bits=bits if bits_per_feature is None else MAX_BITS,
                     layers=layers, neurons=neurons,
                     epochs=epochs, lr=lr, weight_decay=weight_decay, dropout=dropout,
                     decrease_factor=decrease_factor, schedule=schedule, batch_size=batch_size,
                     init=init, seed=seed, device=device, task=task, val_fraction=val_fraction,
                     members=members, optimizer=optimizer, lr_schedule=lr_schedule,
                     warmup_epochs=warmup_epochs, threshold_lr_scale=threshold_lr_scale,
                     predictor=predictor.lower())
    from softbits.training.predictors import check_gbdt_installed, needs_gbdt

    if needs_gbdt(config.method, config.predictor, config.init):
        check_gbdt_installed()
    if bits_per_feature is not None and (budget_bits is not None or budget_bytes is not None):
        raise ConfigError("give --bits-per-feature or a budget (--budget-bits, --budget-bytes), not both")
    if save is not None:
        check_output_file(save, "--save")
    ds = load_input(dataset, data, target, task, dropna, data_dir)
    budget = None
    if budget_bits is not None or budget_bytes is not None:
        from softbits.training.allocation import budget_bits as budget_from

        budget = budget_from(budget_bits, budget_bytes, ds.n_features)
    if bits_per_feature is not None:
        from softbits.training.allocation import parse_widths

        config = replace(config, bits_per_feature=parse_widths(bits_per_feature, ds.feature_names, bits))
    split = split_and_scale(ds, seed=seed)
    for note in ds.notes:
        err_console.print(f"[yellow]note:[/] {note}")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[loss]}"), TimeRemainingColumn(),
                  console=err_console, disable=as_json or not err_console.is_terminal,
                  transient=True) as progress:
        from softbits.training.allocation import probe_epochs, train_allocated

        epochs = config.epochs + (probe_epochs(config) if budget is not None else 0)
        bar = progress.add_task(f"{config.method} {ds.name}", total=epochs, loss="")

        def on_epoch_end(epoch: int, logs: dict[str, Any]) -> None:
            progress.update(bar, advance=1, loss=f"loss {logs['train_loss']:.4f}")

        names = dict(task=ds.task, feature_names=ds.feature_names, target_name=ds.target_name,
                     classes=ds.classes, dataset=ds.name, on_epoch_end=on_epoch_end)
        if budget is None:
            model = train_on_split(split, config, **names)
        else:
            model = train_allocated(split, config, budget, **names)
    result = summary(model, ds, len(split.y_train), len(split.y_test))
    save_error = None
    if save is not None:
        try:
            with writing("--save"):
                result["saved"] = str(model.save(save))
        except DataError as exc:
            save_error = exc  # still print the metrics: the finished training is not lost
    if as_json:
        print_json(result)
    else:
        _print_train_summary(result)
    if save_error is not None:
        raise save_error


def _print_train_summary(r: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"softbits train · {r['dataset']} · {r['method']}", show_header=False)
    fmt = lambda v: "—" if v is None else (f"{v:.5f}" if isinstance(v, float) else str(v))  # noqa: E731
    widths = r.get("bits_per_feature")
    rows = [
        ("bits per feature", r["bits"] if widths is None else
         ", ".join(f"{name} {w}" for name, w in widths.items())),
        ("features / train / test", f"{r['n_features']} / {r['n_train']} / {r['n_test']}"),
        ("test MSE (hard)", r["test_mse"]),
        ("test MSE (soft)", r["test_mse_soft"]),
        ("test accuracy", r["test_accuracy"]),
        ("compression", f"{r['compression_factor']:.2f}× · {r['payload_bytes_per_sample']} B/sample"),
        ("training", f"{r['epochs']} epochs in {r['train_seconds']:.2f} s on {r['device']}"),
        ("seed", r["seed"]),
    ]
    if "test_mse_fp" in r:
        rows.insert(3, ("test MSE (FP model)", r["test_mse_fp"]))
    if r.get("predictor_val_loss"):
        losses = ", ".join(f"{name} {loss:.5f}" for name, loss in (r.get("auto_val_loss")
                                                                     or r["predictor_val_loss"]).items())
        rows.insert(1, ("predictor", f"{r['predictor']} (validation loss: {losses})"))
        rows.insert(4, ("test MSE (MLP)", r.get("test_mse_mlp")))
    if "allocation" in r:
        rows.insert(1, ("budget", f"{r['budget_bits']} code bits; chose {r['allocation']['code_bits']}"))
    if "saved" in r:
        rows.append(("saved", r["saved"]))
    for k, v in rows:
        if k in ("test accuracy",) and v is None:
            continue
        table.add_row(k, fmt(v))
    console.print(table)
