"""A trained model with everything a later ``predict``/``export`` needs, saved without pickle.

File format: one safetensors file. Tensors are the module's state dict (and, for a tree
predictor, its LightGBM text model as the uint8 tensor ``predictor.gbdt``); the safetensors metadata
key ``softbits`` holds JSON with the config, quantizer kind, network shape, scalers (exact float
repr), feature names, task, classes, metrics and the runtime that produced it. Loading executes
no code from the file, and checks the header against the format and against the shapes of the
tensors in the file before it allocates anything the header asks for: a small edited file cannot
demand gigabytes or end in a traceback. A model with NaN/inf anywhere is never written.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from softbits.codes import max_code
from softbits.data import Standardizer
from softbits.data.names import check_feature_names
from softbits.errors import ConfigError, DataError
from softbits.nn.network import QuantizedMLP, build_network, describe_network
from softbits.nn.quantizers import build_quantizer
from softbits.text import strict_json
from softbits.training.config import MAX_MEMBERS, TrainConfig
from softbits.training.engine import FitResult
from softbits.training.methods import get_method
from softbits.training.predictors import MAX_GBDT_BYTES, GBDTPredictor

__all__ = ["TrainedModel", "MODEL_FORMAT", "MODEL_FORMAT_VERSION"]

MODEL_FORMAT = "softbits-model"
MODEL_FORMAT_VERSION = 1
#: the tensor that holds a tree predictor's LightGBM text model (UTF-8 bytes)
TREES_KEY = "predictor.gbdt"


@dataclass
class TrainedModel:
    """Quantizer + MLP + scalers: raw features in, raw-unit predictions out."""

    module: QuantizedMLP
    config: TrainConfig
    x_scaler: Standardizer
    y_scaler: Standardizer | None
    feature_names: list[str]
    target_name: str
    task: str
    classes: list[str] | None = None
    dataset: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    #: the training's per-epoch record (None for a model file written before it was kept)
    history: FitResult | None = None
    #: how a payload budget's widths were chosen (softbits.training.allocation; None without a budget)
    allocation: dict[str, Any] | None = None
    #: the trees that serve instead of the MLP (predictor gbdt, or auto's choice); None: the MLP serves
    trees: GBDTPredictor | None = None
    #: per feature, the counts of each code on the training rows (2^w numbers for width w; one
    #: for a feature not sent); what a server's drift report compares against. None: no codes
    code_histogram: list[list[int]] | None = None

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def bits(self) -> int | None:
        q = self.module.quantizer
        return q.bits if q is not None else None

    @property
    def widths(self) -> tuple[int, ...] | None:
        """One code width per feature for a mixed-width model; None when every feature has ``bits``."""
        q = self.module.quantizer
        return q.widths if q is not None else None

    @property
    def sent_features(self) -> list[int]:
        """The features a device sends (width above 0), in order; every one for a uniform model."""
        q = self._quantizer()
        return [f for f, w in enumerate(q.widths or (q.bits,) * self.n_features) if w]

    def _device(self) -> torch.device:
        # a fixed quantizer without a network may hold its thresholds as buffers alone
        tensor = next(itertools.chain(self.module.parameters(), self.module.buffers()), None)
        return torch.device("cpu") if tensor is None else tensor.device

    def _check_width(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            got = X.shape[1] if X.ndim == 2 else X.shape
            raise DataError(f"expected {self.n_features} features per sample, got {got}")
        return X

    def standardize(self, X: np.ndarray) -> torch.Tensor:
        X = self._check_width(X)
        return torch.as_tensor(self.x_scaler.transform(X), dtype=torch.float32, device=self._device())

    @property
    def predictor(self) -> str:
        """The server model behind the codes: ``mlp`` or ``gbdt``."""
        return "mlp" if self.trees is None else self.trees.kind

    def _output_to_prediction(self, out: torch.Tensor | np.ndarray) -> np.ndarray:
        """Network (or tree) outputs → predictions, in numpy (cheaper than torch ops for small batches)."""
        values = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out
        if self.task == "classification":
            return values.argmax(-1)
        y = values[:, 0].astype(np.float64)
        return self.y_scaler.inverse(y.reshape(-1, 1))[:, 0] if self.y_scaler else y

    @torch.no_grad()
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for raw feature rows (regression: target units; classification: index)."""
        from softbits.training.engine import predict_tensor

        if self.trees is not None:
            inputs = self.encode(X) if self.module.quantizer is not None else self.standardize(X).cpu().numpy()
            return self._output_to_prediction(self.trees.raw(inputs))
        return self._output_to_prediction(predict_tensor(self.module, self.standardize(X)))

    @torch.no_grad()
    def encode(self, X: np.ndarray) -> np.ndarray:
        """Integer codes [N, F] for raw feature rows (through the standardized thresholds)."""
        q = self._quantizer()
        return q.encode(self.standardize(X)).cpu().numpy().astype(np.int64)

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        """The server side: codes from a device → predictions.

        Checked and converted in numpy and run through the eval network without module dispatch:
        for a one-sample request these fixed costs outweigh the network itself.
        """
        q = self._quantizer()
        codes = np.asarray(codes)
        if codes.dtype.kind not in "iu" and not (
                codes.dtype.kind == "f" and np.isfinite(codes).all() and (codes == np.round(codes)).all()):
            raise DataError(f"codes must be integers, got dtype {codes.dtype}")
        if codes.ndim != 2 or codes.shape[1] != self.n_features:
            raise DataError(f"expected codes of shape [N, {self.n_features}], got {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() > max_code(q.bits)):
            raise DataError(f"codes must lie in 0..{max_code(q.bits)}")
        if codes.size and q.widths is not None:
            self._check_width_codes(codes, q.widths)
        if self.trees is not None:
            return self._output_to_prediction(self.trees.raw(codes))
        codes_t = torch.from_numpy(codes.astype(np.int64))
        device = self._device()
        if device.type != "cpu":
            codes_t = codes_t.to(device)
        if self.module.training:  # a recursive eval() per request costs more than the network
            self.module.eval()
        with torch.inference_mode():
            out = self.module.forward_codes(codes_t)
        return self._output_to_prediction(out)

    def _check_width_codes(self, codes: np.ndarray, widths: tuple[int, ...]) -> None:
        """Feature f's codes must fit its own width: 0..2^w_f − 1 (only 0 for a feature not sent)."""
        over = codes > np.array([max_code(w) for w in widths])
        if over.any():
            f = int(np.nonzero(over.any(axis=0))[0][0])
            raise DataError(f"codes of feature {self.feature_names[f]} must lie in 0..{max_code(widths[f])} "
                            f"({widths[f]} bits)")

    def _quantizer(self):
        q = self.module.quantizer
        if q is None:
            raise DataError(f"method {self.config.method} sends full-precision features; it has no codes")
        return q

    # ---- persistence -------------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        q = self.module.quantizer
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "config": self.config.to_dict(),
            "quantizer": None if q is None else {"kind": q.kind, "config": q.config()},
            # None: trees serve codes no network training moves (the module is the quantizer)
            "network": None if self.module.network is None else describe_network(self.module.network),
            "x_scaler": {"mean": self.x_scaler.mean.tolist(), "scale": self.x_scaler.scale.tolist()},
            "y_scaler": None if self.y_scaler is None else {
                "mean": self.y_scaler.mean.tolist(), "scale": self.y_scaler.scale.tolist()},
            "feature_names": self.feature_names,
            "target_name": self.target_name,
            "task": self.task,
            "classes": self.classes,
            "dataset": self.dataset,
            "metrics": self.metrics,
            "runtime": self.runtime,
            "history": None if self.history is None else self.history.to_dict(),
            # only with a budget, so other model files keep the header they had
            **({} if self.allocation is None else {"allocation": self.allocation}),
            # only with trees: an MLP model file keeps the header it had
            **({} if self.trees is None else {"predictor": self.trees.header()}),
            **({} if self.code_histogram is None else {"code_histogram": self.code_histogram}),
        }

    def _non_finite(self) -> list[str]:
        """The parts of this model that are NaN or ±inf: a diverged training or overflowed data."""
        found = [f"{key} = {value}" for key, value in self.metrics.items()
                 if isinstance(value, numbers.Real) and not isinstance(value, bool)
                 and not math.isfinite(value)]
        for name, scaler in (("x_scaler", self.x_scaler), ("y_scaler", self.y_scaler)):
            if scaler is not None and not (np.isfinite(scaler.mean).all() and np.isfinite(scaler.scale).all()):
                found.append(name)
        for key, tensor in self.module.state_dict().items():
            if tensor.is_floating_point():
                bad = int((~torch.isfinite(tensor)).sum())
                if bad:
                    found.append(f"{key} ({bad} of {tensor.numel()} values)")
        return found

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model file; refused when any metric, scaler or parameter is not finite."""
        path = Path(path)
        bad = self._non_finite()
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise DataError(f"not saving {path}: the model is not finite ({', '.join(bad[:3])}{more}); "
                                "training diverged or the data overflowed, try a lower learning rate")
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        if self.trees is not None:
            text = self.trees.to_text().encode("utf-8")
            if len(text) > MAX_GBDT_BYTES:
                raise DataError(f"not saving {path}: its tree model holds {len(text)} bytes, "
                                f"more than {MAX_GBDT_BYTES}")
            tensors[TREES_KEY] = torch.frombuffer(bytearray(text), dtype=torch.uint8)
        save_file(tensors, str(path), metadata={"softbits": json.dumps(self._header())})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> TrainedModel:
        """Read a model file; anything wrong with it is one :class:`DataError` line."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"model file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataError(f"{path} is not a softbits model file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        if "softbits" not in meta:
            raise DataError(f"{path} is not a softbits model file (no softbits metadata)")
        header = strict_json(meta["softbits"], f"{path}: the softbits metadata of this model file")
        if isinstance(header, dict) and (header.get("format") != MODEL_FORMAT
                                         or header.get("format_version") != MODEL_FORMAT_VERSION):
            raise DataError(
                f"{path}: unsupported model format {header.get('format')!r} v{header.get('format_version')}"
                f" (this softbits reads {MODEL_FORMAT} v{MODEL_FORMAT_VERSION})")
        try:
            trees_shape = shapes.pop(TREES_KEY, None)
            fields_, build = _read_header(header, shapes, str(device))
            if (trees_shape is None) != (header.get("predictor") is None):
                raise _InvalidModel("the header's predictor and the file's tree tensor disagree")
            if trees_shape is not None and (len(trees_shape) != 1 or trees_shape[0] > MAX_GBDT_BYTES):
                raise _InvalidModel(f"tensor {TREES_KEY} has shape {list(trees_shape)}; a tree model is "
                                    f"at most {MAX_GBDT_BYTES} bytes")
            tensors = load_file(str(path), device="cpu" if trees_shape is not None else str(device))
            trees = None if trees_shape is None else _read_trees(tensors.pop(TREES_KEY), header, fields_)
            tensors = {k: t.to(device) for k, t in tensors.items()}
            bad = [key for key, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
            if bad:
                raise _InvalidModel(f"non-finite values in {', '.join(bad)}")
            module = build()
            try:
                module.load_state_dict(tensors, strict=True)
            except RuntimeError as exc:  # names and shapes match, so a dtype torch cannot copy
                raise _InvalidModel(str(exc).splitlines()[-1].strip()) from None
        except (_InvalidModel, ConfigError) as exc:
            raise DataError(f"{path} is not a valid softbits model file ({exc})") from None
        module.to(device).eval()
        return cls(module=module, history=_read_history(header, path), trees=trees, **fields_)


def _read_trees(tensor: torch.Tensor, header: dict[str, Any], fields_: dict[str, Any]) -> GBDTPredictor:
    """The tree predictor of a model file, checked against the model it serves."""
    predictor = header.get("predictor")
    if not isinstance(predictor, dict) or predictor.get("kind") != "gbdt":
        raise _InvalidModel(f"unknown predictor {predictor!r}")
    if tensor.dtype != torch.uint8:
        raise _InvalidModel(f"tensor {TREES_KEY} must be uint8 text")
    config: TrainConfig = fields_["config"]
    names, task = fields_["feature_names"], fields_["task"]
    max_codes = None
    if get_method(config.method).quantized:
        max_codes = [max_code(w) if w else 0 for w in config.feature_widths(len(names))]
    n_outputs = len(fields_["classes"]) if task == "classification" else 1
    try:
        return GBDTPredictor.from_text(tensor.numpy().tobytes(), predictor, task=task, n_features=len(names),
                                       n_outputs=n_outputs, max_codes=max_codes)
    except ValueError as exc:
        raise _InvalidModel(str(exc)) from None


def _read_history(header: dict[str, Any], path: Path) -> FitResult | None:
    """The header's training history; absent in files written before it was kept."""
    try:
        return None if header.get("history") is None else FitResult.from_dict(header["history"])
    except DataError as exc:
        raise DataError(f"{path} is not a valid softbits model file ({exc})") from None


def _histogram(value: Any, config: TrainConfig, n_features: int) -> list[list[int]] | None:
    """The header's code histogram: per feature 2^w non-negative integer counts (1 for width 0)."""
    if value is None:
        return None
    if not get_method(config.method).quantized:
        raise _InvalidModel("a model without codes has no code_histogram")
    widths = config.feature_widths(n_features)
    if not isinstance(value, list) or len(value) != n_features:
        raise _InvalidModel(f"code_histogram must be a list of {n_features} lists")
    for f, (counts, w) in enumerate(zip(value, widths, strict=True)):
        if not isinstance(counts, list) or len(counts) != 1 << w or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise _InvalidModel(f"code_histogram[{f}] must be {1 << w} non-negative integers (width {w})")
    return value


def _network(net: Any, config: TrainConfig, classes: list[str] | None, task: str, n_tensors: int
             ) -> dict[str, Any]:
    """The header's network description, checked: :func:`build_network`'s arguments."""
    d_in = _integer(_need(net, "d_in", "network."), "network.d_in", 1)
    d_out = _integer(_need(net, "d_out", "network."), "network.d_out", 1)
    layers = _integer(_need(net, "layers", "network."), "network.layers", 0)
    neurons = _integer(_need(net, "neurons", "network."), "network.neurons", 1 if layers else 0)
    members = net.get("members")
    if members is not None:
        _integer(members, "network.members", 1, MAX_MEMBERS)
    dropout = _need(net, "dropout", "network.")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise _InvalidModel(f"network.dropout must be a number in [0, 1), got {dropout!r}")
    if d_out != (len(classes) if classes else 1):
        raise _InvalidModel(f"network.d_out = {d_out} for a {task} model with {len(classes or [])} classes")
    if (members or 1) != config.members:
        raise _InvalidModel(f"network.members = {members} but config.members = {config.members}")
    if 2 * (layers + 1) > n_tensors:  # each layer is a weight and a bias: bounds the build below
        raise _InvalidModel(f"network.layers = {layers}, but the file holds only {n_tensors} tensors")
    return {"d_in": d_in, "d_out": d_out, "layers": layers, "neurons": neurons, "dropout": dropout,
            "members": members}


class _InvalidModel(Exception):
    """A model file header that breaks the format or disagrees with the file's tensors."""


def _need(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict):
        raise _InvalidModel(f"{where or 'the header'} is not a mapping")
    if key not in mapping:
        raise _InvalidModel(f"missing {where}{key}")
    return mapping[key]


def _integer(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise _InvalidModel(f"{name} must be an integer {bounds}, got {value!r}")
    return value


def _texts(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _InvalidModel(f"{name} must be a list of strings")
    return value


def _scaler(value: Any, name: str, width: int) -> Standardizer:
    """A scaler with ``width`` finite means and positive finite scales."""
    arrays = []
    for part in ("mean", "scale"):
        values = _need(value, part, f"{name}.")
        if not isinstance(values, list) or len(values) != width:
            got = f"{len(values)} values" if isinstance(values, list) else type(values).__name__
            raise _InvalidModel(f"{name}.{part} must be a list of {width} numbers, got {got}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise _InvalidModel(f"{name}.{part} holds a value that is not a finite number")
        arrays.append(np.array(values, dtype=np.float64))
    if not (arrays[1] > 0).all():
        raise _InvalidModel(f"{name}.scale must be positive")
    return Standardizer(*arrays)


def _read_header(header: Any, shapes: dict[str, tuple[int, ...]],
                 device: str) -> tuple[dict[str, Any], Callable[[], QuantizedMLP]]:
    """The model's fields and a builder of its module, checked before anything is allocated.

    The module is first built on the meta device (shapes, no memory) and its state dict's
    shapes compared with the tensors in the file, so the real build allocates no more than the
    file holds.
    """
    names = _texts(_need(header, "feature_names", ""), "feature_names")
    if not names:
        raise _InvalidModel("no feature names")
    try:
        check_feature_names(names, "the model")
    except DataError as exc:
        raise _InvalidModel(str(exc)) from None
    task = _need(header, "task", "")
    if task not in ("regression", "classification"):
        raise _InvalidModel(f"unknown task {task!r}")
    target_name = _need(header, "target_name", "")
    if not isinstance(target_name, str):
        raise _InvalidModel("target_name must be a string")
    classes = _need(header, "classes", "")
    if task == "classification":
        classes = _texts(classes, "classes")
        if len(classes) < 2:
            raise _InvalidModel("a classification model needs at least 2 classes")
    elif classes is not None:
        raise _InvalidModel("a regression model has no classes")
    x_scaler = _scaler(_need(header, "x_scaler", ""), "x_scaler", len(names))
    y_header = _need(header, "y_scaler", "")
    if task == "regression":
        y_scaler = _scaler(y_header, "y_scaler", 1)
    elif y_header is None:
        y_scaler = None
    else:
        raise _InvalidModel("a classification model has no y_scaler")
    config_header = _need(header, "config", "")
    if not isinstance(config_header, dict):
        raise _InvalidModel("config is not a mapping")
    config = TrainConfig.from_dict({**config_header, "device": device})
    extras = {key: header.get(key, default) for key, default in
              (("dataset", ""), ("metrics", {}), ("runtime", {}))}
    if not isinstance(extras["dataset"], str) or not all(isinstance(extras[k], dict) for k in ("metrics", "runtime")):
        raise _InvalidModel("dataset must be a string, metrics and runtime mappings")
    extras["allocation"] = header.get("allocation")
    if extras["allocation"] is not None and not isinstance(extras["allocation"], dict):
        raise _InvalidModel("allocation must be a mapping")
    extras["code_histogram"] = _histogram(header.get("code_histogram"), config, len(names))

    net = _need(header, "network", "")
    network = None if net is None else _network(net, config, classes, task, len(shapes))
    if network is None and (header.get("predictor") is None or not get_method(config.method).fixed_inputs):
        raise _InvalidModel(f"network is null, which only a tree model of fixed codes may be "
                            f"(method {config.method}, predictor {header.get('predictor')!r})")

    q_header = _need(header, "quantizer", "")
    if get_method(config.method).quantized != (q_header is not None):
        raise _InvalidModel(f"method {config.method} "
                            + ("needs a quantizer" if q_header is None else "has no quantizer"))
    if q_header is not None:
        kind, q_config = _need(q_header, "kind", "quantizer."), _need(q_header, "config", "quantizer.")

    def build() -> QuantizedMLP:
        quantizer = None if q_header is None else build_quantizer(kind, q_config)
        return QuantizedMLP(quantizer, None if network is None else build_network(**network))

    with torch.device("meta"):
        skeleton = build()
    q = skeleton.quantizer
    for ok, message in [
        (q is None or q.n_features == len(names),
         f"the quantizer has {q and q.n_features} features, the header names {len(names)}"),
        (q is None or q.bits == config.bits, f"quantizer bits = {q and q.bits} but config.bits = {config.bits}"),
        (q is None or q.widths == config.bits_per_feature,
         f"quantizer widths = {q and q.widths} but config.bits_per_feature = {config.bits_per_feature}"),
        (network is None or network["d_in"] == (len(names) if q is None else q.out_features),
         f"network.d_in = {network and network['d_in']} but its input has "
         f"{len(names) if q is None else q.out_features} values"),
    ]:
        if not ok:
            raise _InvalidModel(message)
    expected = {key: tuple(t.shape) for key, t in skeleton.state_dict().items()}
    if set(expected) != set(shapes):
        differ = sorted(set(expected) ^ set(shapes))
        raise _InvalidModel(f"the header and the tensors disagree on {', '.join(differ[:4])}")
    for key, shape in expected.items():
        if shapes[key] != shape:
            raise _InvalidModel(f"tensor {key} has shape {list(shapes[key])}, the header implies {list(shape)}")
    fields_ = dict(config=config, x_scaler=x_scaler, y_scaler=y_scaler, feature_names=list(names),
                   target_name=target_name, task=task, classes=classes, **extras)
    return fields_, build
