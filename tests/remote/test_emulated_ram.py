"""The emulated Pi enforces the board's RAM: a plan that does not fit is killed
there as the kernel would kill it on the board (a BoardOutOfMemory naming
memory), one that fits passes validation, and the cgroup is charged the same
after a dropped page cache as on a warm one.

The board is a Raspberry Pi Zero 2 W scaled down to 352 MiB of RAM (share
0.25: 88 MiB for the process) and the model a wide MLP forecaster (two 3500-unit
layers, 12.3 M parameters): float32 (47 MiB of weights) does not fit the
planner's budget for that board, int8 (12 MiB) does. qemu is slow and the
models are tens of MB, so these are slow tests (~40 s for the module).

Cold caches: a cgroup charges a page cache page to whoever reads it first, so
before the shim's launcher (remote/board_ram.py) read the root outside the
cgroup, a dropped page cache put the root's libraries (~77 MiB) on the
board's bill and the fitting int8 run thrashed at the limit;
test_a_cold_page_cache_is_charged_like_a_warm_one evicts the root and qemu
(posix_fadvise) to check that cannot come back. The currency: the fitting
run's charge less qemu's calibrated overhead is its native peak RSS.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.remote.forecast_bundle import (FEATURES, ForecasterFiles, aeq_int8_dynamic, wide_float_forecaster,
                                          write_forecast_bundle)

from edgetqs.targets import load_target
from edgetqs.planner.plan import target_budget
from edgetqs.remote import emulated_board, runner
from edgetqs.remote.flash import flash
from edgetqs.remote.transport import Transport
from edgetqs.remote.validate import BoardOutOfMemory, validate

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),  # a run thrashing at the limit fails here rather than after CI's 15 minutes
    pytest.mark.skipif(not shutil.which(emulated_board.QEMU), reason="apt-get install -y qemu-user-static"),
    pytest.mark.skipif(emulated_board.memory_cgroup_parent() is None,
                       reason="needs a writable memory cgroup (root, cgroup memory controller)"),
]

WIDTH = 3500
MiB = 2**20


@functools.lru_cache(maxsize=None)
def wide_forecaster() -> ForecasterFiles:
    float_tflite = wide_float_forecaster(WIDTH)
    return ForecasterFiles(float_tflite, aeq_int8_dynamic(float_tflite), np.zeros(FEATURES, np.float32))


@pytest.fixture(scope="module")
def small_pi():
    """rpi-zero2w with 352 MiB of RAM: 88 MiB for the model's process."""
    target = load_target("rpi-zero2w")
    return dataclasses.replace(target, ram_bytes=352 * MiB)


@pytest.fixture
def emulated_small_pi(sshd_board, tmp_path, small_pi):
    firmware = emulated_board.make_board_python(tmp_path / "pi-python")
    root = emulated_board.build_root()
    with emulated_board.limit_ram(tmp_path / "pi-python", root, small_pi.memory_budget_bytes) as ram:
        yield sshd_board.connection(name="rpi-zero2w-emulated", firmware=firmware), ram


def test_the_planners_budget_separates_the_two_plans(small_pi):
    files = wide_forecaster()
    budget = target_budget(small_pi)
    assert len(files.int8_tflite) < budget < len(files.float_tflite)


def test_a_plan_that_does_not_fit_is_killed_for_memory_and_one_that_fits_passes(emulated_small_pi, tmp_path, small_pi):
    board, ram = emulated_small_pi
    assert ram.board_bytes == 88 * MiB and 10 * MiB < ram.qemu_overhead_bytes < 90 * MiB  # measured, not assumed
    files = wide_forecaster()
    too_big = write_forecast_bundle(tmp_path / "float", files, model_bytes=files.float_tflite)
    fits = write_forecast_bundle(tmp_path / "int8", files)
    with Transport(board) as t:
        flash(t, too_big)
        with pytest.raises(BoardOutOfMemory) as info:
            validate(t, too_big, tmp_path / "v-float", contexts=1, horizon=4)
        assert ram.oom_kills() == 1
        assert "out of memory" in info.value.problem and "88.0 MiB" in info.value.problem
        assert "edgetqs plan" in info.value.fix

        flash(t, fits)
        ram.reset_peak()
        result = validate(t, fits, tmp_path / "v-int8", contexts=1, horizon=4)
    assert result.passed, result.message()
    assert ram.oom_kills() == 1
    # Its peak charge (qemu's included) stayed under the limit the board's RAM sets...
    assert ram.peak_bytes() < ram.limit_bytes
    # ... and, less qemu's overhead, is what the run's RSS is natively: the board's currency. Were the
    # mapped model not charged, it would be 12 MiB less; were the root's libraries, ~77 MiB more.
    native_rss = run_runner([sys.executable], fits, tmp_path / "native")
    assert abs(ram.peak_bytes() - ram.qemu_overhead_bytes - native_rss) < 6 * MiB, (ram, native_rss / MiB)


def evict_from_page_cache(paths) -> None:
    """Drop these files' pages from the page cache (those no process maps), as a cold machine has them."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_runner(python: list[str], bundle: Path, out: Path) -> int:
    """Run the on-device runner on ``bundle`` with ``python``; its peak RSS (VmHWM) in bytes."""
    done = subprocess.run([*python, runner.__file__, "--bundle", str(bundle), "--out", str(out)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((out / runner.RESULTS_JSON).read_text())["peak_memory_kib"] * 1024


def test_a_cold_page_cache_is_charged_like_a_warm_one(tmp_path):
    root = emulated_board.build_root()
    bundle = emulated_board.calibration_bundle(tmp_path / "bundle")
    root_files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    peaks = {}
    with emulated_board.limit_ram(tmp_path / "pi-python", root, 1 << 30) as ram:
        for cache in ("warm", "cold"):
            if cache == "cold":
                evict_from_page_cache([*root_files, shutil.which(emulated_board.QEMU)])
            ram.reset_peak()
            run_runner([str(tmp_path / "pi-python" / "bin" / "python")], bundle, tmp_path / cache)
            peaks[cache] = ram.peak_bytes()
    # Charged the root's libraries, the cold run would take ~80 MiB more.
    assert abs(peaks["cold"] - peaks["warm"]) < 5 * MiB, {k: v / MiB for k, v in peaks.items()}
