"""Accuracy per transmitted bit: uniform and allocated widths at payload budgets (``softbits frontier``).

For one dataset, :func:`run_frontier` trains per seed, for each contender (a threshold method and
the predictor that serves its codes), a full-precision model, a uniform model at every budget
that is n·F bits for a whole n, and an allocated model
(:func:`softbits.training.allocation.train_allocated`) at every budget, each on a fresh 90/10
split of that seed (the protocol's test phase; the allocator sees the training part only). One
contender is the default; ``compare=True`` runs the contenders of :func:`compare_contenders` on the
same splits: the paper's MLP, quantile codes sent to trees, and ``auto``. It runs through the
protocol's store and runner, so a re-run skips finished trainings, and writes ``frontier.csv``,
``frontier.md`` and ``frontier.png``: test MSE against code bits per sample, with 95% t-intervals
over the seeds. The library prints nothing.
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from softbits.codes import MAX_BITS, payload_bytes
from softbits.errors import ConfigError, SoftbitsError

if TYPE_CHECKING:  # these import torch and pandas, which `softbits --help` must not load
    import pandas as pd

    from softbits.experiments.session import ProgressSink
    from softbits.experiments.settings import Setting
    from softbits.experiments.tasks import Evaluation, ResultKey, Task
    from softbits.training.methods import Method

__all__ = ["FP_BITS", "FRONTIER_COLUMNS", "KINDS", "UNIFORM_BITS", "Contender", "Frontier", "FrontierOutcome",
           "FrontierPaths", "budget_list", "compare_contenders", "run_frontier", "summarize", "write_frontier"]

#: the uniform widths whose code bits ``"uniform"`` in a budget list stands for
UNIFORM_BITS = (1, 2, 3, 4)
#: bits a full-precision feature sends (float32); the FP rows' ``bits`` in the store
FP_BITS = 32
#: ``frontier.csv``'s columns: one row per (contender, kind, budget); ``method`` names the contender
FRONTIER_COLUMNS = ("dataset", "method", "kind", "budget_bits", "bits_per_feature", "code_bits_mean",
                    "payload_bytes", "n_runs", "test_mse_mean", "ci95_low", "ci95_high", "vs_uniform",
                    "vs_best_other", "seconds_mean")
#: what a contender trains: FP, uniform widths at the n·F budgets, allocated widths at every budget
KINDS = ("fp", "uniform", "allocated")


def budget_list(budgets: Sequence[int | str], n_features: int, method: Method,
                bits: Sequence[int | str] | None = None) -> list[int]:
    """Sorted distinct budgets in code bits per sample from integers and the word ``uniform``
    (n·F for n in :data:`UNIFORM_BITS` that the method can send), or from ``bits``, average
    widths per feature (b·F each); one-line errors otherwise."""
    from softbits.text import ascii_int
    from softbits.training.allocation import budget_bits

    for given in (budgets, bits):
        if isinstance(given, str):
            raise ConfigError(f"budgets must be a list, got the string {given!r}")
    if bits is not None:
        budgets = []
        for item in bits:
            if isinstance(item, str) and not item.strip():
                continue
            width = ascii_int(item) if isinstance(item, str) else item
            if isinstance(width, bool) or not isinstance(width, numbers.Integral) or not 1 <= width <= MAX_BITS:
                raise ConfigError(f"--bits wants average widths per feature (whole numbers 1..{MAX_BITS}), got {item!r}")
            budgets.append(int(width) * n_features)
        if not budgets:
            raise ConfigError("--bits is empty")
    chosen: set[int] = set()
    for item in budgets:
        if isinstance(item, str) and not item.strip():
            continue
        if isinstance(item, str) and item.strip().lower() == "uniform":
            chosen.update(n * n_features for n in UNIFORM_BITS if n >= method.min_bits)
            continue
        value: object = item
        if isinstance(item, str) and ascii_int(item) is not None:
            value = ascii_int(item)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"--budgets wants code bits per sample (whole numbers) or 'uniform', got {item!r}")
        budget = budget_bits(int(value), None, n_features)
        if budget is not None and budget < method.min_bits:
            raise ConfigError(f"method {method.name} sends at least {method.min_bits} bits for a feature, "
                              f"but budget {budget} is less")
        chosen.add(int(value))
    if not chosen:
        raise ConfigError("--budgets is empty")
    return sorted(chosen)


@dataclass(frozen=True)
class Contender:
    """One line of the frontier: a threshold method, the predictor that serves its codes, and
    which of :data:`KINDS` it trains (FP is ``fp`` served by the same predictor)."""

    method: str
    predictor: str = "mlp"
    kinds: tuple[str, ...] = KINDS

    @property
    def label(self) -> str:
        """The method as the store and the report name it (``bw-qq+gbdt`` for trees)."""
        from softbits.experiments.tasks import predictor_method

        return predictor_method(self.method, self.predictor)


def compare_contenders(method: str) -> tuple[Contender, ...]:
    """``--compare``'s contenders on the same splits: ``method`` with the paper's MLP (FP MLP,
    uniform, allocated), quantile codes sent to trees (FP trees, uniform, allocated; what a user
    would pick instead) and ``method`` with ``auto`` at every budget (softbits's best)."""
    return (Contender(method, "mlp"), Contender("bw-qq", "gbdt"), Contender(method, "auto", ("allocated",)))


@dataclass(frozen=True)
class Frontier:
    """What a frontier trains: per seed and contender FP, uniform at each n·F budget, allocated at
    each budget (as the contender's kinds say); all with one setting, split like the protocol's
    final test (seed ``seed + r``)."""

    dataset: str
    contenders: tuple[Contender, ...]
    n_features: int
    budgets: tuple[int, ...]
    setting: Setting
    seeds: int
    seed: int = 42
    data_dir: str | None = None
    device: str = "auto"
    threads: int | None = None

    @property
    def label(self) -> str:
        """The contenders' labels, comma-separated."""
        return ", ".join(c.label for c in self.contenders)

    def uniform(self, method: str) -> dict[int, int]:
        """Budget → the uniform width n with n·F = budget, where ``method`` can send n."""
        from softbits.training.methods import get_method

        low = get_method(method).min_bits
        return {b: b // self.n_features for b in self.budgets
                if b % self.n_features == 0 and low <= b // self.n_features <= MAX_BITS}

    def _task(self, r: int, method: str, bits: int, evaluations: Sequence[Evaluation], predictor: str,
              budget: int | None = None) -> Task:
        from softbits.experiments.tasks import TEST_PHASE, Task

        return Task(dataset=self.dataset, train_method=method, train_bits=bits, setting=self.setting,
                    phase=TEST_PHASE, index=r, seed=self.seed + r, evaluations=tuple(evaluations),
                    data_dir=self.data_dir, split_seed=self.seed, device=self.device,
                    threads=self.threads, budget=budget, predictor=predictor)

    def _contender_tasks(self, c: Contender, r: int) -> list[Task]:
        """Allocated trainings first (the longest), then the uniform ones, then FP.

        Po-* methods quantize an FP network after training, so their uniform points are
        evaluations of the seed's FP training (as in the protocol); with a predictor other than
        the MLP each point fits its own, so each trains on its own."""
        from softbits.experiments.protocol import shares_fp_training
        from softbits.experiments.tasks import Evaluation

        widths = sorted(self.uniform(c.method).values()) if "uniform" in c.kinds else []
        shared = shares_fp_training(c.method) and c.predictor == "mlp"
        tasks: list[Task] = []
        if "allocated" in c.kinds:
            for b in self.budgets:
                mean_width = min(MAX_BITS, -(-b // self.n_features))  # the config's bits; widths come from b
                tasks.append(self._task(r, c.method, mean_width, [Evaluation(c.method, b)], c.predictor, budget=b))
        if not shared:
            tasks.extend(self._task(r, c.method, n, [Evaluation(c.method, n)], c.predictor) for n in widths)
        if "fp" in c.kinds or (shared and widths):
            fp_evaluations = [Evaluation("fp", FP_BITS)] if "fp" in c.kinds else []
            if shared:
                fp_evaluations += [Evaluation(c.method, n) for n in widths]
            tasks.append(self._task(r, "fp", min(widths, default=1), fp_evaluations, c.predictor))
        return tasks

    def _planned(self) -> Iterator[tuple[Contender, Task]]:
        """Per seed, each contender with each of its tasks, in order."""
        for r in range(self.seeds):
            for c in self.contenders:
                for t in self._contender_tasks(c, r):
                    yield c, t

    def tasks(self) -> list[Task]:
        """Per seed, every contender's tasks in order; a task two contenders share runs once."""
        tasks: dict[tuple[Any, ...], Task] = {}
        for _, t in self._planned():
            tasks.setdefault(tuple(t.keys()), t)
        return list(tasks.values())

    def labels(self) -> dict[ResultKey, tuple[str, str, int]]:
        """Each result key of :meth:`tasks` → (contender label, kind, budget bits) of its row."""
        labels: dict[ResultKey, tuple[str, str, int]] = {}
        for c, t in self._planned():
            for key in t.keys():
                if t.budget is not None:
                    label = (c.label, "allocated", t.budget)
                elif key.method.split("+")[0] == "fp":
                    label = (c.label, "fp", FP_BITS * self.n_features)
                else:
                    label = (c.label, "uniform", key.bits * self.n_features)
                labels.setdefault(key, label)  # a shared training's row is its first contender's
        return labels


@dataclass(frozen=True)
class FrontierPaths:
    """Files one frontier wrote."""

    csv: Path
    md: Path
    figure: Path


@dataclass(frozen=True)
class FrontierOutcome:
    """What one frontier run did: the store, the files, the table, and how much it trained."""

    store: Path
    paths: FrontierPaths
    table: pd.DataFrame
    rows_added: int
    runs: int
    seconds: float
    backend: str


def run_frontier(
    *,
    store: str | os.PathLike[str],
    dataset: str,
    out_dir: str | os.PathLike[str] | None = None,
    method: str = "bw-sq",
    budgets: Sequence[int | str] | None = None,
    seeds: int = 5,
    seed: int = 42,
    layers: int = 5,
    neurons: int = 128,
    epochs: int = 30,
    lr: float = 1e-3,
    dropout: float = 0.0,
    decrease_factor: float = 1e-3,
    weight_decay: float = 0.0,
    jobs: int = 0,
    scheduler: str | None = None,
    connect_timeout: float = 5.0,
    device: str = "auto",
    data_dir: str | os.PathLike[str] | None = None,
    progress: ProgressSink | None = None,
    predictor: str = "mlp",
    bits: Sequence[int | str] | None = None,
    compare: bool = False,
) -> FrontierOutcome:
    """Train the frontier's models (resuming from ``store``) and write its table and plot.

    Parameters
    ----------
    store
        SQLite results store (the protocol's format); a re-run skips the trainings it holds.
    dataset, method
        A regression dataset and a threshold method that takes per-feature widths.
    out_dir
        Where ``frontier.csv``, ``frontier.md`` and ``frontier.png`` go (default:
        ``<store>_report`` next to the store).
    budgets, bits
        Code bits per sample (1..16·F), and ``"uniform"`` for n·F with n in 1..4 (the default);
        or, instead, average widths per feature (1..16), each the budget b·F.
    seeds, seed
        Repeats: repeat r splits 90/10 and trains with seed ``seed + r``.
    layers, neurons, epochs, lr, dropout, decrease_factor, weight_decay
        The one network and training every model of the frontier shares.
    jobs, scheduler, connect_timeout, device, data_dir
        As for :func:`softbits.experiments.reproduce.run_protocol`.
    predictor
        The server model of every point (:mod:`softbits.training.predictors`); ``gbdt`` with
        method ``bw-qq`` is quantile codes sent to trees, the alternative a user would pick.
    compare
        Instead of one contender, every one of :func:`compare_contenders` (``method`` with the
        MLP and with ``auto``, ``bw-qq`` with trees) on the same splits, in one table and plot.
    progress
        Receives one ``add_task`` and one ``advance`` per finished training; a context manager
        (a rich ``Progress``) is entered for the trainings only, after all validation.

    Every input is checked before the store is opened; problems are one-line
    :class:`~softbits.errors.SoftbitsError`\\ s, and nothing is written.
    """
    from softbits.experiments.executor import pending
    from softbits.experiments.session import RunSession, at_least, default_out_dir, regression_dataset, worker_count
    from softbits.experiments.settings import Setting
    from softbits.experiments.store import check_store
    from softbits.paths import check_output_dir, writing
    from softbits.training.config import check_seeds
    from softbits.training.engine import resolve_device
    from softbits.training.methods import ensemble_form, get_method
    from softbits.training.predictors import check_gbdt_installed, check_predictor, needs_gbdt

    check_predictor(predictor)
    if compare and predictor != "mlp":
        raise ConfigError("--compare runs its own predictors (the MLP, trees and auto); leave out --predictor")
    if budgets is not None and bits is not None:
        raise ConfigError("give --budgets (code bits per sample) or --bits (widths per feature), not both")
    if predictor == "ensemble":  # the alias: the ensemble method, its members predicting
        method, predictor = ensemble_form(method), "mlp"
    started = time.perf_counter()
    store = Path(store)
    the_method = get_method(method)
    contenders = compare_contenders(the_method.name) if compare else (Contender(the_method.name, predictor),)
    data_path = Path(data_dir) if data_dir is not None else None
    n_features = regression_dataset(dataset, data_path, "the frontier")
    for c in contenders:  # each takes per-feature widths at all, and every budget
        its = get_method(c.method)
        its.check_widths((its.min_bits,) * n_features)
        budget_values = budget_list(("uniform",) if budgets is None else budgets, n_features, its, bits)
    seeds = at_least(seeds, "seeds")
    check_seeds(seed, seeds)  # repeat r trains with seed + r
    jobs = worker_count(jobs)
    given = Setting(learning_rate=lr, hidden_layers=layers, hidden_neurons=neurons, num_epochs=epochs,
                    decrease_factor=decrease_factor, dropout_rate=dropout, weight_decay=weight_decay)
    for c in contenders:  # the training config checks each value and its type
        for name in (c.method, "fp"):
            replace(given.train_config(name, get_method(c.method).min_bits, seed, device), predictor=c.predictor)
    if any(needs_gbdt(c.method, c.predictor) for c in contenders):
        check_gbdt_installed()
    setting = Setting.from_mapping(given.to_dict())  # 1 and 1.0 are one setting (and one id)
    resolve_device(device)
    check_store(store)
    out = default_out_dir(store, out_dir)
    check_output_dir(out, "--out-dir")
    parallel = scheduler is not None or jobs > 1
    frontier = Frontier(dataset=dataset, contenders=contenders, n_features=n_features,
                        budgets=tuple(budget_values), setting=setting, seeds=seeds, seed=seed,
                        data_dir=str(data_path) if data_path else None, device=device,
                        threads=1 if parallel else None)
    tasks = frontier.tasks()
    with RunSession(store, jobs=jobs, scheduler=scheduler, connect_timeout=connect_timeout,
                    progress=progress) as session:
        with session.training():
            session.store.add_settings([setting])
            session.execute("frontier", pending(tasks, session.store))
        table = summarize(frontier, session.store.results())
        with writing("--out-dir"):
            paths = write_frontier(frontier, table, out)
    return FrontierOutcome(store=store, paths=paths, table=table, rows_added=session.added, runs=session.runs,
                           seconds=time.perf_counter() - started, backend=session.backend.name)


def summarize(frontier: Frontier, results: pd.DataFrame) -> pd.DataFrame:
    """One row per (contender, kind, budget) of ``frontier`` from the store's rows of its keys: by
    contender, then FP, uniform by budget, allocated by budget (:data:`FRONTIER_COLUMNS`)."""
    import json

    import numpy as np
    import pandas as pd

    from softbits.codes import COMPACT_FRAMING
    from softbits.experiments.report import t_interval
    from softbits.experiments.tasks import ResultKey

    labels = frontier.labels()
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in results.to_dict("records"):
        key = ResultKey(row["dataset"], row["method"], int(row["bits"]), row["setting_id"], row["phase"],
                        int(row["idx"]), int(row["seed"]))
        if key in labels:
            groups.setdefault(labels[key], []).append(row)
    if not groups:
        raise SoftbitsError(f"the store holds no results of this frontier ({frontier.dataset}, {frontier.label})")
    f = frontier.n_features
    order = [c.label for c in frontier.contenders]
    uniform_means: dict[tuple[str, int], float] = {}
    rows: list[dict[str, Any]] = []
    for label, kind, budget in sorted(groups, key=lambda g: (order.index(g[0]), KINDS.index(g[1]), g[2])):
        mine = groups[(label, kind, budget)]
        mean, low, high = t_interval(np.array([r["test_mse"] for r in mine], dtype=np.float64))
        if kind == "fp":
            width, code_bits, payload = FP_BITS, float(FP_BITS * f), 4 * f
        elif kind == "uniform":
            width, code_bits = budget // f, float(budget)
            payload = COMPACT_FRAMING + payload_bytes(f, budget // f)
            uniform_means[(label, budget)] = mean
        else:
            chosen = [json.loads(r["metrics"])["allocation"] for r in mine]
            width, code_bits = None, float(np.mean([c["code_bits"] for c in chosen]))
            payload = COMPACT_FRAMING + max(c["payload_bytes_per_sample"] for c in chosen)
        uniform_mean = uniform_means.get((label, budget)) if kind == "allocated" else None
        rows.append({"dataset": frontier.dataset, "method": label, "kind": kind, "budget_bits": budget,
                     "bits_per_feature": width, "code_bits_mean": code_bits, "payload_bytes": payload,
                     "n_runs": len(mine), "test_mse_mean": mean, "ci95_low": low, "ci95_high": high,
                     "vs_uniform": None if uniform_mean is None else mean / uniform_mean,
                     "vs_best_other": None, "seconds_mean": float(np.mean([r["seconds"] for r in mine]))})
    for row in rows:  # against the best other contender at the same budget
        others = [float(o["test_mse_mean"]) for o in rows if o["kind"] != "fp" and o["method"] != row["method"]
                  and o["budget_bits"] == row["budget_bits"]]
        if row["kind"] != "fp" and others:
            row["vs_best_other"] = row["test_mse_mean"] / min(others)
    table = pd.DataFrame(rows, columns=list(FRONTIER_COLUMNS))
    table["bits_per_feature"] = table["bits_per_feature"].astype("Int64")
    return table


def _number(x: Any, digits: int = 6) -> str:
    """``x`` to ``digits`` significant digits; a dash where there is no number."""
    import pandas as pd

    return "—" if x is None or pd.isna(x) else f"{x:.{digits}g}"


def _markdown(frontier: Frontier, table: pd.DataFrame) -> str:
    """A heading that says what ran, then one table row per CSV row."""
    import pandas as pd

    s = frontier.setting
    lines = [f"# Frontier: {frontier.dataset} · {frontier.label}", "",
             f"Test MSE (standardized target) against code bits per sample: mean over "
             f"{frontier.seeds} seed{'s' if frontier.seeds > 1 else ''} ({frontier.seed}.."
             f"{frontier.seed + frontier.seeds - 1}, a fresh 90/10 split each, the same for every "
             f"contender) with the 95% t-interval. Every network: {s.hidden_layers}×{s.hidden_neurons}, "
             f"{s.num_epochs} epochs, lr {s.learning_rate:g}, dropout {s.dropout_rate:g}, decrease factor "
             f"{s.decrease_factor:g}, weight decay {s.weight_decay:g}. Payload bytes: one sample in the "
             f"compact frame (FP: float32 features); allocated: the widest choice over the seeds. vs "
             f"uniform: allocated mean / the same method's uniform mean at the same budget; vs best "
             f"other: mean / the least mean of the other methods at the same budget.", "",
             "| method | kind | budget bits | bits per feature | code bits (mean) | payload bytes | runs "
             "| test MSE | 95% CI | vs uniform | vs best other |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in table.to_dict("records"):
        width = "mixed" if pd.isna(r["bits_per_feature"]) else str(r["bits_per_feature"])
        lines.append(f"| {r['method']} | {r['kind']} | {r['budget_bits']} | {width} | "
                     f"{_number(r['code_bits_mean'], 4)} | {r['payload_bytes']} | {r['n_runs']} | "
                     f"{_number(r['test_mse_mean'])} | [{_number(r['ci95_low'])}, {_number(r['ci95_high'])}] | "
                     f"{_number(r['vs_uniform'], 4)} | {_number(r['vs_best_other'], 4)} |")
    return "\n".join(lines) + "\n"


def _figure(frontier: Frontier, table: pd.DataFrame, path: Path) -> None:
    """Test MSE against code bits per sample, one colour per contender: uniform points with CI
    bars, the allocated curve with its CI band, FP as a dashed line with its band."""
    import numpy as np

    try:
        import matplotlib
    except ImportError:
        raise SoftbitsError("frontier.png needs matplotlib: pip install 'softbits[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, c in enumerate(frontier.contenders):
        colour = colours[i % len(colours)]
        mine = table[table["method"] == c.label]
        fp = mine[mine["kind"] == "fp"]
        if not fp.empty:
            r = fp.iloc[0]
            ax.axhline(r["test_mse_mean"], color=colour, linestyle="--", label=f"FP {c.predictor} ({r['budget_bits']} bits)")
            if np.isfinite(r["ci95_low"]) and np.isfinite(r["ci95_high"]):
                ax.axhspan(r["ci95_low"], r["ci95_high"], color=colour, alpha=0.08)
        allocated = mine[mine["kind"] == "allocated"]
        if not allocated.empty:
            ax.plot(allocated["budget_bits"], allocated["test_mse_mean"], marker="o", color=colour,
                    label=f"allocated ({c.label})")
            ok = np.isfinite(allocated["ci95_low"]) & np.isfinite(allocated["ci95_high"])
            if ok.any():
                ax.fill_between(allocated["budget_bits"][ok], allocated["ci95_low"][ok], allocated["ci95_high"][ok],
                                color=colour, alpha=0.2)
        uniform = mine[mine["kind"] == "uniform"]
        if not uniform.empty:
            below = (uniform["test_mse_mean"] - uniform["ci95_low"]).fillna(0)
            above = (uniform["ci95_high"] - uniform["test_mse_mean"]).fillna(0)
            ax.errorbar(uniform["budget_bits"], uniform["test_mse_mean"], yerr=[below, above], fmt="s",
                        capsize=4, color=colour, mfc="white",
                        label=f"uniform ({c.label}, n bits × {frontier.n_features})")
            if len(frontier.contenders) == 1:
                for r in uniform.to_dict("records"):
                    ax.annotate(f"n={r['bits_per_feature']}", (r["budget_bits"], r["test_mse_mean"]),
                                textcoords="offset points", xytext=(6, 6), fontsize="small")
    quantized = table[table["kind"] != "fp"]
    ax.set_xticks(sorted(quantized["budget_bits"].unique()))
    ax.set_xlabel("payload: code bits per sample (budget)")
    ax.set_ylabel("test MSE (standardized target)")
    ax.set_title(f"{frontier.dataset} · {frontier.seeds} seed{'s' if frontier.seeds > 1 else ''}")
    if (table["test_mse_mean"] > 0).all():
        ax.set_yscale("log")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_frontier(frontier: Frontier, table: pd.DataFrame, out: Path) -> FrontierPaths:
    """Write ``frontier.csv``, ``frontier.md`` and ``frontier.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = FrontierPaths(out / "frontier.csv", out / "frontier.md", out / "frontier.png")
    table.to_csv(paths.csv, index=False)
    paths.md.write_text(_markdown(frontier, table), encoding="utf-8")
    _figure(frontier, table, paths.figure)
    return paths
