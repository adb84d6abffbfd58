"""Shared fixtures: the offline data directory and small in-memory datasets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
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


def save_diabetes_models(directory: Path, methods: tuple[str, ...], *, seed: int,
                         n_rows: int):
    """Tiny saved models (3 bits, one hidden layer) on sklearn's diabetes data, and the first
    ``n_rows`` raw rows with their target as ``rows.csv`` (returned too)."""
    import pandas as pd

    from softbits import TrainConfig, load_dataset, train_dataset

    ds = load_dataset("diabetes")
    for method in methods:
        cfg = TrainConfig(method=method, bits=3, layers=1, neurons=8, epochs=2, lr=0.05,
                          device="cpu", seed=seed)
        train_dataset(ds, cfg).save(directory / f"{method}.safetensors")
    frame = pd.DataFrame(ds.X[:n_rows], columns=ds.feature_names)
    frame[ds.target_name] = ds.y[:n_rows]
    frame.to_csv(directory / "rows.csv", index=False)
    return frame


@pytest.fixture(scope="session")
def diabetes_models():
    """:func:`save_diabetes_models`, for module-scoped fixtures that write models once."""
    return save_diabetes_models


def run_main(capsys, *args) -> tuple[int, str, str]:
    """``softbits ARGS`` in-process: exit code, stdout, stderr."""
    from softbits.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_train_refuses(capsys, save: Path, args: list[str], message: str) -> None:
    """``softbits train`` on diabetes with ``args`` exits 2 with one line holding ``message``
    and writes no model to ``save`` (the check every bad-option table of the tests shares)."""
    code, _, err = run_main(capsys, "train", "--dataset", "diabetes", "--epochs", "2", "--layers", "1",
                            "--neurons", "8", "--device", "cpu", *args, "--save", str(save))
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not save.exists()


def start_server(model: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen, dict[str, str]]:
    """``softbits serve`` on loopback port 0 (the OS picks; no race with other tests); returns
    the process and its ready URLs, which carry the ports actually bound."""
    proc = subprocess.Popen([sys.executable, "-m", "softbits", "serve", str(model), "--http",
                             "127.0.0.1:0", "--coap", "127.0.0.1:0", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # the server prints one "ready {...}" line once both are bound
    if not line.startswith("ready "):
        proc.kill()
        raise AssertionError(f"server did not start: {line}{proc.stderr.read()}")
    urls = json.loads(line[len("ready "):])
    zero = [url for url in (urls["http"], urls["coap"]) if url.split("//")[1].split("/")[0].endswith(":0")]
    if zero:
        proc.kill()
        raise AssertionError(f"ready line names port 0: {zero}")
    return proc, urls


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def pad_mask(spec) -> np.ndarray:
    """Per sample byte, the bits codes may use: the last byte's padding bits must stay 0."""
    mask = np.full(spec.sample_bytes, 0xFF, dtype=np.uint8)
    used = spec.n_features * spec.bits % 8
    if used:
        mask[-1] = (1 << used) - 1
    return mask
