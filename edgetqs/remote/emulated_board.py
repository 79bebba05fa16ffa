"""An emulated 64-bit Raspberry Pi 4 board: arm64 Debian + LiteRT under qemu-user.

The root is built (once, cached by package versions) by ``.ci/make_arm64_board.sh``:
Debian bookworm's arm64 python3.11 and its dependencies unpacked with dpkg,
aarch64 wheels of numpy and the host's LiteRT (runtimes.DEFAULT_HOST_RUNTIME), and a Raspberry Pi 4's CPU
description (/proc/cpuinfo, /sys/devices/system/cpu) inside the root, because
qemu-user otherwise shows the x86 host's and LiteRT's cpuinfo crashes on it.

A board is that root plus a ``python`` shim, which runs the root's interpreter
under ``qemu-aarch64-static -cpu cortex-a72 -L ROOT``. The CPU is pinned: qemu's
default ``max`` CPU has extensions (SVE, fp16, i8mm) a Pi 4 lacks, which lets
XNNPACK pick other kernels and changes the numbers. Point a board's firmware
``install_dir`` at the shim's directory and every edgetqs stage that runs
``<install_dir>/bin/python`` on the board (provision, validate) runs on the
emulated Pi over the same SSH as a real one.

The board's RAM (``limit_ram``): the shim joins a memory cgroup whose limit is
the RAM the real board gives the process (a target's ``memory_budget_bytes``)
plus what qemu itself takes, measured, not guessed: the same tiny bundle run
natively and emulated, the difference of the native peak resident memory and
the emulated cgroup charge (~18 MiB here). A run that needs more is OOM-killed
like on the board, and validate says so (BoardOutOfMemory).

What is charged, and why it matches the board: a board's RSS (what its budget
and the planner's runtime overhead count) holds the anonymous memory (heap,
arena, the delegate's packed weights), the model file LiteRT maps and the
shared libraries' pages. A cgroup charges anonymous memory and every page
cache page to whoever first reads it. So the shim reads qemu, the whole root
and the bundle before it joins (they are then charged elsewhere, cold cache or
warm; the calibration's native RSS stands for the libraries) and, once in,
copies the bundle to a tmpfs the run reads (so the model is always charged to
the board, and cannot be reclaimed at the limit). Without that,
after a dropped page cache the libraries (~80 MiB) were charged to the board
and the fitting plan thrashed at the limit.

An address-space limit (prlimit --as / ulimit -v) cannot stand in: qemu-user
reserves ~400 MB of address space before the guest runs, and under a tight
limit it spins instead of failing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.remote.connection import Firmware, firmware_on_board
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME, RuntimeSpec
from edgetqs.targets import REPO_ROOT

BUILD_SCRIPT = REPO_ROOT / ".ci" / "make_arm64_board.sh"
QEMU = "qemu-aarch64-static"
CPU = "cortex-a72"  # the Raspberry Pi 4's core (BCM2711)
PYTHON = "usr/bin/python3.11"
FIRMWARE = "rpios-bookworm-arm64"  # the real Pi OS config the emulated board stands for
# The host's ai-edge-litert runs under qemu-user once the root describes an ARM CPU.
DEFAULT_RUNTIME = (DEFAULT_HOST_RUNTIME.package, DEFAULT_HOST_RUNTIME.version, "2.1.3")  # (distribution, version, numpy)
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
    return dataclasses.replace(firmware_on_board(FIRMWARE), runtime=RuntimeSpec(distribution, version)).with_setup(
        install_dir=str(install_dir))


def make_board_python(install_dir: Path, runtime: tuple[str, str, str] = DEFAULT_RUNTIME, cpu: str = CPU) -> Firmware:
    """Build (or reuse) the root, install the shim under ``install_dir``; return the firmware."""
    install_shim(install_dir, build_root(runtime), cpu)
    return firmware(install_dir, runtime)


# -- the board's RAM ------------------------------------------------------------

CALIBRATION_MODEL = Path(__file__).with_name("data") / "calibration.tflite"  # float MLP, window 8 x 3 features
MiB = 2**20
# How the shim charges the cgroup (_write_limited_shim); a calibration made another way is not reused.
CHARGING = "libraries-outside-bundle-in-tmpfs"


@dataclass
class RamLimit:
    """A memory cgroup holding the emulated board's Python: ``board_bytes`` for
    the process as on the real board, plus qemu's own measured overhead."""

    cgroup: Path
    board_bytes: int
    qemu_overhead_bytes: int

    @property
    def limit_bytes(self) -> int:
        return self.board_bytes + self.qemu_overhead_bytes

    def oom_kills(self) -> int:
        return _oom_kills(self.cgroup)

    def peak_bytes(self) -> int:
        """The most memory charged to the cgroup so far (v1, or v2's memory.peak)."""
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            text = _read(self.cgroup / name).strip()
            if text.isdigit():
                return int(text)
        raise EdgeTQSError(f"{self.cgroup} reports no peak memory", "use a kernel with memory.peak (>= 5.19) or cgroup v1")

    def reset_peak(self) -> None:
        """Start peak_bytes afresh (before the next run)."""
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            try:
                (self.cgroup / name).write_text("0")
                return
            except OSError:
                continue

    def remove(self) -> None:
        """Delete the cgroup (its processes have ended)."""
        try:
            self.cgroup.rmdir()
        except OSError:
            pass

    def __enter__(self) -> RamLimit:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def memory_cgroup_parent() -> Path | None:
    """A memory cgroup this process may create children in (v2, else v1), or None."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        v2 = Path("/sys/fs/cgroup") / path.lstrip("/")
        if controllers == "" and "memory" in _read(v2 / "cgroup.subtree_control").split():
            candidate = v2  # v2: its children get memory.max only if the controller is delegated to them
        elif "memory" in controllers.split(","):
            candidate = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
        else:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _oom_kills(cgroup: Path) -> int:
    for name in ("memory.events", "memory.oom_control"):  # v2, v1
        for line in _read(cgroup / name).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return 0


def _make_cgroup(limit_bytes: int | None) -> Path:
    """A new memory cgroup limited to ``limit_bytes`` without swap (None: no limit)."""
    parent = memory_cgroup_parent()
    if parent is None:
        raise EdgeTQSError("no writable memory cgroup, so the emulated board's RAM cannot be enforced",
                           "run as root on a machine with the cgroup memory controller (v1 or v2) mounted")
    cgroup = parent / f"edgetqs-board-{uuid.uuid4().hex[:12]}"
    cgroup.mkdir()
    v2 = (cgroup / "memory.max").exists()
    if not v2 and not (cgroup / "memory.limit_in_bytes").exists():
        cgroup.rmdir()
        raise EdgeTQSError(f"{parent} gives its child cgroups no memory controller",
                           f"delegate it (echo +memory > {parent}/cgroup.subtree_control) or use cgroup v1")
    if limit_bytes is None:
        return cgroup
    (cgroup / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(limit_bytes))
    # Swap would let the process outgrow the RAM instead of being killed; a board's SD card is not swap.
    swap = cgroup / ("memory.swap.max" if v2 else "memory.memsw.limit_in_bytes")
    if swap.exists():
        swap.write_text("0" if v2 else str(limit_bytes))
    return cgroup


def qemu_overhead_bytes(root: Path, cpu: str = CPU) -> int:
    """What the cgroup must allow beyond the board's RAM: the tiny calibration
    run's cgroup charge under qemu minus the same run's peak RSS natively
    (RSS is what the board's budget and the planner's runtime overhead count).
    Cached per root, CPU and way of charging (CHARGING).

    The shim charges the same whatever the page cache holds (the module's
    docstring says how), so a run's charge minus this calibration's is what
    the run adds to the board's RSS."""
    cache = root.with_name(root.name + f".qemu-overhead-{cpu}-{CHARGING}.json")
    if cache.exists():
        return json.loads(cache.read_text())["overhead_bytes"]
    with tempfile.TemporaryDirectory(prefix="edgetqs-calibrate-") as work:
        bundle = calibration_bundle(Path(work) / "bundle")
        native_rss = _runner_peak_rss([sys.executable], bundle, Path(work) / "native")
        with RamLimit(_make_cgroup(None), 0, 0) as unlimited:
            shim = _write_limited_shim(Path(work) / "python", root, cpu, unlimited, "calibration")
            _runner_peak_rss([str(shim)], bundle, Path(work) / "emulated")
            emulated_charge = unlimited.peak_bytes()
    overhead = emulated_charge - native_rss
    cache.write_text(json.dumps({"overhead_bytes": overhead, "native_peak_rss_bytes": native_rss,
                                 "emulated_peak_charge_bytes": emulated_charge, "cpu": cpu}))
    return overhead


def calibration_bundle(out: Path) -> Path:
    """A bundle of the tiny calibration model (its references are unused: only memory is measured)."""
    import numpy as np

    from edgetqs.bundle import write_bundle

    window, features, steps = 8, 3, 4
    zeros = np.zeros((1, steps, features), np.float32)
    return write_bundle(out, model=CALIBRATION_MODEL, rollout={"window": window, "features": features, "patch": 1},
                        probes_x=np.zeros((1, window, features), np.float32),
                        probes_y=np.zeros((1, features), np.float32),
                        contexts=np.zeros((1, window, features), np.float32), horizon=steps,
                        reference_float=zeros, reference_host=zeros)


def _runner_peak_rss(python: list[str], bundle: Path, out: Path) -> int:
    from edgetqs.remote import runner

    done = subprocess.run([*python, runner.__file__, "--bundle", str(bundle), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise EdgeTQSError(f"calibrating the emulated board's memory failed:\n{done.stderr.strip()[-2000:]}",
                           "check the arm64 root (.ci/make_arm64_board.sh) and this Python's ai-edge-litert")
    return json.loads((out / runner.RESULTS_JSON).read_text())["peak_memory_kib"] * 1024


def limit_ram(install_dir: Path, root: Path, board_bytes: int, cpu: str = CPU) -> RamLimit:
    """Rewrite the shim so the board's Python runs inside a memory cgroup of
    ``board_bytes`` (+ qemu's measured overhead); an OOM kill says so on stderr."""
    overhead = qemu_overhead_bytes(root, cpu)
    limit = RamLimit(_make_cgroup(board_bytes + overhead), board_bytes, overhead)
    install_shim(install_dir, root, cpu)
    _write_limited_shim(Path(install_dir) / "bin" / "python", root, cpu, limit,
                        f"{board_bytes / MiB:.1f} MiB for the process as on the board + "
                        f"{overhead / MiB:.1f} MiB measured qemu overhead")
    return limit


def _write_limited_shim(shim: Path, root: Path, cpu: str, limit: RamLimit, why: str) -> Path:
    """A shim that charges the board's cgroup the same whatever the page cache
    holds (the module's docstring says how), runs qemu in it, and reports an OOM kill on stderr."""
    command = " ".join(shlex.quote(part) for part in python_command(root, cpu))
    procs, kills = shlex.quote(str(limit.cgroup / "cgroup.procs")), _oom_kills_command(limit.cgroup)
    shim.write_text(
        "#!/bin/sh\n"
        f"# The emulated Raspberry Pi 4's Python in the board's RAM: {why} (edgetqs.remote.emulated_board)\n"
        'bundle=; take=; for a in "$@"; do [ -n "$take" ] && bundle=$a; take=; [ "$a" = --bundle ] && take=1; done\n'
        f"{_read_outside_command(root)}\n"
        f'echo $$ > {procs} || {{ echo "emulated board: cannot join the memory cgroup" >&2; exit 70; }}\n'
        f"{_STAGE_BUNDLE}\n"
        f"before=$({kills})\n"
        f'{command} "$@"\n'
        "status=$?\n"
        f'if [ "$({kills})" -gt "$before" ]; then\n'
        f'  echo "emulated board: out of memory: the process outgrew the board\'s RAM '
        f'({limit.board_bytes / MiB:.1f} MiB) and the kernel killed it" >&2\n'
        "fi\n"
        "exit $status\n")
    shim.chmod(0o755)
    return shim


def _read_outside_command(root: Path) -> str:
    """Shell that reads qemu, every file of the root and the bundle's (--bundle
    DIR) before the shim joins the cgroup: their pages are then cached and
    charged to the caller's cgroup, so the board's is never charged for them,
    however cold the cache was. (0.2 s warm, 0.6 s cold for the 164 MB root.)"""
    qemu = shutil.which(QEMU) or QEMU
    return (f"find {shlex.quote(str(root))} -type f -exec cat {{}} + > /dev/null 2>&1; "
            f"cat {shlex.quote(qemu)} > /dev/null; "
            '[ -n "$bundle" ] && find "$bundle" -type f -exec cat {} + > /dev/null 2>&1')


# Inside the cgroup, the bundle is copied to a tmpfs (/dev/shm) and the run
# reads that copy: the model LiteRT maps is then charged to the board whole,
# as the planner and a board's RSS count it, and cannot be reclaimed (no swap).
# From a disk's page cache it could: at the limit the kernel evicted the
# mapped model and faulted it back in for up to a minute before the OOM kill.
_STAGE_BUNDLE = (
    'stage=\n'
    'trap \'[ -n "$stage" ] && rm -rf "$stage"\' EXIT; trap "exit 129" HUP; trap "exit 130" INT; trap "exit 143" TERM\n'
    'if [ -n "$bundle" ]; then\n'
    '  stage=$(mktemp -d /dev/shm/edgetqs-board.XXXXXX) && cp -R "$bundle"/. "$stage"/ || '
    '{ echo "emulated board: cannot copy the bundle to /dev/shm" >&2; exit 70; }\n'
    '  n=$#; take=\n'
    '  for a in "$@"; do [ -n "$take" ] && a=$stage; take=; [ "$a" = --bundle ] && take=1; set -- "$@" "$a"; done\n'
    '  shift "$n"\n'
    'fi')


def _oom_kills_command(cgroup: Path) -> str:
    files = " ".join(shlex.quote(str(cgroup / name)) for name in ("memory.events", "memory.oom_control"))
    return f"cat {files} 2>/dev/null | awk '$1 == \"oom_kill\" {{print $2; found=1}} END {{if (!found) print 0}}'"
