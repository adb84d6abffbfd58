"""Encoder and packer throughput (values/s, one core) against ``np.searchsorted`` per feature.

For F in {8, 81} and bits in {2, 4, 6, 8}: random sorted float32 thresholds, ~4 M standard-normal
float32 inputs; each timing is the best of ``--repeats`` runs after a warm-up (numba compiled).
Writes JSON with the machine description to benchmarks/results/encoder.json.

    .venv/bin/python benchmarks/bench_encoder.py [--values 4000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import best_of, save_result

from softbits.device.encode import encode, has_numba, pack, unpack
from softbits.device.spec import EncoderSpec
from softbits.provenance import machine_info

RESULTS = Path(__file__).parent / "results" / "encoder.json"


def machine() -> dict[str, object]:
    return {**machine_info("numpy", "numba"), "threads_used": 1}


def searchsorted_per_feature(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The baseline: one ``np.searchsorted`` per feature column (NaN handling excluded)."""
    out = np.empty(x.shape, dtype=np.uint8)
    for j in range(x.shape[1]):
        out[:, j] = np.searchsorted(table[j], x[:, j], side="left")
    return out


def run(n_values: int, repeats: int) -> dict[str, object]:
    if not has_numba():
        raise SystemExit("numba is not installed; the benchmark measures the numba kernels")
    rng = np.random.default_rng(0)
    rows = []
    for n_features in (8, 81):
        for bits in (2, 4, 6, 8):
            m = (1 << bits) - 1
            table = np.sort(rng.standard_normal((n_features, m)).astype(np.float32), axis=1)
            spec = EncoderSpec(tuple(f"f{i}" for i in range(n_features)), bits, table)
            x = rng.standard_normal((n_values // n_features, n_features)).astype(np.float32)
            n = x.size
            codes = encode(spec, x, "numba")
            assert np.array_equal(codes, searchsorted_per_feature(table, x))
            packed = pack(codes, bits, "numba")
            assert np.array_equal(unpack(packed, n_features, bits, "numba"), codes)
            t_enc = best_of(lambda: encode(spec, x, "numba"), repeats)
            t_ss = best_of(lambda: searchsorted_per_feature(table, x), repeats)
            t_pack = best_of(lambda: pack(codes, bits, "numba"), repeats)
            t_pack_np = best_of(lambda: pack(codes, bits, "numpy"), max(1, repeats // 2))
            t_unpack = best_of(lambda: unpack(packed, n_features, bits, "numba"), repeats)
            row = {
                "n_features": n_features, "bits": bits, "values": n,
                "encode_values_per_s": n / t_enc,
                "searchsorted_values_per_s": n / t_ss,
                "encode_speedup_vs_searchsorted": t_ss / t_enc,
                "pack_values_per_s": n / t_pack,
                "pack_numpy_values_per_s": n / t_pack_np,
                "unpack_values_per_s": n / t_unpack,
            }
            rows.append(row)
            print(f"F={n_features:3d} bits={bits}: encode {n / t_enc / 1e6:7.1f} M/s "
                  f"(searchsorted {n / t_ss / 1e6:6.1f} M/s, ×{t_ss / t_enc:4.1f}) "
                  f"pack {n / t_pack / 1e6:7.1f} M/s (numpy {n / t_pack_np / 1e6:6.1f}) "
                  f"unpack {n / t_unpack / 1e6:7.1f} M/s", flush=True)
    return {"benchmark": "encoder", "machine": machine(), "repeats": repeats, "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=4_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.values, args.repeats)
    save_result(result, args.out)


if __name__ == "__main__":
    main()
