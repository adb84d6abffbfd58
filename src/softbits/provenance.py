"""What a result was computed with: versions, machine and device, recorded with every result."""

from __future__ import annotations

import platform
import sys
from functools import lru_cache
from typing import Any

import torch

__all__ = ["cpu_model", "device_name", "machine_info", "runtime_info"]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()}"


@lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    import numpy
    import sklearn

    from softbits import __version__

    return {
        "softbits": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def runtime_info(device: torch.device | None = None) -> dict[str, Any]:
    info: dict[str, Any] = dict(_versions())
    if device is not None:
        info["device"] = device_name(device)
    return info


def cpu_model() -> str:
    """The processor's marketing name where Linux tells it, else what ``platform`` knows."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(*packages: str) -> dict[str, Any]:
    """The machine a benchmark ran on, with the versions of the ``packages`` it exercised."""
    import os
    from importlib.metadata import PackageNotFoundError, version

    info: dict[str, Any] = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(),
                            "platform": platform.platform(), "python": platform.python_version()}
    for name in packages:
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = None
    return info
