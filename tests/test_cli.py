"""``softbits train`` end to end in a subprocess: JSON contract and one-line errors."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

REQUIRED = {"dataset", "method", "bits", "n_features", "n_train", "n_test", "test_mse",
            "test_mse_soft", "test_accuracy", "train_seconds", "epochs", "compression_factor",
            "payload_bytes_per_sample", "seed", "device"}


def run(cmd, env, *args):
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=300)


def test_train_json_contract(softbits_cmd, cli_env, tmp_path):
    model_path = tmp_path / "m.safetensors"
    r = run(softbits_cmd, cli_env, "train", "--dataset", "diabetes", "--method", "bw-sq",
            "--bits", "3", "--layers", "2", "--neurons", "16", "--epochs", "3", "--seed", "1",
            "--device", "cpu", "--save", str(model_path), "--json")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert REQUIRED <= set(out)
    assert out["bits"] == 3 and out["n_features"] == 10 and out["n_train"] + out["n_test"] == 442
    assert out["compression_factor"] == pytest.approx(32 / 3)
    assert out["payload_bytes_per_sample"] == 4  # ceil(10 * 3 / 8)
    assert out["test_accuracy"] is None and out["test_mse_soft"] is not None
    assert out["seed"] == 1 and out["device"].startswith("cpu")
    assert out["settings"]["layers"] == 2 and "torch" in out["versions"]
    assert model_path.exists()


def test_train_fp_payload_and_human_output(softbits_cmd, cli_env):
    r = run(softbits_cmd, cli_env, "train", "--dataset", "diabetes", "--method", "fp",
            "--layers", "1", "--neurons", "8", "--epochs", "2", "--json")
    out = json.loads(r.stdout)
    assert out["compression_factor"] == 1 and out["payload_bytes_per_sample"] == 40
    r = run(softbits_cmd, cli_env, "train", "--dataset", "diabetes", "--method", "po-qq",
            "--layers", "1", "--neurons", "8", "--epochs", "2")
    assert r.returncode == 0 and "test MSE (hard)" in r.stdout and "FP model" in r.stdout


def test_train_user_csv_with_target(softbits_cmd, cli_env, tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 4)), columns=list("abcd"))
    frame["name"] = "x"
    frame = frame[["a", "b", "name", "c", "d"]]
    path = tmp_path / "mine.csv"
    frame.to_csv(path, index=False)
    r = run(softbits_cmd, cli_env, "train", "--data", str(path), "--target", "b", "--epochs", "2",
            "--layers", "1", "--neurons", "8", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n_features"] == 3
    assert any("name" in note for note in out["notes"])


def _bad_files(tmp_path):
    nan = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [1.0, 2.0, np.inf, 4.0], "y": [1.0, 2, 3, 4]})
    nan.to_csv(tmp_path / "nan.csv", index=False)
    (tmp_path / "empty.csv").write_text("")
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": ["p", "q", "r"]}).to_csv(tmp_path / "text.csv", index=False)
    pd.DataFrame({"a": [1.0, 2.0], "y": [1.0, 2.0]}).to_csv(tmp_path / "ok.csv", index=False)


@pytest.mark.parametrize("args,needle", [
    (["--dataset", "nope"], "unknown dataset 'nope'; choose one of: california"),
    (["--dataset", "diabetes", "--method", "magic"], "unknown method 'magic'; choose one of: fp"),
    (["--dataset", "diabetes", "--bits", "0"], "bits must be an integer in 1..16"),
    (["--dataset", "diabetes", "--bits", "17"], "bits must be an integer in 1..16"),
    (["--dataset", "diabetes", "--method", "pr-qq", "--bits", "1"], "needs bits >= 2"),
    (["--data", "{tmp}/missing.csv"], "file not found"),
    (["--data", "{tmp}/ok.csv", "--target", "zzz"], "target column 'zzz' not in"),
    (["--data", "{tmp}/nan.csv"], "2 rows contain NaN/inf in columns: a, b"),
    (["--data", "{tmp}/empty.csv"], "is empty"),
    (["--data", "{tmp}/text.csv", "--task", "regression"], "is not numeric"),
    ([], "give exactly one of --dataset NAME or --data PATH"),
])
def test_bad_input_is_one_line_and_exit_2(softbits_cmd, cli_env, tmp_path, args, needle):
    _bad_files(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = run(softbits_cmd, cli_env, "train", "--epochs", "1", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert r.stdout == ""


def test_dropna_flag(softbits_cmd, cli_env, tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(100, 3)), columns=["a", "b", "y"])
    frame.loc[5, "a"] = np.nan
    frame.to_csv(tmp_path / "n.csv", index=False)
    r = run(softbits_cmd, cli_env, "train", "--data", str(tmp_path / "n.csv"), "--dropna",
            "--epochs", "1", "--layers", "1", "--neurons", "4", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_train"] + json.loads(r.stdout)["n_test"] == 99



@pytest.mark.parametrize("args", [["serve", "m.safetensors"],
                                  ["send", "m.safetensors", "--input", "x.csv", "--to", "coap://h"]])
def test_serve_commands_without_the_serve_extra_say_what_to_install(cli_env, args):
    """A missing optional dependency (hidden here through sys.modules) is one line naming the
    extra, not an ImportError traceback; --help still documents the command."""
    import sys

    def without_aiocoap(*argv: str) -> subprocess.CompletedProcess:
        code = f"import sys; sys.modules['aiocoap'] = None; from softbits.cli import main; main({list(argv)!r})"
        return run([sys.executable, "-c", code], cli_env)

    r = without_aiocoap(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: softbits {args[0]} needs the serve extra (missing aiocoap): pip install 'softbits[serve]'"]
    r = without_aiocoap(args[0], "--help")
    assert r.returncode == 0 and "--help" in r.stdout, r.stderr
