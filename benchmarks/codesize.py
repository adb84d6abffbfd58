"""Cortex-M4 code size of the generated encoder: code bytes besides the threshold table.

Compiles ``softbits_encoder.c`` with ``arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -Os -c`` for
several (features, bits) shapes and reads the sections with ``arm-none-eabi-size -A``. The table
(4 bytes per threshold) and the 14-byte header prefix live in .rodata; ``code_bytes`` is the
Berkeley "text" total (.text + .rodata) minus both. Writes benchmarks/results/codesize.json.

    .venv/bin/python benchmarks/codesize.py
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
from common import save_result

from softbits.device.cgen import C_SOURCE_NAME, write_c
from softbits.device.spec import EncoderSpec

RESULTS = Path(__file__).parent / "results" / "codesize.json"
CC = ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-Os", "-std=c99", "-Wall", "-Wextra",
      "-Werror", "-pedantic", "-c"]
SHAPES = [(10, 4), (8, 2), (8, 6), (8, 8), (81, 2), (81, 4)]


def sections(obj: Path) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-size", "-A", str(obj)], capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def measure(n_features: int, bits: int, tmp: Path) -> dict[str, object]:
    rng = np.random.default_rng(n_features * 10 + bits)
    table = np.sort(rng.standard_normal((n_features, (1 << bits) - 1)).astype(np.float32), axis=1)
    spec = EncoderSpec(tuple(f"f{i}" for i in range(n_features)), bits, table)
    write_c(spec, tmp)
    obj = tmp / "softbits_encoder.o"
    subprocess.run([*CC, str(tmp / C_SOURCE_NAME), "-o", str(obj)], check=True)
    s = sections(obj)
    table_bytes = 4 * table.size
    rodata = sum(v for k, v in s.items() if k.startswith(".rodata"))
    text = s.get(".text", 0)
    return {"n_features": n_features, "bits": bits, "text_section": text, "rodata_section": rodata,
            "table_bytes": table_bytes, "header_prefix_bytes": 14,
            "code_bytes": text + rodata - table_bytes - 14}


def main() -> None:
    version = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[0]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n_features, bits in SHAPES:
            row = measure(n_features, bits, Path(d))
            rows.append(row)
            print(f"F={n_features:3d} bits={bits}: code {row['code_bytes']} B "
                  f"(.text {row['text_section']} B, table {row['table_bytes']} B)")
    result = {"benchmark": "codesize", "compiler": version, "flags": " ".join(CC[1:]), "results": rows,
              "goal_code_bytes": 1024}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    save_result(result, RESULTS)


if __name__ == "__main__":
    main()
