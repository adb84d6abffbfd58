"""``softbits reproduce`` and ``softbits report``: the paper's protocol on one command.

All input is validated before the first training (names, bit ranges, settings and grid files,
store version, scheduler reachability); problems are one-line :class:`SoftbitsError`\\ s and leave
the store untouched.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import Progress

from softbits.cli import DataDirOpt, app, check_output_dir, console, err_console, print_json, writing
from softbits.config import MAX_BITS
from softbits.errors import ConfigError, DataError, SoftbitsError

__all__ = ["reproduce", "report", "parse_bits", "parse_names", "QUICK_PRESET"]

#: what ``--quick`` fills in for options the user did not give
QUICK_PRESET: dict[str, Any] = {
    "datasets": "fried",
    "methods": "fp,po-qq,pr-qq,bw-sq,lsq",
    "bits": "2,4",
    "n_settings": 3,
    "repeats": 3,
}
FULL_DEFAULTS: dict[str, Any] = {
    "datasets": "california,cpu_act,fried,superconduct,sulfur,wine_quality",
    "methods": "fp,po-mq,po-qq,pr-mq,pr-qq,sq,bw-mq,bw-qq,bw-sq,lsq,llt4,llt9",
    "bits": "2-8",
    "n_settings": 100,
    "repeats": 10,
}


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
        for b in range(lo, hi + 1):
            if not 1 <= b <= MAX_BITS:
                raise ConfigError(f"bits must be in 1..{MAX_BITS}, got {b}")
            bits.add(b)
    return sorted(bits)


def _methods(text: str, bits: list[int]) -> list[str]:
    from softbits.methods import get_method

    methods = [get_method(n).name for n in parse_names(text, "methods")]
    for name in methods:
        low = [b for b in bits if b < get_method(name).min_bits]
        if low:
            raise ConfigError(f"method {name} needs bits >= {get_method(name).min_bits}, got {low[0]}")
    return list(dict.fromkeys(methods))


def _datasets(text: str, data_dir: Path | None) -> list[str]:
    """Known, regression, and loadable now (so a missing file fails before any training)."""
    from softbits.data import get_dataset_info
    from softbits.experiments.tasks import load_cached

    names = parse_names(text, "datasets")
    for name in names:
        info = get_dataset_info(name)
        if info.task != "regression":
            raise DataError(f"dataset {name} is a {info.task} task; the protocol reports regression MSE")
        load_cached(name, str(data_dir) if data_dir else None)
    return names


def _positive(value: int, what: str, minimum: int = 1) -> int:
    if value < minimum:
        raise ConfigError(f"--{what} must be >= {minimum}, got {value}")
    return value


class LineProgress:
    """Progress for logs and pipes: a plain line per ``interval`` seconds and one at the end.

    A rich bar redraws in place, which a log file only sees once, at exit; a days-long run
    written to a file needs periodic lines instead.
    """

    def __init__(self, write: Callable[[str], None], interval: float = 30.0) -> None:
        self._write, self._interval = write, interval
        self._tasks: list[dict[str, Any]] = []

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: int) -> int:
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


def _progress() -> Progress | LineProgress:
    """Completed/total trainings with elapsed time and ETA on stderr: a live bar on a terminal,
    plain lines every 30 s otherwise."""
    from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    if not err_console.is_terminal:
        return LineProgress(lambda line: err_console.print(line, highlight=False, soft_wrap=True))
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("runs"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=err_console, transient=False)


@app.command()
def reproduce(
    datasets: Annotated[Optional[str], typer.Option(help="Comma-separated datasets (default: the paper's six; --quick: fried).")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods (default: all twelve of Table 2).")] = None,
    bits: Annotated[Optional[str], typer.Option(help="Bit widths: a range 2-8 or a list 2,4,6 (default 2-8; --quick: 2,4).")] = None,
    settings: Annotated[str, typer.Option(help="'search' (random search + K-fold CV) or a CSV with the chosen settings per (dataset, method, bits), e.g. the paper's paper_results.csv.")] = "search",
    n_settings: Annotated[Optional[int], typer.Option(help="Settings drawn for the search (default 100; --quick: 3).")] = None,
    grid: Annotated[Optional[Path], typer.Option(help="JSON file with the search grid (default: the paper's; --quick: small nets).")] = None,
    folds: Annotated[int, typer.Option(help="K of the K-fold search on the 90% part.")] = 4,
    repeats: Annotated[Optional[int], typer.Option(help="Final-test repeats, seed = seed + r (default 10; --quick: 3).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the settings draw, the held-out split and the folds.")] = 42,
    quick: Annotated[bool, typer.Option("--quick", help="Preset that finishes in minutes on a laptop CPU: fried, 5 methods, bits 2,4, 3 small settings, 3 repeats.")] = False,
    store: Annotated[Path, typer.Option(help="SQLite results store; re-running skips finished runs.")] = Path("runs/softbits.sqlite"),
    out: Annotated[Optional[Path], typer.Option(help="Report directory (default: <store>_report next to the store).")] = None,
    compare: Annotated[Optional[Path], typer.Option("--compare", help="Reference table (e.g. paper_results.csv): the report adds ours/reference and inside-CI per cell.")] = None,
    jobs: Annotated[int, typer.Option(help="Local worker processes (0 = one per CPU core).")] = 0,
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler tcp://HOST:PORT; runs the tasks on that cluster instead of local processes.")] = None,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to wait for the Dask scheduler.")] = 5.0,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary object at the end.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Reproduce Table 2 / Figure 4: search (or given settings), repeated final tests, report."""
    from softbits.experiments.protocol import Protocol, choose_settings, final_tasks, search_tasks
    from softbits.experiments.report import read_reference, write_report
    from softbits.experiments.runner import DaskBackend, LocalBackend, connect_dask, execute, pending
    from softbits.experiments.settings import (PAPER_GRID, QUICK_GRID, draw_settings, load_grid,
                                               read_settings_table)
    from softbits.experiments.store import ResultStore, check_store
    from softbits.methods import get_method
    from softbits.training import resolve_device

    started = time.perf_counter()
    preset = QUICK_PRESET if quick else FULL_DEFAULTS
    bit_list = parse_bits(bits if bits is not None else preset["bits"])
    method_list = _methods(methods if methods is not None else preset["methods"], bit_list)
    n_settings = _positive(n_settings if n_settings is not None else preset["n_settings"], "n-settings")
    repeats = _positive(repeats if repeats is not None else preset["repeats"], "repeats")
    _positive(folds, "folds", 2)
    jobs = _positive(jobs if jobs != 0 else (os.cpu_count() or 1), "jobs")
    resolve_device(device)
    check_store(store)
    out_dir = out if out is not None else store.parent / f"{store.stem}_report"
    check_output_dir(out_dir, "--out")
    if compare is not None:
        read_reference(compare)
    dataset_list = _datasets(datasets if datasets is not None else preset["datasets"], data_dir)
    parallel = scheduler is not None or jobs > 1
    protocol = Protocol(datasets=tuple(dataset_list), methods=tuple(method_list),
                        bits=tuple(bit_list), n_folds=folds, repeats=repeats, seed=seed,
                        data_dir=str(data_dir) if data_dir else None, device=device,
                        threads=1 if parallel else None)

    search = settings.strip().lower() == "search"
    candidates = []
    chosen_from_file = {}
    if search:
        search_grid = load_grid(grid) if grid is not None else (QUICK_GRID if quick else PAPER_GRID)
        candidates = draw_settings(n_settings, seed=seed, grid=search_grid)
        for s in candidates:
            for m in method_list:
                s.train_config(m, max(bit_list), seed, device)
    else:
        needed = [(d, get_method(m).display, b) for d, m, b in protocol.cells()]
        table = read_settings_table(Path(settings), needed)
        chosen_from_file = {(d, m, b): table[(d, get_method(m).display, b)]
                            for d, m, b in protocol.cells()}
        for (d, m, b), s in chosen_from_file.items():
            s.train_config(m, b, seed, device)

    backend = DaskBackend(connect_dask(scheduler, connect_timeout)) if scheduler else LocalBackend(jobs)
    result_store = ResultStore(store)
    added = 0
    runs = 0
    try:
        with _progress() as progress:
            if search:
                result_store.add_settings(candidates)
                todo = pending(search_tasks(protocol, candidates), result_store)
            else:
                result_store.set_choices((d, m, b, s, f"file:{Path(settings).name}", None)
                                         for (d, m, b), s in chosen_from_file.items())
                todo = pending(final_tasks(protocol, chosen_from_file), result_store)
            bar = progress.add_task(f"{'search' if search else 'test'} · {backend.name}", total=len(todo))

            def advance(_: Any) -> None:
                nonlocal runs
                runs += 1
                progress.advance(bar)

            added += execute(todo, result_store, backend, advance)
            if search:
                choices = choose_settings(protocol, candidates, result_store.results())
                missing = [c for c in protocol.cells() if c not in choices]
                if missing:
                    raise SoftbitsError(f"search left no result for {len(missing)} cells, e.g. {missing[0]}")
                result_store.set_choices((d, m, b, s, "search", val) for (d, m, b), (s, val) in choices.items())
                todo = pending(final_tasks(protocol, {c: s for c, (s, _) in choices.items()}), result_store)
                bar = progress.add_task(f"test · {backend.name}", total=len(todo))
                added += execute(todo, result_store, backend, advance)
        with writing("--out"):
            paths = write_report(result_store, out_dir, compare)
    finally:
        backend.close()
        result_store.close()
    seconds = time.perf_counter() - started
    if as_json:
        print_json({"store": str(store), "report": str(paths.table_csv.parent), "rows_added": added,
                    "runs": runs, "seconds": seconds, "backend": backend.name,
                    "compare": str(paths.compare_csv) if paths.compare_csv else None})
        return
    console.print(paths.table_md.read_text(), soft_wrap=True)
    if paths.compare_md is not None:
        console.print(paths.compare_md.read_text(), soft_wrap=True)
    console.print(f"{runs} trainings, {added} new result rows in {seconds:.1f} s · store {store} · "
                  f"report {paths.table_csv.parent}", soft_wrap=True)


@app.command()
def report(
    store: Annotated[Path, typer.Option(help="SQLite results store written by reproduce.")],
    out: Annotated[Path, typer.Option(help="Directory for table.csv, table.md, figure4.png.")],
    compare: Annotated[Optional[Path], typer.Option("--compare", help="Reference table (e.g. paper_results.csv): ratio ours/reference and inside-CI per cell.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the table rows.")] = False,
) -> None:
    """Table 2 (CSV + Markdown) and Figure 4 from a results store, optionally against a reference."""
    from softbits.experiments.report import summarize, write_report
    from softbits.experiments.store import ResultStore

    # write_report reads the reference before it writes anything, so a bad one leaves no output
    check_output_dir(out, "--out")
    with ResultStore.open_existing(store) as s, writing("--out"):
        paths = write_report(s, out, compare)
        if as_json:
            print_json({"out": str(out), "rows": summarize(s).to_dict("records")})
            return
    console.print(paths.table_md.read_text(), soft_wrap=True)
    if paths.compare_md is not None:
        console.print(paths.compare_md.read_text(), soft_wrap=True)
    console.print(f"report written to {out}")
