"""Hostile inputs to data loading, training settings, model files and the encoder backend.

Each test reproduces a way a user (or an edited file, or a locked-down host) used to get a
traceback or silently wrong numbers; the answer must be one line and exit code 2, or it must work.
Most CLI calls run in-process (``softbits.cli.main``); the read-only host and the memory bound
run the real console entry point in a subprocess.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from softbits import TrainConfig, TrainedModel
from softbits.data import Standardizer, load_table, scale_split, split_and_scale
from softbits.device.predict import read_features
from softbits.errors import ConfigError, DataError, SoftbitsError
from softbits.nn.quantizers import build_quantizer
from softbits.training.engine import resolve_device

from conftest import REPO, run_main

TINY = ("bw-sq", "fp", "llt4", "pr-mq")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, diabetes_models) -> Path:
    """Tiny saved models of :data:`TINY` and ``rows.csv`` (raw diabetes rows with the target)."""
    d = tmp_path_factory.mktemp("hardening")
    diabetes_models(d, TINY, seed=0, n_rows=50)
    return d


def one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit code 2, a single non-empty stderr line, no traceback, every needle in it."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def edit_model(src: Path, dst: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    """Copy a model file with its metadata header changed by ``edit`` (tensors unchanged).

    ``edit`` changes the header in place and returns None, or returns a whole new header."""
    with safe_open(str(src), framework="pt") as f:
        header = json.loads(f.metadata()["softbits"])
    replaced = edit(header)
    header = header if replaced is None else replaced
    save_file(load_file(str(src)), str(dst), metadata={"softbits": json.dumps(header)})
    return dst


# ---- 1. no writable numba cache --------------------------------------------------------------

def _read_only_host(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """A copy of the package where numba finds no cache directory at all.

    We run as root, so chmod cannot make a directory read-only; instead every place numba's
    locators try (``NUMBA_CACHE_DIR``, the package's ``__pycache__``, ``~/.cache``) is a path
    through a regular file, so creating the directory fails as it does on a read-only mount.
    """
    root = tmp_path / "site"
    shutil.copytree(REPO / "src" / "softbits", root / "softbits",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "softbits" / "device" / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    env = {k: v for k, v in env.items() if k != "XDG_CACHE_HOME"}
    env.update(PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1", HOME=str(blocker),
               NUMBA_CACHE_DIR=str(blocker / "numba"))
    return env


def test_encode_and_predict_run_without_a_writable_numba_cache(tiny, tmp_path, cli_env, capsys):
    pytest.importorskip("numba")
    env = _read_only_host(tmp_path, cli_env)
    model, rows = tiny / "bw-sq.safetensors", tiny / "rows.csv"
    expected = {cmd: run_main(capsys, cmd, model, "--input", rows, *extra)[1]
                for cmd, extra in (("predict", ()), ("encode", ("--format", "hex")))}
    assert all(len(out.splitlines()) == 50 for out in expected.values())
    locked = subprocess.run([sys.executable, "-m", "softbits", "predict", str(model), "--input",
                             str(rows)], env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert locked.returncode == 0 and locked.stdout == expected["predict"], locked.stderr
    # encode through the CLI, then large batches that compile the kernels (uncached) and must
    # agree with the numpy path; the package in use must be the copy
    script = (
        "import sys, numpy as np, softbits\n"
        f"assert softbits.__file__.startswith({str(tmp_path)!r}), softbits.__file__\n"
        "from softbits.cli import main\n"
        "from softbits.device.encode import encode_packed\n"
        "from softbits.device.spec import EncoderSpec\n"
        "try:\n"
        f"    main(['encode', {str(model)!r}, '--input', {str(rows)!r}, '--format', 'hex'])\n"
        "except SystemExit as exc:\n"
        "    sys.exit(exc.code)\n"
        "rng = np.random.default_rng(0)\n"
        "for bits in (3, 10):\n"
        "    t = np.sort(rng.standard_normal((4, (1 << bits) - 1)).astype(np.float32), axis=1)\n"
        "    spec = EncoderSpec(('a', 'b', 'c', 'd'), bits, t)\n"
        "    x = rng.standard_normal((300, 4))\n"
        "    assert (encode_packed(spec, x, 'numba') == encode_packed(spec, x, 'numpy')).all()\n")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0 and run.stdout == expected["encode"], run.stderr


# ---- 2. huge finite values -------------------------------------------------------------------

def _huge_frames() -> dict[str, tuple[pd.DataFrame, str]]:
    rng = np.random.default_rng(0)
    n = 200
    base = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    target = base["a"] + rng.normal(size=n)
    return {
        "column at 1e308": (base.assign(big=np.full(n, 1e308) * rng.uniform(0.5, 1, n), y=target), "big"),
        "column near 1e307": (base.assign(big=rng.uniform(-1, 1, n) * 1e307, y=target), "big"),
        "column beyond float32": (base.assign(big=rng.uniform(1, 2, n) * 1e39, y=target), "big"),
        "target around 1e200": (base.assign(y=(2 + target) * 1e200), "y"),
    }


@pytest.mark.parametrize("case", sorted(_huge_frames()))
def test_huge_values_are_refused_naming_the_column(case, tmp_path, capsys):
    frame, column = _huge_frames()[case]
    path = tmp_path / "huge.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=f"'{column}'"):
        split_and_scale(load_table(path), seed=0)
    saved = tmp_path / "m.safetensors"
    code, _, err = run_main(capsys, "train", "--data", path, "--method", "bw-sq", "--bits", "2",
                            "--layers", "1", "--neurons", "4", "--epochs", "1", "--device", "cpu",
                            "--save", saved)
    one_line_error(code, err, f"'{column}'")
    assert not saved.exists()


def test_values_that_overflow_float32_after_scaling_are_refused():
    X_train = np.zeros((20, 2))
    X_train[:, 0] = np.arange(20)
    X_train[:, 1] = np.arange(20) * 1e-150  # a nearly constant training column
    X_test = np.ones((3, 2))  # 1.0 is ~1e149 of its standard deviations away
    y = np.arange(20.0)
    with pytest.raises(DataError, match="'x1' scales to .*float32"):
        scale_split(X_train, y, X_test, y[:3], "regression", feature_names=["x0", "x1"])
    with pytest.raises(DataError, match="column 1"):
        scale_split(X_train, y, X_test, y[:3], "regression")
    with pytest.raises(DataError, match="'price' scales to"):
        scale_split(X_train[:, :1], y * 1e-150, X_test[:, :1], np.ones(3), "regression",
                    target_name="price")
    with pytest.raises(DataError, match="'x1' holds 1e\\+39"):
        scale_split(X_train, y, X_test * [1, 1e39], y[:3], "regression", feature_names=["x0", "x1"])


def test_standardizer_refuses_non_finite_scaling():
    with pytest.raises(DataError, match="column 1"):
        Standardizer.fit(np.array([[0.0, 1e308], [1.0, 1.7e308], [2.0, 1.5e308]]))
    with pytest.raises(DataError, match="'v'"):
        Standardizer.fit(np.array([[1e200], [-1e200]]), names=["v"])


def test_save_refuses_non_finite_models(tiny, tmp_path):
    model = TrainedModel.load(tiny / "bw-sq.safetensors")
    model.metrics["test_mse"] = math.nan
    with pytest.raises(SoftbitsError, match="test_mse"):
        model.save(tmp_path / "nan-metric.safetensors")
    assert not (tmp_path / "nan-metric.safetensors").exists()
    model = TrainedModel.load(tiny / "bw-sq.safetensors")
    with torch.no_grad():
        model.module.network[0].weight[0, 0] = math.inf
    with pytest.raises(SoftbitsError, match=r"network\.0\.weight"):
        model.save(tmp_path / "inf-weight.safetensors")
    model = TrainedModel.load(tiny / "fp.safetensors")
    model.y_scaler = Standardizer(np.array([math.inf]), np.array([1.0]))
    with pytest.raises(SoftbitsError, match="y_scaler"):
        model.save(tmp_path / "inf-scaler.safetensors")
    assert not list(tmp_path.glob("*.safetensors"))


def test_diverged_training_is_not_saved(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "y"])
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    saved = tmp_path / "m.safetensors"
    code, _, err = run_main(capsys, "train", "--data", path, "--method", "fp", "--layers", "1",
                            "--neurons", "8", "--epochs", "3", "--lr", "1e30", "--device", "cpu",
                            "--save", saved)
    one_line_error(code, err, "not finite")
    assert not saved.exists()


# ---- 3. and 4. edited model files ------------------------------------------------------------

def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    keys = path.split(".")

    def edit(header: dict[str, Any]) -> None:
        node = header
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
    return edit


def _all(*edits: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(header: dict[str, Any]) -> None:
        for one in edits:
            one(header)
    return edit


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def edit(header: dict[str, Any]) -> None:
        node = header
        for key in parents:
            node = node[key]
        del node[last]
    return edit


def _shorten(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def edit(header: dict[str, Any]) -> None:
        node = header
        for key in parents:
            node = node[key]
        node[last] = node[last][:-1]
    return edit


BAD_HEADERS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "wrong quantizer bits": ("bw-sq", _set("quantizer.config.bits", 4)),
    "bits beyond 16": ("bw-sq", _set("quantizer.config.bits", 40)),
    "config bits differ": ("bw-sq", _set("config.bits", 5)),
    "bits changed everywhere": ("pr-mq", _all(_set("quantizer.config.bits", 4), _set("config.bits", 4))),
    "negative layers": ("bw-sq", _set("network.layers", -1)),
    "more layers than tensors": ("fp", _set("network.layers", 10**9)),
    "unknown quantizer kind": ("bw-sq", _set("quantizer.kind", "nope")),
    "unknown quantizer option": ("bw-sq", _set("quantizer.config.colour", "red")),
    "quantizer config not a dict": ("llt4", _set("quantizer.config", [10, 3])),
    "missing x_scaler": ("bw-sq", _delete("x_scaler")),
    "missing network.d_in": ("fp", _delete("network.d_in")),
    "missing quantizer n_features": ("llt4", _delete("quantizer.config.n_features")),
    "missing config": ("pr-mq", _delete("config")),
    "short x_scaler mean": ("bw-sq", _shorten("x_scaler.mean")),
    "short feature names": ("fp", _shorten("feature_names")),
    "two-value y_scaler": ("fp", _set("y_scaler.scale", [1.0, 2.0])),
    "negative scale": ("bw-sq", _set("x_scaler.scale.0", -1.0)),
    "NaN mean": ("fp", _set("x_scaler.mean.0", math.nan)),
    "text scale": ("bw-sq", _set("x_scaler.scale.0", "abc")),
    "text neurons": ("fp", _set("network.neurons", "8")),
    "text bits": ("pr-mq", _set("quantizer.config.bits", "3")),
    "text granularity": ("llt4", _set("quantizer.config.granularity", "4")),
    "text lr": ("fp", _set("config.lr", "fast")),
    "bool trainable as text": ("bw-sq", _set("quantizer.config.trainable", "yes")),
    "unknown task": ("fp", _set("task", "banana")),
    "classification without classes": ("fp", _set("task", "classification")),
    "feature names not text": ("fp", _set("feature_names", 10)),
    "quantizer dropped": ("bw-sq", _set("quantizer", None)),
    "header a list": ("fp", lambda header: [header]),
    "method without quantizer": ("fp", _set("config.method", "bw-sq")),
    "wider network input": ("llt4", _set("network.d_in", 11)),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_edited_model_files_are_one_line_errors(case, tiny, tmp_path, capsys):
    method, edit = BAD_HEADERS[case]
    model = edit_model(tiny / f"{method}.safetensors", tmp_path / "edited.safetensors", edit)
    with pytest.raises(SoftbitsError, match="is not a valid softbits model file"):
        TrainedModel.load(model)
    code, _, err = run_main(capsys, "predict", model, "--input", tiny / "rows.csv")
    one_line_error(code, err, "is not a valid softbits model file (")
    code, _, err = run_main(capsys, "export", model, "--out-dir", tmp_path / "out")
    one_line_error(code, err, "is not a valid softbits model file (")


def test_non_finite_tensors_in_a_model_file_are_refused(tiny, tmp_path):
    tensors = load_file(str(tiny / "bw-sq.safetensors"))
    with safe_open(str(tiny / "bw-sq.safetensors"), framework="pt") as f:
        meta = f.metadata()
    tensors["quantizer.thresholds"][0, 0] = math.nan
    path = tmp_path / "nan.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(SoftbitsError, match="is not a valid softbits model file.*quantizer.thresholds"):
        TrainedModel.load(path)


def _limited(gib: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))
    return limit


def _consistent_50000_features(header: dict[str, Any]) -> None:
    """A header that agrees with itself on 50000 features at 16 bits (the tensors do not)."""
    n = 50000
    header["quantizer"]["config"].update(n_features=n, bits=16)
    header["config"]["bits"] = 16
    header["network"]["d_in"] = n * 65535
    header["feature_names"] = [f"f{i}" for i in range(n)]
    header["x_scaler"] = {"mean": [0.0] * n, "scale": [1.0] * n}


GREEDY_HEADERS = {
    "50000 features at 16 bits": _all(_set("quantizer.config.n_features", 50000),
                                      _set("quantizer.config.bits", 16), _set("config.bits", 16)),
    "consistent header, tiny tensors": _consistent_50000_features,
    "wide network": _all(_set("network.neurons", 10**6), _set("network.layers", 2)),
}


def test_a_small_model_file_cannot_demand_gigabytes(tiny, tmp_path, cli_env):
    """Under a 3 GiB address-space limit each file must be refused, not allocated (13 GB, 4 TB)."""
    paths = [edit_model(tiny / "bw-sq.safetensors", tmp_path / f"greedy{i}.safetensors", edit)
             for i, edit in enumerate(GREEDY_HEADERS.values())]
    assert paths[0].stat().st_size < 8192 and paths[2].stat().st_size < 8192
    run = subprocess.run([sys.executable, "-m", "softbits", "predict", str(paths[0]), "--input",
                          str(tiny / "rows.csv")], env=cli_env, capture_output=True, text=True,
                         preexec_fn=_limited(3), timeout=120, check=False)
    one_line_error(run.returncode, run.stderr, "is not a valid softbits model file (")
    script = ("import sys\n"
              "from softbits.training.trained_model import TrainedModel\n"
              "from softbits.errors import SoftbitsError\n"
              "for path in sys.argv[1:]:\n"
              "    try:\n"
              "        TrainedModel.load(path)\n"
              "    except SoftbitsError as exc:\n"
              "        print(exc)\n")
    run = subprocess.run([sys.executable, "-c", script, *map(str, paths[1:])], env=cli_env,
                         capture_output=True, text=True, preexec_fn=_limited(3), timeout=120,
                         check=False)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 2 and all("is not a valid softbits model file (" in line for line in lines), lines


@pytest.mark.parametrize("kind,config,match", [
    ("nope", {"n_features": 2, "bits": 2}, "unknown quantizer kind 'nope'"),
    ("bitwise", {"n_features": 2}, "missing bits"),
    ("bitwise", {"n_features": 2, "bits": 2, "colour": 1}, "unknown option colour"),
    ("bitwise", {"n_features": 0, "bits": 2}, "n_features must be"),
    ("bitwise", {"n_features": 2, "bits": 17}, "bits must be"),
    ("bitwise", {"n_features": 2, "bits": True}, "bits must be"),
    ("bitwise", {"n_features": 2, "bits": 2, "soft": "no"}, "soft must be true or false"),
    ("soft", {"n_features": 2, "bits": 2, "init": "magic"}, "init must be one of"),
    ("llt", {"n_features": 2, "bits": 2, "granularity": 2.5}, "granularity must be"),
    ("lsq", [2, 2], "config must be a mapping"),
])
def test_build_quantizer_validates_its_config(kind, config, match):
    with pytest.raises(ConfigError, match=match):
        build_quantizer(kind, config)


# ---- 5. devices ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mps", "meta", "xla", "cpu:0", "cuda:-1", "cuda:x", "CUDA", "", "cuda:0:1"])
def test_only_auto_cpu_cuda_and_cuda_n_are_devices(name):
    with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N"):
        resolve_device(name)


def test_missing_cuda_index_is_a_config_error():
    with pytest.raises(ConfigError, match="cuda:99"):
        resolve_device("cuda:99")


@pytest.mark.parametrize("device", ["mps", "meta"])
def test_cli_device_refusal_is_one_line(device, capsys):
    code, _, err = run_main(capsys, "train", "--dataset", "diabetes", "--device", device,
                            "--epochs", "1", "--layers", "1", "--neurons", "4")
    one_line_error(code, err, "auto, cpu, cuda or cuda:N")


# ---- 6. silent data traps --------------------------------------------------------------------

def _mostly_numeric_target(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    frame["price"] = (frame["a"] * 3 + rng.normal(size=200)).round(3).astype(object)
    frame.loc[57, "price"] = "12,5"
    frame.loc[120, "price"] = "n.a."
    path = tmp_path / "typo.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_typo_in_a_numeric_target_is_not_a_classification(tmp_path, capsys):
    path = _mostly_numeric_target(tmp_path)
    with pytest.raises(DataError, match=r"'price'.*2 .*'12,5'.*row 58"):
        load_table(path)
    with pytest.raises(DataError, match=r"'price'.*'12,5'.*row 58"):
        load_table(path, task="regression")
    assert load_table(path, task="classification").task == "classification"
    code, _, err = run_main(capsys, "train", "--data", path, "--epochs", "1", "--device", "cpu")
    one_line_error(code, err, "'price'", "'12,5'", "row 58")


def test_a_text_target_is_classification_and_says_so(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    frame["kind"] = np.where(frame["a"] > 0, "up", "down")
    frame.loc[3, "kind"] = "7"  # one number among labels stays a label
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    ds = load_table(path)
    assert ds.task == "classification" and ds.classes == ["7", "down", "up"]
    assert any("classification" in note and "'kind'" in note for note in ds.notes)


def test_rows_missing_a_feature_are_not_read_by_position(tiny, tmp_path, capsys):
    rows = pd.read_csv(tiny / "rows.csv").drop(columns=["bmi"])  # 9 features + the target
    path = tmp_path / "short.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(DataError, match="missing.*bmi"):
        read_features(path, ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"])
    for command in ("predict", "encode"):
        extra = ["--format", "hex"] if command == "encode" else []
        code, _, err = run_main(capsys, command, tiny / "bw-sq.safetensors", "--input", path, *extra)
        one_line_error(code, err, "bmi")
    renamed = pd.read_csv(tiny / "rows.csv").drop(columns=["target"])
    renamed.columns = [f"x{i}" for i in range(10)]  # no model name at all: read by position
    renamed.to_csv(tmp_path / "positional.csv", index=False)
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    np.testing.assert_array_equal(read_features(tmp_path / "positional.csv", names), renamed.to_numpy())
    only_target = pd.DataFrame({"target": [1.0, 2.0]})
    only_target.to_csv(tmp_path / "target.csv", index=False)
    with pytest.raises(DataError, match="target"):
        read_features(tmp_path / "target.csv", ["x"], target_name="target")


FLOAT_OPTIONS = ["lr", "weight_decay", "dropout", "decrease_factor", "val_fraction"]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("option", FLOAT_OPTIONS)
def test_non_finite_float_settings_are_refused(option, value):
    with pytest.raises(ConfigError, match=option.replace("_", "[_ ]")):
        TrainConfig(**{option: value})


@pytest.mark.parametrize("kwargs,match", [
    (dict(layers="5"), "layers must be an integer"),
    (dict(epochs=2.5), "epochs must be an integer"),
    (dict(batch_size=True), "batch_size must be an integer"),
    (dict(lr="0.1"), "lr must be a number"),
    (dict(schedule=["exponential"]), "schedule must be text"),
])
def test_settings_of_the_wrong_type_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_numpy_scalars_are_valid_settings():
    cfg = TrainConfig(bits=np.int64(3), layers=np.int32(1), lr=np.float32(0.01))
    assert (cfg.bits, cfg.layers) == (3, 1) and type(cfg.bits) is int and type(cfg.lr) is float
    json.dumps(cfg.to_dict())


def test_cli_lr_inf_is_one_line(capsys):
    code, _, err = run_main(capsys, "train", "--dataset", "diabetes", "--lr", "inf", "--epochs", "1")
    one_line_error(code, err, "lr")


def test_a_csv_of_only_the_target_is_not_read_as_the_one_feature(tmp_path, capsys):
    """A one-feature model given a CSV whose single column is the target: by position it would
    encode the target as the feature; encode and predict name the missing feature instead."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    pd.DataFrame({"x": x, "y": 2 * x}).to_csv(tmp_path / "train.csv", index=False)
    code, _, err = run_main(capsys, "train", "--data", tmp_path / "train.csv", "--target", "y",
                            "--bits", "2", "--layers", "1", "--neurons", "4", "--epochs", "1",
                            "--device", "cpu", "--save", tmp_path / "m.safetensors", "--json")
    assert code == 0, err
    pd.DataFrame({"y": 2 * x[:5]}).to_csv(tmp_path / "only_y.csv", index=False)
    for command in (["encode", tmp_path / "m.safetensors", "--input", tmp_path / "only_y.csv", "--format", "hex"],
                    ["predict", tmp_path / "m.safetensors", "--input", tmp_path / "only_y.csv"]):
        code, _, err = run_main(capsys, *command)
        one_line_error(code, err, "lacks the model's feature column(s) x")
