"""What a result was computed with: versions, machine and device, recorded with every result."""

from __future__ import annotations

import platform
import sys
from functools import lru_cache
from typing import Any

import torch

__all__ = ["runtime_info", "device_name"]


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
