"""The issue's accuracy bars on the offline copies (real data, real budgets)."""

from __future__ import annotations

import json
import subprocess

import pytest

from softbits import TrainConfig, load_dataset, train_dataset

pytestmark = pytest.mark.slow  # real trainings at the paper's settings


def test_fried_bwsq_4bit_cli(softbits_cmd, cli_env, data_dir):
    r = subprocess.run(
        [*softbits_cmd, "train", "--dataset", "fried", "--method", "bw-sq", "--bits", "4",
         "--layers", "3", "--neurons", "128", "--epochs", "30", "--lr", "1e-3",
         "--decrease-factor", "1e-3", "--dropout", "0", "--seed", "0", "--json"],
        env=cli_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["source"].endswith("fried.csv.gz")
    assert out["test_mse"] <= 0.058


def test_cpu_act_paper_setting_near_paper(data_dir):
    ds = load_dataset("cpu_act", data_dir=data_dir)
    cfg = TrainConfig(method="bw-sq", bits=4, layers=6, neurons=128, epochs=50, lr=1e-3,
                      decrease_factor=1e-3, dropout=0.0, seed=0, device="cpu")
    mse = train_dataset(ds, cfg).metrics["test_mse"]
    # paper: 0.01917, 95% CI [0.01742, 0.02092] over 10 repeats
    assert mse == pytest.approx(0.019, abs=0.004)
