"""``softbits reproduce``, ``softbits report`` and ``softbits frontier``: the experiments'
commands (options, then the library call, then the outcome on the terminal).

All input is validated before the first training (names, bit ranges, settings and grid files,
store version, scheduler reachability); problems are one-line :class:`SoftbitsError`\\ s and leave
the store untouched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from softbits.cliutil import (
    DataDirOpt,
    check_output_dir,
    console,
    err_console,
    print_json,
    writing,
)
from softbits.codes import check_bits
from softbits.errors import ConfigError

__all__ = ["frontier", "reproduce", "report", "parse_bits", "parse_names", "progress_display", "LineProgress"]

#: the run options reproduce and frontier share (experiments.session runs them alike)
JobsOpt = Annotated[int, typer.Option(help="Local worker processes (0 = one per CPU core).")]
SchedulerOpt = Annotated[str | None, typer.Option(
    help="Dask scheduler tcp://HOST:PORT; runs the trainings on that cluster instead of local processes.")]
ConnectTimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait for the Dask scheduler.")]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")]


def _one_dataset(dataset: str | None, data: Path | None, target: str | None) -> str:
    """``--dataset NAME`` or ``--data PATH [--target COL]`` as one dataset name for the tasks."""
    from softbits.experiments.tasks import file_dataset

    if (dataset is None) == (data is None):
        raise ConfigError("give exactly one of --dataset NAME or --data PATH")
    if data is None:
        if target is not None:
            raise ConfigError("--target applies to --data files; named datasets know their target")
        return str(dataset)
    if not data.is_file():
        raise ConfigError(f"--data file not found: {data}")
    return file_dataset(data, target)


def _datasets_with_file(datasets: str | None, data: Path | None, target: str | None) -> list[str] | None:
    """``--datasets`` and ``--data`` together (None: the preset's datasets)."""
    names = parse_names(datasets, "datasets") if datasets is not None else None
    if data is None:
        if target is not None:
            raise ConfigError("--target applies to --data files; named datasets know their target")
        return names
    return [*(names or []), _one_dataset(None, data, target)]


def parse_names(text: str, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--{what} is empty")
    return list(dict.fromkeys(names))


def parse_bits(text: str) -> list[int]:
    """``2-8``, ``2,4,6`` or a mix (``2-4,8``) → sorted distinct bit widths in 1..MAX_BITS."""
    bits: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        lo_text, sep, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if sep else lo
        except ValueError:
            raise ConfigError(f"cannot read bits {text!r}; write a range like 2-8 or a list like 2,4,6") from None
        if lo > hi:
            raise ConfigError(f"bits range {part} is empty (start > end); write {hi}-{lo}")
        bits.update(check_bits(b) for b in range(lo, hi + 1))
    return sorted(bits)


class LineProgress:
    """Progress for logs and pipes: a plain line per ``interval`` seconds and one at the end.

    A rich bar redraws in place, which a log file only sees once, at exit; a days-long run
    written to a file needs periodic lines instead.
    """

    def __init__(self, write: Callable[[str], None], interval: float = 30.0) -> None:
        self._write, self._interval = write, interval
        self._tasks: list[dict[str, Any]] = []

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, *, total: int) -> int:
        now = time.perf_counter()
        self._tasks.append({"description": description, "total": total, "done": 0,
                            "start": now, "last": now})
        self._write(f"{description}: 0/{total} runs")
        return len(self._tasks) - 1

    def advance(self, task_id: int) -> None:
        t = self._tasks[task_id]
        t["done"] += 1
        now = time.perf_counter()
        if t["done"] < t["total"] and now - t["last"] < self._interval:
            return
        t["last"] = now
        elapsed = now - t["start"]
        eta = elapsed / t["done"] * (t["total"] - t["done"])
        self._write(f"{t['description']}: {t['done']}/{t['total']} runs, elapsed {_clock(elapsed)}, "
                    f"ETA {_clock(eta)}")


def _clock(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{sec:02d}"


def progress_display() -> Progress | LineProgress:
    """Completed/total trainings with elapsed time and ETA on stderr: a live bar on a terminal,
    plain lines every 30 s otherwise."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not err_console.is_terminal:
        return LineProgress(lambda line: err_console.print(line, highlight=False, soft_wrap=True))
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("runs"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=err_console, transient=False)


def reproduce(
    datasets: Annotated[str | None, typer.Option(help="Comma-separated datasets (default: the paper's six; --quick: fried).")] = None,
    data: Annotated[Path | None, typer.Option(help="Your own CSV, CSV.GZ or Parquet file (a regression target): runs the protocol on it, besides any --datasets.")] = None,
    target: Annotated[str | None, typer.Option(help="Target column of --data (default: the last).")] = None,
    methods: Annotated[str | None, typer.Option(help="Comma-separated methods (default: all twelve of Table 2).")] = None,
    bits: Annotated[str | None, typer.Option(help="Bit widths: a range 2-8 or a list 2,4,6 (default 2-8; --quick: 2,4).")] = None,
    settings: Annotated[str, typer.Option(help="'search' (random search + K-fold CV) or a CSV with the chosen settings per (dataset, method, bits), e.g. the paper's paper_results.csv.")] = "search",
    n_settings: Annotated[int | None, typer.Option(help="Settings drawn for the search (default 100; --quick: 3).")] = None,
    grid: Annotated[Path | None, typer.Option(help="JSON file with the search grid (default: the paper's; --quick: small nets).")] = None,
    folds: Annotated[int, typer.Option(help="K of the K-fold search on the 90% part.")] = 4,
    repeats: Annotated[int | None, typer.Option(help="Final-test repeats, seed = seed + r (default 10; --quick: 3).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the settings draw, the held-out split and the folds.")] = 42,
    quick: Annotated[bool, typer.Option("--quick", help="Preset that finishes in minutes on a laptop CPU: fried, 5 methods, bits 2,4, 3 small settings, 3 repeats.")] = False,
    store: Annotated[Path, typer.Option(help="SQLite results store; re-running skips finished runs.")] = Path("runs/softbits.sqlite"),
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="Report directory (default: <store>_report next to the store).")] = None,
    compare: Annotated[Path | None, typer.Option("--compare", help="Reference table (e.g. paper_results.csv): the report adds ours/reference and inside-CI per cell.")] = None,
    jobs: JobsOpt = 0,
    scheduler: SchedulerOpt = None,
    connect_timeout: ConnectTimeoutOpt = 5.0,
    device: DeviceOpt = "auto",
    stack: Annotated[str, typer.Option(help="Trainings of one architecture trained as one stacked model: auto (by device and network width, where measured to help; see docs/gpu.md), K (at most K), or 1 (one at a time). Without dropout each member equals its single training up to float rounding.")] = "auto",
    recipe: Annotated[str, typer.Option(help="Training recipe of every method: paper or best (docs/training.md). The grid's or settings file's values win, except a weight decay of 0, which takes the recipe's.")] = "paper",
    members: Annotated[int | None, typer.Option(help="MLPs behind the quantizer of ensemble methods such as bw-sq-ens (default: the method's, 4); other methods ignore it.")] = None,
    predictor: Annotated[str, typer.Option(help="Server model of every training: mlp (the paper's; method names and stores unchanged), ensemble (each method's ensemble form, bw-sq → bw-sq-ens), gbdt (trees on the codes) or auto; non-mlp rows are stored as method+predictor (docs/predictors.md).")] = "mlp",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary object at the end.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Reproduce Table 2 / Figure 4: search (or given settings), repeated final tests, report."""
    from softbits.experiments.reproduce import run_protocol

    outcome = run_protocol(
        store=store, out_dir=out_dir,
        datasets=_datasets_with_file(datasets, data, target),
        methods=parse_names(methods, "methods") if methods is not None else None,
        bits=parse_bits(bits) if bits is not None else None,
        settings=settings, n_settings=n_settings, grid=grid, folds=folds, repeats=repeats,
        seed=seed, quick=quick, compare=compare, jobs=jobs, scheduler=scheduler,
        connect_timeout=connect_timeout, device=device, stack=stack, recipe=recipe,
        members=members, data_dir=data_dir, predictor=predictor.lower(),
        progress=progress_display(), notes=lambda line: err_console.print(f"note: {line}", highlight=False,
                                                                   soft_wrap=True))
    paths = outcome.report
    if as_json:
        print_json({"store": str(store), "report": str(paths.table_csv.parent),
                    "rows_added": outcome.rows_added, "runs": outcome.runs,
                    "seconds": outcome.seconds, "backend": outcome.backend,
                    "recipe": outcome.recipe, "members": outcome.members,
                    "compare": str(paths.compare_csv) if paths.compare_csv else None})
        return
    console.print(paths.table_md.read_text(), soft_wrap=True)
    if paths.compare_md is not None:
        console.print(paths.compare_md.read_text(), soft_wrap=True)
    console.print(f"{outcome.runs} trainings, {outcome.rows_added} new result rows in "
                  f"{outcome.seconds:.1f} s · store {store} · report {paths.table_csv.parent}",
                  soft_wrap=True)


def report(
    store: Annotated[Path, typer.Option(help="SQLite results store written by reproduce.")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Directory for table.csv, table.md, figure4.png.")],
    compare: Annotated[Path | None, typer.Option("--compare", help="Reference table (e.g. paper_results.csv): ratio ours/reference and inside-CI per cell.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the table rows.")] = False,
) -> None:
    """Table 2 (CSV + Markdown) and Figure 4 from a results store, optionally against a reference."""
    from softbits.experiments.report import summarize, write_report
    from softbits.experiments.store import ResultStore

    # write_report reads the reference before it writes anything, so a bad one leaves no output
    check_output_dir(out_dir, "--out-dir")
    with ResultStore.open_existing(store) as s, writing("--out-dir"):
        paths = write_report(s, out_dir, compare)
        if as_json:
            print_json({"out_dir": str(out_dir), "rows": summarize(s).to_dict("records")})
            return
    console.print(paths.table_md.read_text(), soft_wrap=True)
    if paths.compare_md is not None:
        console.print(paths.compare_md.read_text(), soft_wrap=True)
    console.print(f"report written to {out_dir}")


def frontier(
    dataset: Annotated[str | None, typer.Option(help="A registered regression dataset (e.g. california, cpu_act).")] = None,
    data: Annotated[Path | None, typer.Option(help="Your own CSV, CSV.GZ or Parquet file instead of --dataset (a regression target).")] = None,
    target: Annotated[str | None, typer.Option(help="Target column of --data (default: the last).")] = None,
    method: Annotated[str, typer.Option(help="A threshold method that takes per-feature widths (bw-sq, bw-mq, bw-qq, sq, pr-*, po-*).")] = "bw-sq",
    budgets: Annotated[str | None, typer.Option(help="Code bits per sample, comma-separated (1..16 x features), and 'uniform' for the code bits of uniform 1..4 bits (n x features; the default).")] = None,
    bits: Annotated[str | None, typer.Option(help="Instead of --budgets: average widths per feature, comma-separated (e.g. 1,2,3,4,6,8); each is the budget bits x features.")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Every contender on the same splits in one table and plot: --method with the MLP (the paper; FP MLP), quantile codes + trees (bw-qq+gbdt; FP trees) and --method with auto (docs/frontier.md).")] = False,
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
    jobs: JobsOpt = 0,
    scheduler: SchedulerOpt = None,
    connect_timeout: ConnectTimeoutOpt = 5.0,
    device: DeviceOpt = "auto",
    predictor: Annotated[str, typer.Option(help="Server model of every point: mlp, gbdt (trees on the codes; with --method bw-qq: quantile codes + trees) or auto (docs/predictors.md).")] = "mlp",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary object at the end.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Test MSE against payload bits: uniform and allocated widths at each budget, and FP, over several seeds; --compare puts softbits beside the alternatives."""
    from softbits.experiments.frontier import run_frontier

    outcome = run_frontier(
        store=store, dataset=_one_dataset(dataset, data, target), out_dir=out_dir, method=method.lower(),
        budgets=None if budgets is None else budgets.split(","), bits=None if bits is None else bits.split(","), compare=compare,
        seeds=seeds, seed=seed, layers=layers, neurons=neurons, epochs=epochs, lr=lr, dropout=dropout,
        decrease_factor=decrease_factor, weight_decay=weight_decay, jobs=jobs, scheduler=scheduler,
        connect_timeout=connect_timeout, device=device, data_dir=data_dir, progress=progress_display(),
        predictor=predictor.lower())
    paths = outcome.paths
    if as_json:
        print_json({"store": str(store), "csv": str(paths.csv), "md": str(paths.md), "png": str(paths.figure),
                    "rows_added": outcome.rows_added, "runs": outcome.runs, "seconds": outcome.seconds,
                    "backend": outcome.backend, "rows": json.loads(outcome.table.to_json(orient="records"))})
        return
    console.print(paths.md.read_text(encoding="utf-8"), soft_wrap=True, markup=False)
    console.print(f"{outcome.runs} trainings, {outcome.rows_added} new result rows in {outcome.seconds:.1f} s "
                      f"· store {store} · {paths.csv.parent}", soft_wrap=True, highlight=False)
