"""The search grid draw, grid and settings files, and the CLI's bit/name parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softbits.errors import ConfigError
from softbits.experiments.commands import parse_bits
from softbits.experiments.settings import (
    PAPER_GRID,
    SETTING_COLUMNS,
    Setting,
    draw_settings,
    load_grid,
    read_settings_table,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper_results.csv"


def test_draw_is_deterministic_distinct_and_inside_the_grid() -> None:
    a = draw_settings(100, seed=42)
    b = draw_settings(100, seed=42)
    assert a == b and len(a) == 100
    assert len({s.id for s in a}) == 100
    for s in a:
        for key, value in s.to_dict().items():
            assert value in PAPER_GRID[key]
    assert draw_settings(100, seed=43) != a
    # the first settings do not depend on how many are drawn
    assert draw_settings(10, seed=42) == a[:10]
    # every value of a key with several choices shows up in 100 draws
    assert {s.hidden_neurons for s in a} == set(PAPER_GRID["hidden_neurons"])


def test_draw_bounded_by_grid_size() -> None:
    tiny = {k: (PAPER_GRID[k][0],) for k in SETTING_COLUMNS}
    assert len(draw_settings(1, grid=tiny)) == 1
    with pytest.raises(ConfigError, match="grid's size"):
        draw_settings(2, grid=tiny)


def test_setting_id_ignores_number_spelling() -> None:
    a = Setting.from_mapping({"learning_rate": "1e-3", "hidden_layers": 5.0, "hidden_neurons": 64,
                              "num_epochs": "30", "decrease_factor": 0.001, "dropout_rate": 0,
                              "weight_decay": 0.0})
    b = Setting(0.001, 5, 64, 30, 1e-3, 0.0, 0.0)
    assert a == b and a.id == b.id
    assert Setting(0.001, 5, 64, 31, 1e-3, 0.0, 0.0).id != a.id
    cfg = a.train_config("bw-sq", 3, seed=7)
    assert (cfg.layers, cfg.neurons, cfg.epochs, cfg.lr, cfg.seed, cfg.bits) == (5, 64, 30, 1e-3, 7, 3)


def test_grid_file_validation(tmp_path: Path) -> None:
    path = tmp_path / "grid.json"
    good = {k: list(v) for k, v in PAPER_GRID.items()}
    path.write_text(json.dumps(good))
    assert load_grid(path) == PAPER_GRID
    path.write_text(json.dumps({**good, "momentum": [0.9]}))
    with pytest.raises(ConfigError, match="unknown keys"):
        load_grid(path)
    path.write_text(json.dumps({**good, "num_epochs": []}))
    with pytest.raises(ConfigError, match="non-empty list"):
        load_grid(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_grid(tmp_path / "missing.json")


def test_settings_table_reads_paper_rows_and_names_missing_ones(tmp_path: Path) -> None:
    if not REFERENCE.exists():
        pytest.skip("reference table not found")
    chosen = read_settings_table(REFERENCE, [("cpu_act", "Bw-SQ", 4), ("cpu_act", "LSQ", 4)])
    assert chosen[("cpu_act", "Bw-SQ", 4)] == Setting(0.001, 6, 128, 50, 0.001, 0.0, 0.0)
    assert chosen[("cpu_act", "LSQ", 4)] == Setting(0.001, 5, 256, 30, 0.0001, 0.0, 0.0)
    with pytest.raises(ConfigError, match=r"lacks 1 needed .* diabetes/LSQ/4"):
        read_settings_table(REFERENCE, [("cpu_act", "LSQ", 4), ("diabetes", "LSQ", 4)])
    partial = tmp_path / "partial.csv"
    partial.write_text("dataset,method,bits,learning_rate\ncpu_act,LSQ,4,0.001\n")
    with pytest.raises(ConfigError, match="lacks columns: hidden_layers"):
        read_settings_table(partial, [("cpu_act", "LSQ", 4)])


@pytest.mark.parametrize("text, expected", [("2-8", [2, 3, 4, 5, 6, 7, 8]), ("2,4,6", [2, 4, 6]),
                                            ("4", [4]), ("2-3,8,3", [2, 3, 8])])
def test_parse_bits(text: str, expected: list[int]) -> None:
    assert parse_bits(text) == expected


@pytest.mark.parametrize("text, message", [("9-2", "empty"), ("0-3", "1..16"), ("two", "cannot read"),
                                           ("2-", "cannot read")])
def test_parse_bits_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_bits(text)
