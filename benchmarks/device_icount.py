"""Code size and instructions per encoded sample of the generated encoder on emulated Cortex-M boards.

For each board of tests/device_harness/firmware.py (QEMU mps2-an386: Cortex-M4F, hard float;
mps2-an385: Cortex-M3, soft float), each optimisation level and each (features, bits) shape,
uniform or mixed (one width per feature, 0 = not sent; ``bits`` null and ``widths`` listed):

* code size: ``arm-none-eabi-size -A`` of ``softbits_encoder.o`` compiled with the board's flags;
  ``code_bytes`` is .text + .rodata minus the threshold table (4 bytes per threshold; for mixed
  widths also the F-byte ``softbits_feature_bits``) and the 14-byte header prefix, as in
  codesize.py.
* instructions: tests/device_harness/bench.c runs under ``qemu-system-arm -icount shift=0``,
  where the virtual clock advances exactly one nanosecond per executed instruction. The firmware
  reads the SysTick counter, which QEMU drives from that virtual clock, around (a) a calibration
  loop of 2,000,000 instructions, which gives instructions per tick (40: the boards' 25 MHz
  clock); (b) 100 passes over 64 standard-normal rows in RAM calling ``softbits_encode``; (c) the
  same loop calling an empty function of the same signature. ``instructions_per_sample`` is
  (b − c) per call: what an encode costs beyond calling a function that does nothing.
  ``instructions_per_call_in_loop`` is (b) per call. One tick is 40 instructions, so over 6,400
  calls the counts are exact to 0.01 instructions. QEMU is not cycle-accurate: these are
  instructions, not cycles (on a real M4, loads and taken branches take 2+ cycles).

Thresholds are sorted standard-normal float32 values, as in codesize.py. The mixed shapes spend
the code bits of uniform 2 bits (21 features, 42 bits) and of uniform 2 bits on 8 features
(16 bits), with two features left out. Writes benchmarks/results/device_icount.json.

    .venv/bin/python benchmarks/device_icount.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from codesize import sections
from common import save_result

from softbits.device.cgen import C_SOURCE_NAME, write_c
from softbits.device.spec import EncoderSpec
from softbits.provenance import machine_info

HARNESS = Path(__file__).resolve().parents[1] / "tests" / "device_harness"
sys.path.insert(0, str(HARNESS))
from firmware import BOARDS, STRICT, Board, build_firmware, missing_tools, run_firmware

RESULTS = Path(__file__).parent / "results" / "device_icount.json"
#: (features, bits) for uniform widths, (features, per-feature widths) for mixed ones
SHAPES: list[tuple[int, int | tuple[int, ...]]] = [
    (8, 2), (8, 4), (21, 2), (21, 4), (21, 8),
    (8, (4, 3, 3, 2, 2, 1, 1, 0)),
    (21, (4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0)),
]
OPTS = ["-Os", "-O2"]
N_ROWS = 64  # bench.c's MAX_ROWS


def synthetic_spec(n_features: int, bits: int | tuple[int, ...]) -> EncoderSpec:
    """Uniform: the seed and table of the earlier rows. Mixed: each feature's sorted thresholds, +inf after."""
    names = tuple(f"f{i}" for i in range(n_features))
    if isinstance(bits, int):
        rng = np.random.default_rng(n_features * 10 + bits)
        table = np.sort(rng.standard_normal((n_features, (1 << bits) - 1)).astype(np.float32), axis=1)
        return EncoderSpec(names, bits, table)
    rng = np.random.default_rng(n_features * 10 + sum(bits))
    table = np.full((n_features, (1 << max(bits)) - 1), np.inf, dtype=np.float32)
    for f, w in enumerate(bits):
        table[f, :(1 << w) - 1] = np.sort(rng.standard_normal((1 << w) - 1).astype(np.float32))
    return EncoderSpec(names, max(bits), table, widths=bits)


def code_size(board: Board, opt: str, spec: EncoderSpec, c_dir: Path) -> dict[str, int]:
    obj = c_dir / "softbits_encoder.o"
    subprocess.run(["arm-none-eabi-gcc", *board.cpu_flags, opt, *STRICT, "-c", str(c_dir / C_SOURCE_NAME),
                    "-o", str(obj)], check=True)
    s = sections(obj)
    text = s.get(".text", 0)
    rodata = sum(v for k, v in s.items() if k.startswith(".rodata"))
    table_bytes = 4 * int(spec.active.sum()) + (spec.n_features if spec.widths else 0)
    return {"text_section": text, "rodata_section": rodata, "table_bytes": table_bytes,
            "code_bytes": text + rodata - table_bytes - 14}


def instructions(board: Board, opt: str, spec: EncoderSpec, c_dir: Path) -> dict[str, float]:
    rows = np.random.default_rng(spec.n_features + (spec.bits if spec.widths is None else spec.code_bits)) \
        .standard_normal((N_ROWS, spec.n_features))
    (c_dir / "input.f32").write_bytes(rows.astype(np.float32).tobytes())
    elf = build_firmware(board, c_dir, HARNESS / "bench.c", c_dir / "bench.elf", opt=opt,
                         extra_sources=[HARNESS / "nop.c"])
    r = run_firmware(board, elf, c_dir, icount=True)
    if r.returncode != 0:
        raise SystemExit(f"bench firmware exited with {r.returncode} on {board.machine}: {r.stdout}{r.stderr}")
    calibration_instructions, calibration_ticks, calls, encode, empty = map(int, r.stdout.split())
    per_tick = calibration_instructions / calibration_ticks
    return {"instructions_per_tick": per_tick, "calls": calls,
            "instructions_per_sample": (encode - empty) * per_tick / calls,
            "instructions_per_call_in_loop": encode * per_tick / calls}


def tool_version(cmd: str) -> str:
    return subprocess.run([cmd, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]


def run() -> dict[str, object]:
    missing = missing_tools()
    if missing:
        raise SystemExit(f"needs the Debian packages {', '.join(missing)} (scripts/setup.sh installs them)")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        c_dir = Path(d)
        for board in BOARDS:
            for opt in OPTS:
                for n_features, bits in SHAPES:
                    spec = synthetic_spec(n_features, bits)
                    write_c(spec, c_dir)
                    shape = ({"bits": bits} if isinstance(bits, int)
                             else {"bits": None, "widths": list(bits), "code_bits": spec.code_bits})
                    row = {"board": board.machine, "core": board.core, "flags": " ".join([*board.cpu_flags, opt]),
                           "n_features": n_features, **shape, **code_size(board, opt, spec, c_dir),
                           **instructions(board, opt, spec, c_dir)}
                    rows.append(row)
                    print(f"{board.machine} {opt} F={n_features:2d} bits={bits}: {row['code_bytes']:4d} B code, "
                          f"{row['instructions_per_sample']:7.1f} instructions/sample "
                          f"({row['instructions_per_sample'] / n_features:5.1f}/feature)", flush=True)
    return {"benchmark": "device_icount",
            "machine": {**machine_info("numpy"), "qemu": tool_version("qemu-system-arm"),
                        "compiler": tool_version("arm-none-eabi-gcc")},
            "method": "qemu-system-arm -icount shift=0 (1 ns of virtual time per instruction); SysTick "
                      "read around encode loop and empty-call loop, calibrated by a 2e6-instruction loop",
            "rows_per_pass": N_ROWS, "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    save_result(run(), args.out)


if __name__ == "__main__":
    main()
