"""Bw-SQ in front of a model softbits did not build: a small 1-D CNN over sensor windows.

A device samples S sensors W times and sends the window. Here each of the W·S readings gets its
own 2-bit Bw-SQ quantizer (``softbits.nn.BitwiseQuantizer``); the CNN sees the quantizer's bits
as S·M channels over W time steps. Training anneals the sigmoids' temperature once per epoch
(``softbits.nn.Annealer``); ``model.eval()`` switches to hard codes, which is exactly what the
device sends. The encoder exports like any softbits model: JSON spec, C source, wire payloads.

Run: ``python examples/own_model_cnn.py --out runs/own_model`` (a few seconds on a laptop CPU).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from softbits.device.cgen import write_c
from softbits.device.encode import encode
from softbits.device.spec import EncoderSpec
from softbits.device.wire import encode_payload
from softbits.nn import Annealer, BitwiseQuantizer, TemperatureSchedule

WINDOW, SENSORS, BITS = 16, 2, 2


def sensor_windows(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Windows of two noisy sine sensors (raw units: a temperature around 20, a vibration in g);
    the target is the vibration's frequency, which a model must read from the shape over time."""
    t = np.arange(WINDOW)
    freq = rng.uniform(0.05, 0.4, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    vibration = np.sin(2 * np.pi * freq[:, None] * t + phase[:, None]) + 0.1 * rng.standard_normal((n, WINDOW))
    temperature = 20 + 3 * rng.standard_normal((n, 1)) + 0.2 * rng.standard_normal((n, WINDOW))
    x = np.stack([temperature, vibration], axis=-1).reshape(n, WINDOW * SENSORS)  # time-major
    return x.astype(np.float32), ((freq - 0.225) / 0.1).astype(np.float32)


class QuantizedCNN(nn.Module):
    """Bw-SQ on every reading, then two 1-D convolutions over time and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.quantizer = BitwiseQuantizer(WINDOW * SENSORS, BITS)
        channels = SENSORS * (2**BITS - 1)
        self.body = nn.Sequential(
            nn.Conv1d(channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv1d(32, 32, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bits = self.quantizer(x)                                   # [B, W·S·M], feature by feature
        bits = bits.view(len(x), WINDOW, -1).transpose(1, 2)       # [B, S·M channels, W steps]
        return self.body(bits).squeeze(-1)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for encoder.json, the C files, payload.bin")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_train, y_train = sensor_windows(4000, rng)
    x_test, y_test = sensor_windows(1000, rng)
    # standardize on training data only, in float64 with one rounding to float32 (as softbits does,
    # so that the device's raw-unit thresholds agree with the layer on every float32 input)
    mean, scale = x_train.mean(axis=0, dtype=np.float64), x_train.std(axis=0, dtype=np.float64)
    xs_train = torch.from_numpy(((x_train - mean) / scale).astype(np.float32))
    xs_test = torch.from_numpy(((x_test - mean) / scale).astype(np.float32))

    model = QuantizedCNN()
    model.quantizer.init_from_data(xs_train)                       # quantile thresholds, as the paper
    annealer = Annealer(model, TemperatureSchedule(epochs=args.epochs, tau_min=1e-3))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    target = torch.from_numpy(y_train)
    for epoch in range(args.epochs):
        annealer(epoch)                                            # τ of this epoch, on every soft quantizer
        model.train()
        for idx in torch.randperm(len(xs_train)).split(128):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(xs_train[idx]), target[idx])
            loss.backward()
            optimizer.step()

    model.eval()                                                   # hard steps: the device's codes
    with torch.no_grad():
        test_mse = float(nn.functional.mse_loss(model(xs_test), torch.from_numpy(y_test)))

    names = [f"{sensor}_t{step}" for step in range(WINDOW) for sensor in ("temperature", "vibration")]
    spec = EncoderSpec.from_quantizer(model.quantizer, names, mean=mean, scale=scale,
                                      source={"example": "own_model_cnn"})
    with torch.no_grad():                                          # the device (raw units) agrees with the layer
        same = bool((encode(spec, x_test) == model.quantizer.encode(xs_test).numpy()).all())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoder.json").write_text(spec.to_json())
    write_c(spec, args.out)
    (args.out / "payload.bin").write_bytes(encode_payload(spec, x_test[:4]))
    result = {"test_mse": test_mse, "predict_mean_mse": float(np.mean(y_test**2)), "codes_match": same,
              "model_id": spec.model_id, "payload_bytes_per_sample": spec.sample_bytes}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
