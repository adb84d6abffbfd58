"""``softbits frontier``: the options of :func:`softbits.experiments.frontier.run_frontier` and
its outcome on the terminal. Every input is checked before the first training; problems are
one-line :class:`~softbits.errors.SoftbitsError`\\ s and write nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from softbits.cliutil import DataDirOpt, console, print_json

__all__ = ["frontier"]


def frontier(
    dataset: Annotated[str, typer.Option(help="A registered regression dataset (e.g. california, cpu_act).")],
    method: Annotated[str, typer.Option(help="A threshold method that takes per-feature widths (bw-sq, bw-mq, bw-qq, sq, pr-*, po-*).")] = "bw-sq",
    budgets: Annotated[str, typer.Option(help="Code bits per sample, comma-separated (1..16 x features), and 'uniform' for the code bits of uniform 1..4 bits (n x features).")] = "uniform",
    seeds: Annotated[int, typer.Option(help="Repeats per point: repeat r splits 90/10 and trains with seed --seed + r.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the first repeat.")] = 42,
    layers: Annotated[int, typer.Option(help="Hidden layers of every model.")] = 5,
    neurons: Annotated[int, typer.Option(help="Neurons per hidden layer.")] = 128,
    epochs: Annotated[int, typer.Option(help="Training epochs of every model (the allocator's probe trains half of them).")] = 30,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    dropout: Annotated[float, typer.Option(help="Dropout after each hidden layer.")] = 0.0,
    decrease_factor: Annotated[float, typer.Option(help="Temperature decays to this over the epochs.")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="Weight decay.")] = 0.0,
    store: Annotated[Path, typer.Option(help="SQLite results store; re-running skips finished trainings.")] = Path("runs/frontier.sqlite"),
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="Directory for frontier.csv, frontier.md, frontier.png (default: <store>_report next to the store).")] = None,
    jobs: Annotated[int, typer.Option(help="Local worker processes (0 = one per CPU core).")] = 0,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler tcp://HOST:PORT; runs the trainings on that cluster instead of local processes.")] = None,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to wait for the Dask scheduler.")] = 5.0,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary object at the end.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Test MSE against payload bits: uniform and allocated widths at each budget, and FP, over several seeds."""
    from softbits.experiments.commands import progress_display
    from softbits.experiments.frontier import run_frontier

    outcome = run_frontier(
        store=store, dataset=dataset, out_dir=out_dir, method=method.lower(), budgets=budgets.split(","),
        seeds=seeds, seed=seed, layers=layers, neurons=neurons, epochs=epochs, lr=lr, dropout=dropout,
        decrease_factor=decrease_factor, weight_decay=weight_decay, jobs=jobs, scheduler=scheduler,
        connect_timeout=connect_timeout, device=device, data_dir=data_dir, progress=progress_display())
    paths = outcome.paths
    if as_json:
        print_json({"store": str(store), "csv": str(paths.csv), "md": str(paths.md), "png": str(paths.figure),
                    "rows_added": outcome.rows_added, "runs": outcome.runs, "seconds": outcome.seconds,
                    "backend": outcome.backend, "rows": json.loads(outcome.table.to_json(orient="records"))})
        return
    console.print(paths.md.read_text(encoding="utf-8"), soft_wrap=True, markup=False)
    console.print(f"{outcome.runs} trainings, {outcome.rows_added} new result rows in {outcome.seconds:.1f} s "
                      f"· store {store} · {paths.csv.parent}", soft_wrap=True, highlight=False)
