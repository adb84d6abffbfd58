"""Does the quantizer want its own learning rate? ``threshold_lr_scale`` by K-fold CV on training data.

Same protocol as ``recipe_cv.py`` (whose study runner, summary and table this reuses): per cell, the paper's
Bw-SQ network and loop, the 90% training part of the paper's split cut into K shuffled folds,
scalers refit per training fold, hard-quantized MSE on the held-out fold; the 10% test part is
never used. Candidates differ only in ``threshold_lr_scale`` (the thresholds train at lr × scale);
the first, 1, is the paper's loop. Rows are saved after every training, so ``--time-cap`` keeps
what ran. ``python benchmarks/threshold_lr_cv.py --help`` lists the options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recipe_cv import Cell, run_study, study_parser

from softbits.training.config import TrainConfig

#: the paper's Bw-SQ settings; california's 6×512 is cut to 6×128 (CPU budget), as in recipe_cv.py
CELLS: list[Cell] = [
    ("cpu_act", 2, 8, 32, 70, 1e-3, 1e-3, 0.0),
    ("cpu_act", 3, 5, 32, 70, 1e-3, 1e-4, 0.0),
    ("cpu_act", 4, 6, 128, 50, 1e-3, 1e-3, 0.0),
    ("cpu_act", 5, 5, 128, 70, 1e-3, 1e-3, 0.0),
    ("cpu_act", 6, 5, 128, 70, 1e-3, 1e-3, 0.0),
    ("cpu_act", 7, 6, 128, 50, 1e-3, 1e-3, 0.0),
    ("fried", 2, 5, 32, 70, 1e-3, 1e-4, 0.0),
    ("fried", 4, 5, 32, 70, 1e-3, 1e-4, 0.0),
    ("california", 2, 6, 128, 30, 1e-3, 1e-4, 0.4),
]

SCALES = [1.0, 3.0, 10.0, 30.0]


def _scaled_config(cell: Cell, cand: dict[str, Any], seed: int) -> TrainConfig:
    """The paper's Bw-SQ setting of ``cell`` with the candidate's threshold scale."""
    _, bits, layers, neurons, epochs, lr, d, dropout = cell
    return TrainConfig(method="bw-sq", bits=bits, layers=layers, neurons=neurons, epochs=epochs,
                       lr=lr, decrease_factor=d, dropout=dropout, seed=seed, device="cpu",
                       threshold_lr_scale=cand["threshold_lr_scale"])


def main() -> None:
    parser = study_parser(__doc__.splitlines()[0], ",".join(f"{c[0]}:{c[1]}" for c in CELLS if c[1] <= 4),
                          Path(__file__).parent / "results" / "threshold_lr_cv.json", 30 * 60,
                          cells_help="dataset:bits pairs from CELLS, comma-separated (default: the "
                                     "six of the first study, bits <= 4; cpu_act 5-7 ran on their own)")
    candidates = [{"name": f"scale{s:g}", "threshold_lr_scale": s} for s in SCALES]
    run_study(parser.parse_args(), CELLS, candidates, _scaled_config, "threshold_lr_cv",
              protocol="as recipe_cv.py; candidates differ only in threshold_lr_scale")


if __name__ == "__main__":
    main()
