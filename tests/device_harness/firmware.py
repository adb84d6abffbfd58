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

__all__ = ["BOARDS", "STRICT", "STRICT_CXX", "Board", "build_firmware", "build_sketch_firmware", "missing_tools",
           "run_firmware"]

HERE = Path(__file__).resolve().parent
STRICT = ("-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror")
STRICT_CXX = ("-std=c++11", "-pedantic", "-Wall", "-Wextra", "-Werror", "-fno-exceptions", "-fno-rtti")
#: the stand-in Arduino core that runs a package's example sketch off the board
ARDUINO_SHIM = HERE / "arduino"
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


def _compile(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{r.stderr}")


def build_sketch_firmware(board: Board, package: Path, sketch: Path, out: Path, *, opt: str = "-O2") -> Path:
    """An Arduino sketch of a softbits package, built as C++ with arm-none-eabi-g++ against the
    package's C encoder (compiled as C) and the stand-in Arduino core, for ``board``.

    The sketch uses no C++ library (no exceptions, RTTI or allocation), so the objects link with
    gcc's C runtime: Debian's gcc-arm-none-eabi ships no nano libstdc++."""
    objects = []
    for source in sorted((package / "src").glob("*.c")) + [HERE / "startup.c"]:
        obj = out.with_name(f"{out.stem}.{source.stem}.o")
        _compile(["arm-none-eabi-gcc", *board.cpu_flags, opt, *STRICT, "-c", str(source), "-o", str(obj)],
                 f"arm-none-eabi-gcc {source.name}")
        objects.append(str(obj))
    for source in (sketch, ARDUINO_SHIM / "main.cpp"):
        obj = out.with_name(f"{out.stem}.{source.stem}.cpp.o")
        _compile(["arm-none-eabi-g++", *board.cpu_flags, opt, *STRICT_CXX, "-I", str(package / "src"),
                  "-I", str(ARDUINO_SHIM), "-x", "c++", "-c", str(source), "-o", str(obj)],
                 f"arm-none-eabi-g++ {source.name}")
        objects.append(str(obj))
    _compile(["arm-none-eabi-gcc", *board.cpu_flags, *LINK, *objects, "-o", str(out)],
             f"linking for {board.machine}")
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
