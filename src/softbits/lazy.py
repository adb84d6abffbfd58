"""Lazy public names for the package ``__init__`` modules: ``softbits --help`` and the error
paths must not pay for importing torch and scikit-learn."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(namespace: dict[str, Any], exports: Mapping[str, str],
                 listed: list[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of the package whose globals are ``namespace``.

    ``exports`` maps each lazy name to the module that defines it: a submodule's name
    (``"quantizers"``) or an absolute one (``"softbits.data"``). A name is imported on first
    use and then kept in the package's globals. ``listed`` is what ``dir()`` shows.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = module if module.startswith("softbits.") else f"{package}.{module}"
        value = getattr(importlib.import_module(target), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(listed)

    return __getattr__, __dir__
