"""Build the harness firmware for QEMU's emulated Cortex-M boards and run it.

Shared by tests/test_emulated_device.py and benchmarks/device_icount.py, so that the parity
test and the instruction counts use the same boards, flags, startup code and linker script.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BOARDS", "STRICT", "Board", "build_firmware", "missing_tools", "run_firmware"]

HERE = Path(__file__).resolve().parent
STRICT = ("-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror")
# No crt0: startup.c is the reset handler; nano newlib with semihosting (rdimon) for stdio.
LINK = ("-nostartfiles", "--specs=nano.specs", "--specs=rdimon.specs", "-T", str(HERE / "mps2.ld"))


@dataclass(frozen=True)
class Board:
    """One QEMU machine and the compiler flags for its core."""

    machine: str
    core: str
    cpu_flags: tuple[str, ...]


BOARDS = (
    Board("mps2-an386", "Cortex-M4F, hard float",
          ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")),
    Board("mps2-an385", "Cortex-M3, soft float", ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft")),
)


def missing_tools() -> list[str]:
    """The Debian packages the emulated runs need that this machine lacks."""
    missing = []
    if shutil.which("qemu-system-arm") is None:
        missing.append("qemu-system-arm")
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("arm-none-eabi-size") is None:
        return missing + ["gcc-arm-none-eabi", "libnewlib-arm-none-eabi"]
    # gcc prints the bare name back when it cannot find the file, i.e. newlib is not installed
    specs = subprocess.run(["arm-none-eabi-gcc", "-print-file-name=rdimon.specs"],
                           check=False, capture_output=True, text=True).stdout.strip()
    if not Path(specs).is_absolute():
        missing.append("libnewlib-arm-none-eabi")
    return missing


def build_firmware(board: Board, c_dir: Path, main_source: Path, out: Path, *,
                   opt: str = "-O2", extra_sources: Sequence[Path] = ()) -> Path:
    """Link startup.c, ``main_source`` and the generated encoder in ``c_dir`` into ``out`` (ELF).

    Raises ``RuntimeError`` with the compiler's messages when gcc refuses (every warning is an
    error), so a caller can tell the C apart from the emulator.
    """
    cmd = ["arm-none-eabi-gcc", *board.cpu_flags, opt, *STRICT, "-I", str(c_dir), *LINK,
           str(HERE / "startup.c"), str(main_source), str(c_dir / "softbits_encoder.c"),
           *map(str, extra_sources), "-o", str(out)]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"arm-none-eabi-gcc failed for {board.machine}:\n{r.stderr}")
    return out


def run_firmware(board: Board, elf: Path, cwd: Path, *, icount: bool = False,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``elf`` on the board; semihosting file names are relative to ``cwd``.

    ``icount``: ``-icount shift=0``, so the virtual clock advances one nanosecond per executed
    instruction (QEMU is not cycle-accurate; it counts instructions, not cycles).
    """
    cmd = ["qemu-system-arm", "-M", board.machine, "-nographic", "-monitor", "none",
           "-serial", "none", "-semihosting-config", "enable=on,target=native",
           *(["-icount", "shift=0"] if icount else []), "-kernel", str(elf)]
    return subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, timeout=timeout)
