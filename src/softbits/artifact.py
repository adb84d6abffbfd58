"""A trained model with everything a later ``predict``/``export`` needs, saved without pickle.

File format: one safetensors file. Tensors are the module's state dict; the safetensors metadata
key ``softbits`` holds JSON with the config, quantizer kind, network shape, scalers (exact float
repr), feature names, task, classes, metrics and the runtime that produced it. Loading executes
no code from the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from softbits.config import TrainConfig
from softbits.data import Standardizer
from softbits.errors import SoftbitsError
from softbits.model import QuantizedMLP, build_network, describe_network
from softbits.quantizers import build_quantizer

__all__ = ["TrainedModel", "MODEL_FORMAT", "MODEL_FORMAT_VERSION"]

MODEL_FORMAT = "softbits-model"
MODEL_FORMAT_VERSION = 1


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

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def bits(self) -> int | None:
        q = self.module.quantizer
        return q.bits if q is not None else None

    def _device(self) -> torch.device:
        return next(self.module.parameters()).device

    def _check_width(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            got = X.shape[1] if X.ndim == 2 else X.shape
            raise SoftbitsError(f"expected {self.n_features} features per sample, got {got}")
        return X

    def standardize(self, X: np.ndarray) -> torch.Tensor:
        X = self._check_width(X)
        return torch.as_tensor(self.x_scaler.transform(X), dtype=torch.float32, device=self._device())

    def _output_to_prediction(self, out: torch.Tensor) -> np.ndarray:
        """Network outputs → predictions, in numpy (cheaper than torch ops for small batches)."""
        values = out.detach().cpu().numpy()
        if self.task == "classification":
            return values.argmax(-1)
        y = values[:, 0].astype(np.float64)
        return self.y_scaler.inverse(y.reshape(-1, 1))[:, 0] if self.y_scaler else y

    @torch.no_grad()
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for raw feature rows (regression: target units; classification: index)."""
        from softbits.training import predict_tensor

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
            raise SoftbitsError(f"codes must be integers, got dtype {codes.dtype}")
        if codes.ndim != 2 or codes.shape[1] != self.n_features:
            raise SoftbitsError(f"expected codes of shape [N, {self.n_features}], got {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= (1 << q.bits)):
            raise SoftbitsError(f"codes must lie in 0..{(1 << q.bits) - 1}")
        codes_t = torch.from_numpy(codes.astype(np.int64))
        device = self._device()
        if device.type != "cpu":
            codes_t = codes_t.to(device)
        if self.module.training:  # a recursive eval() per request costs more than the network
            self.module.eval()
        with torch.inference_mode():
            out = self.module.forward_codes(codes_t)
        return self._output_to_prediction(out)

    def _quantizer(self):
        q = self.module.quantizer
        if q is None:
            raise SoftbitsError(f"method {self.config.method} sends full-precision features; it has no codes")
        return q

    # ---- persistence -------------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        q = self.module.quantizer
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "config": self.config.to_dict(),
            "quantizer": None if q is None else {"kind": q.kind, "config": q.config()},
            "network": describe_network(self.module.network),
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
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        save_file(tensors, str(path), metadata={"softbits": json.dumps(self._header())})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> "TrainedModel":
        path = Path(path)
        if not path.is_file():
            raise SoftbitsError(f"model file not found: {path}")
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path), device=str(device))
            header = json.loads(meta["softbits"])
        except (SafetensorError, KeyError, json.JSONDecodeError, OSError, ValueError) as exc:
            raise SoftbitsError(f"{path} is not a softbits model file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        if header.get("format") != MODEL_FORMAT or header.get("format_version") != MODEL_FORMAT_VERSION:
            raise SoftbitsError(
                f"{path}: unsupported model format {header.get('format')!r} v{header.get('format_version')}"
                f" (this softbits reads {MODEL_FORMAT} v{MODEL_FORMAT_VERSION})")
        qh = header["quantizer"]
        quantizer = build_quantizer(qh["kind"], qh["config"]) if qh else None
        n = header["network"]
        network = build_network(n["d_in"], n["d_out"], n["layers"], n["neurons"], n["dropout"],
                                n.get("members"))
        module = QuantizedMLP(quantizer, network)
        module.load_state_dict(tensors, strict=True)
        module.to(device).eval()
        ys = header["y_scaler"]
        return cls(
            module=module,
            config=TrainConfig.from_dict({**header["config"], "device": str(device)}),
            x_scaler=Standardizer(np.array(header["x_scaler"]["mean"]), np.array(header["x_scaler"]["scale"])),
            y_scaler=None if ys is None else Standardizer(np.array(ys["mean"]), np.array(ys["scale"])),
            feature_names=list(header["feature_names"]),
            target_name=header["target_name"],
            task=header["task"],
            classes=header["classes"],
            dataset=header.get("dataset", ""),
            metrics=header.get("metrics", {}),
            runtime=header.get("runtime", {}),
        )
