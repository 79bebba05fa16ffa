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
cache page to whoever first reads it. So the shim (through board_ram.py) reads
qemu, the whole root and the bundle before it joins (they are then charged
elsewhere, cold cache or warm; the calibration's native RSS stands for the
libraries) and, once in, copies the bundle to a tmpfs the run reads (so the
model is always charged to the board, and cannot be reclaimed at the limit,
where the kernel used to evict and re-fault it for up to a minute before the
OOM kill). Without that, after a dropped page cache the libraries (~77 MiB)
were charged to the board and the fitting plan thrashed at the limit. It also
turns transparent huge pages off for qemu, whose share of them varies with
the host's memory fragmentation.

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
from dataclasses import dataclass, field
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
# The emulated charge is the least of this many runs: now and then one takes ~5 MiB more (71 -> 76 MiB for
# the calibration model, 1 run in ~10), which would loosen every limit by as much.
CALIBRATION_RUNS = 3
# How the shim charges the cgroup (_write_limited_shim); a calibration made another way is not reused.
CHARGING = "libraries-outside-bundle-in-tmpfs-no-thp"


@dataclass
class RamLimit:
    """A memory cgroup holding the emulated board's Python: ``board_bytes`` for
    the process as on the real board, plus qemu's own measured overhead."""

    cgroup: Path
    board_bytes: int
    qemu_overhead_bytes: int
    _peak_fd: int | None = field(default=None, repr=False)  # v2's memory.peak as reset by reset_peak

    @property
    def limit_bytes(self) -> int:
        return self.board_bytes + self.qemu_overhead_bytes

    def oom_kills(self) -> int:
        return _oom_kills(self.cgroup)

    def peak_bytes(self) -> int:
        """The most memory charged to the cgroup so far, or since reset_peak (v1, or v2's memory.peak)."""
        if self._peak_fd is not None:
            return int(os.pread(self._peak_fd, 64, 0))
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            text = _read(self.cgroup / name).strip()
            if text.isdigit():
                return int(text)
        raise EdgeTQSError(f"{self.cgroup} reports no peak memory", "use a kernel with memory.peak (>= 5.19) or cgroup v1")

    def reset_peak(self) -> None:
        """Start peak_bytes afresh (before the next run)."""
        v1 = self.cgroup / "memory.max_usage_in_bytes"
        if v1.exists():
            v1.write_text("0")
            return
        # v2 (Linux >= 6.12): a write resets memory.peak only as read through the same open file.
        self._close_peak()
        try:
            fd = os.open(self.cgroup / "memory.peak", os.O_RDWR)
        except OSError:
            return
        try:
            os.write(fd, b"reset")
            self._peak_fd = fd
        except OSError:  # older kernels: read-only, the peak since creation
            os.close(fd)

    def _close_peak(self) -> None:
        if self._peak_fd is not None:
            os.close(self._peak_fd)
            self._peak_fd = None

    def remove(self) -> None:
        """Delete the cgroup (its processes have ended)."""
        self._close_peak()
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
    for candidate in memory_cgroup_candidates(_read(Path("/proc/self/cgroup")), _read(Path("/proc/self/mountinfo"))):
        if os.access(candidate, os.W_OK):
            return candidate
    return None


def memory_cgroup_candidates(cgroups: str, mountinfo: str) -> list[Path]:
    """Where a memory cgroup of this process's could be made, best first, from
    /proc/self/cgroup and /proc/self/mountinfo. v2 (the cgroup2 mount, which a
    hybrid layout puts at /sys/fs/cgroup/unified): its own cgroup if that
    hands the memory controller to children (only the root does: v2 keeps
    processes out of inner cgroups), else its parent if the controller reaches
    its own (the board's cgroup is then a sibling). v1: its cgroup in the
    memory hierarchy. (A hybrid machine whose memory controller is bound to v1
    lists it in no v2 cgroup.controllers, so v2 gives nothing there.)"""
    mounts = _cgroup_mounts(mountinfo)
    v2, v1 = [], []
    for line in cgroups.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "" and "cgroup2" in mounts:
            mount_point, own = _in_mount(mounts["cgroup2"], path)
            if "memory" in _read(own / "cgroup.subtree_control").split():
                v2.append(own)
            elif "memory" in _read(own / "cgroup.controllers").split() and own != mount_point:
                v2.append(own.parent)
        elif "memory" in controllers.split(",") and "memory" in mounts:
            v1.append(_in_mount(mounts["memory"], path)[1])
    return v2 + v1


def _cgroup_mounts(mountinfo: str) -> dict[str, tuple[Path, str]]:
    """{"cgroup2" | "memory": (mount point, the cgroup path mounted there)} from /proc/self/mountinfo."""
    mounts: dict[str, tuple[Path, str]] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        tail = fields[fields.index("-") + 1:]
        if len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] == "cgroup2":
            mounts.setdefault("cgroup2", (Path(fields[4]), fields[3]))
        elif tail[0] == "cgroup" and "memory" in tail[2].split(","):
            mounts.setdefault("memory", (Path(fields[4]), fields[3]))
    return mounts


def _in_mount(mount: tuple[Path, str], path: str) -> tuple[Path, Path]:
    """(mount point, the directory of cgroup ``path`` under it): a container's mount may start below the root."""
    mount_point, mounted = mount
    relative = os.path.relpath(path, mounted) if path.startswith(mounted) else path.lstrip("/")
    return mount_point, mount_point if relative == "." else mount_point / relative


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
    run's cgroup charge under qemu (the least of CALIBRATION_RUNS) minus the same run's peak RSS natively
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
        charges = []
        with RamLimit(_make_cgroup(None), 0, 0) as unlimited:
            shim = _write_limited_shim(Path(work) / "python", root, cpu, unlimited, "calibration")
            for run in range(CALIBRATION_RUNS):
                unlimited.reset_peak()
                _runner_peak_rss([str(shim)], bundle, Path(work) / f"emulated-{run}")
                charges.append(unlimited.peak_bytes())
    overhead = min(charges) - native_rss
    cache.write_text(json.dumps({"overhead_bytes": overhead, "native_peak_rss_bytes": native_rss,
                                 "emulated_peak_charge_bytes": charges, "cpu": cpu}))
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
    """A shim that starts qemu in ``limit``'s cgroup through board_ram.py (which
    charges it the same whatever the page cache holds), removes the bundle's
    tmpfs copy afterwards, and reports an OOM kill on stderr."""
    from edgetqs.remote import board_ram

    launch = " ".join(shlex.quote(part) for part in [
        sys.executable, "-I", "-S", board_ram.__file__, "--cgroup", str(limit.cgroup), "--root", str(root), "--stage"])
    command = " ".join(shlex.quote(part) for part in python_command(root, cpu))
    kills = _oom_kills_command(limit.cgroup)
    shim.write_text(
        "#!/bin/sh\n"
        f"# The emulated Raspberry Pi 4's Python in the board's RAM: {why} (edgetqs.remote.emulated_board)\n"
        "stage=/dev/shm/edgetqs-board-$$\n"
        'trap \'rm -rf "$stage"\' EXIT; trap "exit 129" HUP; trap "exit 130" INT; trap "exit 143" TERM\n'
        f"before=$({kills})\n"
        f'{launch} "$stage" -- {command} "$@"\n'
        "status=$?\n"
        f'if [ "$({kills})" -gt "$before" ]; then\n'
        f'  echo "emulated board: out of memory: the process outgrew the board\'s RAM '
        f'({limit.board_bytes / MiB:.1f} MiB) and the kernel killed it" >&2\n'
        "fi\n"
        "exit $status\n")
    shim.chmod(0o755)
    return shim


def _oom_kills_command(cgroup: Path) -> str:
    files = " ".join(shlex.quote(str(cgroup / name)) for name in ("memory.events", "memory.oom_control"))
    return f"cat {files} 2>/dev/null | awk '$1 == \"oom_kill\" {{print $2; found=1}} END {{if (!found) print 0}}'"
