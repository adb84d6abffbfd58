"""One-sample latency of the server side: ONNX Runtime on ``softbits export --format onnx``
against softbits's own ``predict_codes`` (PyTorch, no module dispatch), same model, same codes.

    python benchmarks/bench_onnx.py --out benchmarks/results/onnx.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from common import best_of, save_result

from softbits.data import load_dataset
from softbits.provenance import machine_info, runtime_info
from softbits.training.config import TrainConfig
from softbits.training.onnx_export import export_onnx, sent_codes
from softbits.training.train import train_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cpu_act")
    parser.add_argument("--method", default="bw-sq")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--neurons", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/onnx.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset(args.dataset)
    model = train_dataset(ds, TrainConfig(method=args.method, bits=args.bits, layers=args.layers,
                                          neurons=args.neurons, epochs=2, device="cpu"))
    codes = model.encode(ds.X[:1000])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx")
        session = ort.InferenceSession(str(path), options)
    feeds = [{"codes": sent_codes(model, codes[i:i + 1])} for i in range(100)]
    batch = {"codes": sent_codes(model, codes)}
    diff = float(np.abs(session.run(None, batch)[0] - model.predict_codes(codes)).max() / model.y_scaler.scale[0])
    state = {"i": 0}

    def onnx_one() -> None:
        session.run(None, feeds[state["i"] % 100])
        state["i"] += 1

    def torch_one() -> None:
        model.predict_codes(codes[state["i"] % 100:state["i"] % 100 + 1])
        state["i"] += 1

    result = {"benchmark": "onnx one-sample latency", "settings": vars(args) | {"out": str(args.out)},
              "machine": machine_info(), "versions": runtime_info(torch.device("cpu")) | {"onnxruntime": ort.__version__},
              "max_abs_diff_standardized_1000_rows": diff}
    for name, fn in (("onnxruntime_us", onnx_one), ("softbits_predict_codes_us", torch_one)):
        result[name] = best_of(fn, blocks=7, calls=200) * 1e6
    result["onnx_over_torch"] = result["onnxruntime_us"] / result["softbits_predict_codes_us"]
    print({k: v for k, v in result.items() if k.endswith(("_us", "torch", "rows"))})
    save_result(result, args.out)


if __name__ == "__main__":
    main()
