"""The server side as ONNX: codes → decoder → network → predictions, for inference servers.

``softbits export --format onnx`` writes ``model.onnx`` with one input ``codes`` (int64
``[N, F_sent]``: the codes of the features the device sends, in the model's feature order, the
0-bit ones left out) and one output ``predictions`` (float64 target units for regression, int64
class indices for classification): what :meth:`TrainedModel.predict_codes` returns. The batch
axis is dynamic. ``--format triton`` writes the same model as a Triton model repository entry
(``<name>/1/model.onnx`` and ``<name>/config.pbtxt``).

MLP and ensemble predictors export; a tree predictor (``gbdt``) is refused: no converter here
reproduces LightGBM's predictions bit for bit, and a server answering differently from
``predict`` would be silent garbage. Needs the ``onnx`` extra (onnx, onnxscript; onnxruntime
to check it).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from softbits.errors import ConfigError, DataError
from softbits.nn.network import network_eval
from softbits.training.trained_model import TrainedModel

__all__ = ["ONNX_OPSET", "ServerModel", "export_onnx", "sent_codes", "triton_config", "write_triton"]

ONNX_OPSET = 18
#: the largest decode table (codes × decoded values) the export precomputes
MAX_TABLE = 2**24


class ServerModel(nn.Module):
    """What a server computes from a device's codes, as one traceable module (eval semantics)."""

    table: torch.Tensor
    owner: torch.Tensor
    column: torch.Tensor
    sent: torch.Tensor
    y_mean: torch.Tensor
    y_scale: torch.Tensor

    def __init__(self, model: TrainedModel) -> None:
        super().__init__()
        q = model.module.quantizer
        if q is None:
            raise DataError(f"method {model.config.method} sends full-precision features; it has no codes to serve")
        if model.trees is not None:
            raise DataError("a gbdt predictor does not export to ONNX (no converter here reproduces its "
                            "predictions exactly); export an mlp or ensemble model")
        self.network, self.task = model.module.require_network(), model.task
        sent = model.sent_features
        self.n_features = n = model.n_features
        levels = 1 << int(q.bits)
        if levels * q.out_features > MAX_TABLE:
            raise DataError(f"a {q.bits}-bit {q.kind} decoder needs a table of {levels * q.out_features:,} values "
                            f"to export; ONNX export takes at most {MAX_TABLE:,}")
        # the decoder works feature by feature: each decoded value j depends on the code of one
        # feature owner[j]; tabulate every code's value of every j, and the graph only gathers
        # (no sort or comparison of thresholds inside it)
        q = q.eval()
        device = next(model.module.parameters()).device
        with torch.no_grad():
            every = torch.arange(levels, device=device).unsqueeze(1).expand(levels, n).contiguous()
            table = q.decode(every).detach().to("cpu", torch.float32)  # [levels, D]
            owner = torch.zeros(table.shape[1], dtype=torch.long)
            for f in range(n):
                alone = torch.zeros(levels, n, dtype=torch.long, device=device)
                alone[:, f] = torch.arange(levels, device=device)
                varies = q.decode(alone).detach().cpu()
                owner[(varies != varies[0]).any(0)] = f
        self.width = table.shape[1]
        self.register_buffer("table", table.reshape(-1))
        self.register_buffer("owner", owner)
        self.register_buffer("column", torch.arange(self.width, dtype=torch.long))
        self.register_buffer("sent", torch.tensor(sent, dtype=torch.long))
        scaler = model.y_scaler
        self.register_buffer("y_mean", torch.tensor(0.0 if scaler is None else float(scaler.mean[0]), dtype=torch.float64))
        self.register_buffer("y_scale", torch.tensor(1.0 if scaler is None else float(scaler.scale[0]), dtype=torch.float64))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        full = torch.zeros(codes.shape[0], self.n_features, dtype=torch.long, device=codes.device)
        full = full.index_copy(1, self.sent, codes.long())
        decoded = self.table[full[:, self.owner] * self.width + self.column]  # [N, D]
        out = network_eval(self.network, decoded)
        if self.task == "classification":
            return out.argmax(-1)
        return out[:, 0].to(torch.float64) * self.y_scale + self.y_mean


def _need_onnx() -> None:
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"--format onnx needs the onnx extra (missing {', '.join(missing)}): "
                          "pip install 'softbits[onnx]'")


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_onnx(model: TrainedModel, path: Path) -> Path:
    """Write ``model``'s server side to ``path`` (see the module docstring)."""
    _need_onnx()
    server = ServerModel(model).cpu().eval()
    n_sent = len(server.sent)
    example = torch.zeros(2, n_sent, dtype=torch.long)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the exporter logs and warns about optional operator libraries it does not find
    with torch.no_grad(), warnings.catch_warnings(), _quiet("torch.onnx", "torch.export", "onnxscript"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(server, (example,), input_names=["codes"], output_names=["predictions"],
                                    dynamic_shapes={"codes": {0: torch.export.Dim("batch")}},
                                    opset_version=ONNX_OPSET, dynamo=True, verbose=False)
    if program is None:
        raise DataError("the ONNX exporter returned no program")
    program.save(str(path))
    return path


def triton_config(model: TrainedModel, name: str) -> str:
    """The ``config.pbtxt`` of a Triton model repository entry for the exported model."""
    n_sent = len(model.sent_features)
    out_type = "TYPE_INT64" if model.task == "classification" else "TYPE_FP64"
    return (f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 0\n'
            f'input [\n  {{\n    name: "codes"\n    data_type: TYPE_INT64\n    dims: [ -1, {n_sent} ]\n  }}\n]\n'
            f'output [\n  {{\n    name: "predictions"\n    data_type: {out_type}\n    dims: [ -1 ]\n  }}\n]\n')


def write_triton(model: TrainedModel, out_dir: Path, name: str) -> list[Path]:
    """``out_dir/<name>/1/model.onnx`` and ``out_dir/<name>/config.pbtxt``; the entry is written
    beside and moved into place, so a failed export leaves none half-written."""
    entry = out_dir / name
    if entry.exists():
        raise DataError(f"{entry} exists; give another --out-dir or remove it")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir))
    try:
        export_onnx(model, staging / "1" / "model.onnx")
        (staging / "config.pbtxt").write_text(triton_config(model, name), encoding="utf-8")
        staging.rename(entry)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [entry / "1" / "model.onnx", entry / "config.pbtxt"]


def sent_codes(model: TrainedModel, codes: np.ndarray) -> np.ndarray:
    """The ONNX input of full codes [N, F]: the columns of the features the device sends."""
    return np.ascontiguousarray(np.asarray(codes, dtype=np.int64)[:, model.sent_features])
