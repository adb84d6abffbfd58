"""Stacks of protocol tasks: trainings of one architecture that train as one stacked model.

``reproduce --stack K|auto`` groups the pending tasks whose trainings share what a stack must
share (dataset, method, bits, layers, neurons, batch size, device: see
:func:`softbits.training.stacked.can_stack`) and differ in anything else (fold or repeat, seed, learning
rate, dropout, epochs, temperature decay), and cuts each group into stacks of at most K. A stack
runs as one :func:`softbits.training.stacked.fit_stacked` call and yields one :class:`TaskResult` per
member, so the store, resume (a killed stack loses only its own members), progress and
provenance stay per training; the rows record ``stacked`` = the stack's size.

Sizes: an explicit K must fit the device's memory (the bound of
:func:`softbits.training.train.training_memory`, checked before any training); ``auto`` takes
:func:`auto_size` per group and shrinks it to what fits. Methods without a stacked training
(LSQ, LLT, ensembles) run one at a time, and :func:`plan` says so in a note; so do tasks with a
payload budget, whose allocation probes and then trains at widths of its own.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch

from softbits.errors import ConfigError
from softbits.experiments.tasks import ResultKey, Task, TaskResult, evaluate, prepare, run
from softbits.training.config import TrainConfig

__all__ = ["CPU_STACK", "CUDA_STACK", "StackSize", "StackTask", "Unit", "auto_size", "check_stack",
           "plan", "run_unit"]

StackSize = int | Literal["auto"]

#: CPU stack size by hidden width, from benchmarks/results/stack_cpu.json (cpu_act, Bw-SQ, 1 torch
#: thread): 8 members train 1.5× the trainings per hour of one at a time at 32 neurons, 4 members
#: 1.3× at 128; wider networks are compute-bound on a CPU and gain nothing
CPU_STACK = ((64, 8), (256, 4))
#: CUDA stack size by hidden width, from benchmarks/results/gpu_h200_2026-11-27/stack_cuda_*.json
#: (H200): up to 1024 neurons one stacked step of 64–1024 members costs a few single steps (the
#: epoch loop runs 9–146× the model-epochs per second of one at a time); at 4096 neurons a
#: training is compute-bound and two stacked ran 0.9× as fast as one after the other
CUDA_STACK = ((1024, 1024),)
#: share of the free device memory a stack may plan to use (the bound is a lower bound)
MEMORY_SHARE = 0.5
#: why a task with a payload budget trains alone
_ALLOCATED = "an allocation trains a probe, then its own widths per training"


@dataclass(frozen=True)
class StackTask:
    """Tasks that train as one stacked model; each keeps its own split, seed and settings."""

    tasks: tuple[Task, ...]

    def keys(self) -> list[ResultKey]:
        return [k for t in self.tasks for k in t.keys()]


Unit = Task | StackTask


def check_stack(value: object) -> StackSize:
    """``--stack``: a positive integer (1 = no stacking) or ``auto``; else a one-line error."""
    given = value
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        try:
            value = int(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"--stack must be a positive integer or auto, got {given!r}")
    return value


def auto_size(config: TrainConfig, device: torch.device) -> int:
    """Members per stack where stacking was measured to help (before the memory cap)."""
    for widest, size in CUDA_STACK if device.type == "cuda" else CPU_STACK:
        if config.neurons <= widest:
            return size
    return 1


def _input_width(config: TrainConfig, n_features: int) -> int:
    """The network's input width: the quantizer's output (F·(2^n − 1) for bitwise) or F, from
    the method's real quantizer in front of a one-neuron network (cheap at any width)."""
    from softbits.training.train import build_model

    module = build_model(replace(config, layers=1, neurons=1, members=1), n_features, 1)
    return module.quantizer.out_features if module.quantizer is not None else n_features


@functools.cache
def _member_bytes(d_in: int, layers: int, neurons: int, batch_size: int) -> int:
    """The memory bound of one member. It builds the network on the meta device (milliseconds),
    and a protocol has thousands of stack groups but a few hundred network shapes."""
    from softbits.training.train import training_memory

    config = TrainConfig(layers=layers, neurons=neurons, batch_size=batch_size, device="cpu")
    return training_memory(config, d_in, 1, 1, batch_rows=batch_size)[0]


def plan(tasks: Sequence[Task], stack: StackSize, *, n_features: Callable[[str], int]
         ) -> tuple[list[Unit], list[str]]:
    """Cut ``tasks`` into stacks (and single tasks), and notes on what runs one at a time.

    ``n_features(dataset)`` gives the data's width (for the memory bound). An explicit ``stack``
    that cannot fit the device's memory is a :class:`ConfigError` before any training.
    """
    from softbits.training.engine import resolve_device
    from softbits.training.stacked import StackCheck, can_stack
    from softbits.training.train import available_memory

    if stack == 1 or not tasks:
        return list(tasks), []
    groups: dict[tuple[object, ...], list[tuple[Task, TrainConfig]]] = defaultdict(list)
    input_widths: dict[tuple[object, ...], int] = {}
    free_memory: dict[torch.device, int | None] = {}
    units: list[Unit] = []
    alone: dict[str, tuple[int, str]] = {}
    for task in tasks:
        config = task.setting.train_config(task.train_method, task.train_bits, task.seed, task.device)
        if task.predictor != "mlp":
            config = replace(config, predictor=task.predictor)
        check = can_stack([config]) if task.budget is None else StackCheck(False, _ALLOCATED)
        if not check:
            label = config.method if task.budget is None else f"{config.method} allocated"
            count, _ = alone.get(label, (0, check.reason))
            alone[label] = (count + 1, check.reason)
            units.append(task)
            continue
        key = (task.dataset, config.method, config.bits, config.layers, config.neurons,
               config.batch_size, config.task, config.device)
        groups[key].append((task, config))
    for members in groups.values():
        # longest first: a stack runs as long as its longest member, so members of similar
        # epochs share stacks (a stable sort keeps the protocol's order otherwise)
        members.sort(key=lambda tc: -tc[1].epochs)
        config, dataset = members[0][1], members[0][0].dataset
        device = resolve_device(config.device)
        if device not in free_memory:
            free_memory[device] = available_memory(device)
        free = free_memory[device]
        shape = (config.method, config.bits, config.init, config.bits_per_feature, dataset)
        if shape not in input_widths:
            input_widths[shape] = _input_width(config, n_features(dataset))
        one = _member_bytes(input_widths[shape], config.layers, config.neurons, config.batch_size)
        # the most members whose bound fits MEMORY_SHARE of the free memory
        cap = max(size for _, size in CUDA_STACK) if free is None else max(1, int(free * MEMORY_SHARE) // one)
        if stack == "auto":
            size = min(auto_size(config, device), cap)
        else:
            size = stack
            if size > cap and free is not None:
                raise ConfigError(
                    f"a stack of {size} trainings of {config.layers}x{config.neurons} ({config.method}, "
                    f"{dataset}) needs at least {size * one / 2**30:.1f} GiB, but {device} "
                    f"has {free / 2**30:.1f} GiB free; use --stack {cap} or less, or --stack auto")
        for start in range(0, len(members), size):
            chunk = tuple(t for t, _ in members[start:start + size])
            units.append(chunk[0] if len(chunk) == 1 else StackTask(chunk))
    notes = [f"{count} {label} training{'s' if count > 1 else ''} run one at a time: {reason}"
             for label, (count, reason) in alone.items()]
    return units, notes


def _run_stack(stack: StackTask) -> list[TaskResult]:
    from softbits.training.stacked import fit_stacked

    start = time.perf_counter()
    prepared = [prepare(t) for t in stack.tasks]
    ds = prepared[0][0]
    fitted = fit_stacked([c for _, _, c in prepared], [(s.X_train, s.y_train) for _, s, _ in prepared],
                         task=ds.task)
    return [evaluate(t, d, s, f, start, stacked=len(stack.tasks))
            for t, (d, s, _), f in zip(stack.tasks, prepared, fitted, strict=True)]


def run_unit(unit: Unit) -> list[TaskResult]:
    """Run one task, or one stack of tasks; pure apart from the clock (local workers and Dask)."""
    if isinstance(unit, StackTask):
        return _run_stack(unit)
    return [run(unit)]
