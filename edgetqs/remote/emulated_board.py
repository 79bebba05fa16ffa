"""An emulated 64-bit Raspberry Pi 4 board: arm64 Debian + LiteRT under qemu-user.

The root is built (once, cached by package versions) by ``.ci/make_arm64_board.sh``:
Debian bookworm's arm64 python3.11 and its dependencies unpacked with dpkg,
aarch64 wheels of numpy and ai-edge-litert 2.3.0, and a Raspberry Pi 4's CPU
description (/proc/cpuinfo, /sys/devices/system/cpu) inside the root, because
qemu-user otherwise shows the x86 host's and LiteRT's cpuinfo crashes on it.

A board is that root plus a ``python`` shim, which runs the root's interpreter
under ``qemu-aarch64-static -cpu cortex-a72 -L ROOT``. The CPU is pinned: qemu's
default ``max`` CPU has extensions (SVE, fp16, i8mm) a Pi 4 lacks, which lets
XNNPACK pick other kernels and changes the numbers. Point a board's firmware
``install_dir`` at the shim's directory and every edgetqs stage that runs
``<install_dir>/bin/python`` on the board (provision, validate) runs on the
emulated Pi over the same SSH as a real one.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.planner.boards import REPO_ROOT
from edgetqs.remote.boards import Firmware, load_firmware

BUILD_SCRIPT = REPO_ROOT / ".ci" / "make_arm64_board.sh"
QEMU = "qemu-aarch64-static"
CPU = "cortex-a72"  # the Raspberry Pi 4's core (BCM2711)
PYTHON = "usr/bin/python3.11"
FIRMWARE = "rpios-bookworm-arm64"  # the real Pi OS config the emulated board stands for
# ai-edge-litert 2.3.0 runs under qemu-user once the root describes an ARM CPU.
DEFAULT_RUNTIME = ("ai-edge-litert", "2.3.0", "2.1.3")  # (distribution, version, numpy)
# tflite-runtime 2.14.0 needs numpy < 2; it computes AEQ's int8 dynamic
# FULLY_CONNECTED wrongly (capability matrix): a board validation must fail.
OLD_TFLITE_RUNTIME = ("tflite-runtime", "2.14.0", "1.26.4")


def build_root(runtime: tuple[str, str, str] = DEFAULT_RUNTIME, timeout: float = 900) -> Path:
    """Build the arm64 root with ``runtime`` if it is not cached yet; return its path."""
    if not shutil.which(QEMU):
        raise EdgeTQSError(f"{QEMU} is not installed, so no arm64 board can be emulated",
                           "apt-get install -y qemu-user-static")
    distribution, version, numpy_version = runtime
    env = dict(os.environ, EDGETQS_ARM64_RUNTIME=f"{distribution}=={version}", EDGETQS_ARM64_NUMPY=numpy_version)
    try:
        done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise EdgeTQSError(f"building the arm64 board root took longer than {timeout:g} s",
                           f"run {BUILD_SCRIPT} by hand to see where it stalls") from None
    if done.returncode != 0:
        raise EdgeTQSError(f"building the arm64 board root failed:\n{done.stderr.strip()[-2000:]}",
                           f"run {BUILD_SCRIPT} by hand; it needs Debian's and PyPI's package servers")
    return Path(done.stdout.strip().splitlines()[-1])


def python_command(root: Path, cpu: str = CPU) -> list[str]:
    """The argv prefix that runs the board's Python on this machine."""
    return [QEMU, "-cpu", cpu, "-L", str(root), str(root / PYTHON)]


def install_shim(install_dir: Path, root: Path, cpu: str = CPU) -> Path:
    """Write ``install_dir/bin/python`` (and python3) that exec the emulated interpreter."""
    bin_dir = Path(install_dir) / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "python"
    command = " ".join(shlex.quote(part) for part in python_command(root, cpu))
    shim.write_text(f"#!/bin/sh\n# The emulated Raspberry Pi 4's Python (edgetqs.remote.emulated_board)\n"
                    f'exec {command} "$@"\n')
    shim.chmod(0o755)
    python3 = bin_dir / "python3"
    if not python3.exists():
        os.symlink("python", python3)
    return shim


def firmware(install_dir: Path, runtime: tuple[str, str, str] = DEFAULT_RUNTIME) -> Firmware:
    """Pi OS bookworm arm64's firmware config, its venv being the shim's directory."""
    distribution, version, _ = runtime
    return dataclasses.replace(load_firmware(FIRMWARE), install_dir=str(install_dir),
                               runtime=distribution, runtime_version=version)


def make_board_python(install_dir: Path, runtime: tuple[str, str, str] = DEFAULT_RUNTIME, cpu: str = CPU) -> Firmware:
    """Build (or reuse) the root, install the shim under ``install_dir``; return the firmware."""
    install_shim(install_dir, build_root(runtime), cpu)
    return firmware(install_dir, runtime)
