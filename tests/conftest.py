"""Shared fixtures: the offline data directory and small in-memory datasets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path | None:
    env = os.environ.get("SOFTBITS_DATA_DIR")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (candidate / "fried.csv.gz").exists():
            return candidate.resolve()
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _data_dir()
    if d is None:
        pytest.skip("offline datasets not found: set SOFTBITS_DATA_DIR to ../shared/data")
    return d


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for CLI subprocesses: data dir set, cache in tmp, no colour."""
    env = dict(os.environ)
    d = _data_dir()
    if d is not None:
        env["SOFTBITS_DATA_DIR"] = str(d)
    env["SOFTBITS_CACHE_DIR"] = str(tmp_path / "cache")
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


@pytest.fixture
def softbits_cmd() -> list[str]:
    return [sys.executable, "-m", "softbits"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
