"""End to end against the emulated 64-bit Raspberry Pi 4 over real SSH.

The board is the sshd board whose Python is the arm64 Debian root under
qemu-aarch64-static -cpu cortex-a72 (edgetqs.remote.emulated_board). The root is
built once and cached (.ci/make_arm64_board.sh); qemu is slow, so horizons are short.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.remote.forecast_bundle import CONTEXTS, HORIZON, build_forecaster, write_forecast_bundle

from edgetqs.cli.app import main
from edgetqs.remote import emulated_board
from edgetqs.remote.flash import flash
from edgetqs.remote.provision import provision, require_runtime
from edgetqs.remote.report import write_report
from edgetqs.remote.transport import CommandTimedOut, Transport
from edgetqs.remote.validate import validate
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which(emulated_board.QEMU), reason="apt-get install -y qemu-user-static"),
]



@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_forecast_bundle(tmp_path_factory.mktemp("arm64") / "bundle", build_forecaster())


def emulated_pi(sshd_board, tmp_path, runtime=emulated_board.DEFAULT_RUNTIME, cpu=emulated_board.CPU):
    firmware = emulated_board.make_board_python(tmp_path / "pi-python", runtime, cpu)
    return sshd_board.connection(name="rpi4-emulated", firmware=firmware)


def test_provision_flash_and_validate_on_the_emulated_pi(sshd_board, bundle, tmp_path):
    board = emulated_pi(sshd_board, tmp_path)
    with Transport(board) as t:
        arch = t.check(f"{board.firmware.setup.venv_python} -c 'import platform; print(platform.machine())'")
        assert arch.stdout.strip() == "aarch64"
        report = provision(t, board.firmware, install=True)  # already there: nothing to install
        assert report.ok and report.actions == [], report.summary()
        python = require_runtime(t, board.firmware)
        assert python == board.firmware.setup.venv_python  # the qemu shim
        flash(t, bundle)
        result = validate(t, bundle, tmp_path / "v", python=python)
    assert result.passed, result.message()
    facts, runtime = result.board.results["board"], result.board.results["runtime"]
    assert facts["machine"] == "aarch64" and "Raspberry Pi 4" in facts["model"]
    assert facts["cpu"] == "ARM implementer 0x41 part 0xd08"  # Cortex-A72
    assert (runtime["name"], runtime["version"], runtime["xnnpack"]) == (DEFAULT_HOST_RUNTIME.module, DEFAULT_HOST_RUNTIME.version, True)
    assert result.board.trajectories.shape == (CONTEXTS, HORIZON, 3)
    # Another CPU, the same numbers within rounding: both run XNNPACK's int8 kernels.
    assert result.vs_host.rmse_per_step[0] < 1e-5
    page = write_report(result, tmp_path / "report.html").read_text()
    assert "PASS" in page and "aarch64" in page and "emulated" in page


def test_another_arm_core_rounds_differently_and_still_passes(sshd_board, bundle, tmp_path):
    # qemu's "max" core offers extensions a Cortex-A72 lacks (dot product, fp16
    # arithmetic, SVE), so XNNPACK's CPU dispatch picks other kernels: the
    # numbers move in the last bits (measured), which validation must accept.
    board = emulated_pi(sshd_board, tmp_path, cpu="max")
    with Transport(board) as t:
        flash(t, bundle)
        result = validate(t, bundle, tmp_path / "v", contexts=2, horizon=6)
    assert result.passed, result.message()
    assert 0 < result.vs_host.rmse < 1e-5


def test_a_runtime_that_computes_wrongly_fails_validation(sshd_board, bundle, tmp_path):
    # tflite-runtime 2.14.0 loads and runs AEQ's per-channel int8 dynamic FULLY_CONNECTED
    # but computes it wrongly (planner/data/capability_matrix.json): a real runtime
    # that must fail validation on its numbers, not on a crash.
    board = emulated_pi(sshd_board, tmp_path, emulated_board.OLD_TFLITE_RUNTIME)
    with Transport(board) as t:
        assert provision(t, board.firmware).ok  # the board is as its firmware config says
        flash(t, bundle)
        result = validate(t, bundle, tmp_path / "v", contexts=2, horizon=4)
    assert result.board.results["runtime"]["name"] == "tflite_runtime"
    assert not result.passed
    failed = {check.name: check.detail for check in result.failures}
    probe_failure = failed["runtime computes the host's numbers (probes)"]
    assert "tflite_runtime 2.14.0" in probe_failure and "aarch64" in probe_failure
    assert "runs the model but computes different numbers than the host" in probe_failure
    assert "model on the board is the bundle's" not in failed  # the file is right; the runtime is not


def test_cli_flash_then_validate_writes_the_report(sshd_board, bundle, tmp_path):
    python = emulated_board.make_board_python(tmp_path / "pi-python").setup.venv_python
    board = ["--host", f"{sshd_board.user}@{sshd_board.host}:{sshd_board.port}", "--key", str(sshd_board.keys.client_key),
             "--known-hosts", str(sshd_board.known_hosts), "--root", str(sshd_board.root)]
    assert main(["flash", str(bundle), *board]) == 0
    out = tmp_path / "validation"
    assert main(["validate", str(bundle), *board, "--python", python, "--out", str(out), "--horizon", "4"]) == 0
    [report] = out.glob("*/report.html")
    page = report.read_text()
    assert 'class="verdict pass">PASS' in page and "aarch64" in page and page.count("data:image/png;base64,") == 3


def test_a_run_that_outlives_its_timeout_is_stopped_and_cleaned_up(sshd_board, bundle, tmp_path):
    board = emulated_pi(sshd_board, tmp_path)
    slow_to_start(Path(board.firmware.setup.venv_python), seconds=5)
    with Transport(board) as t:
        flash(t, bundle)
        with pytest.raises(CommandTimedOut, match="ran longer than 1 s"):
            validate(t, bundle, tmp_path / "v", timeout=1)
    assert not list((sshd_board.root / "runs").iterdir())
    assert processes_mentioning(f"{sshd_board.root}/runs/") == []  # stopped on the board, not left running


def slow_to_start(python: Path, seconds: int) -> None:
    """Make the board's Python take ``seconds`` before it starts (like a board
    reading from a slow SD card), so a run outlives a 1 s timeout however fast
    the emulation is on the day: the test is about the timeout, not about qemu."""
    real = python.with_name(python.name + ".real")
    python.rename(real)
    python.write_text(f'#!/bin/sh\nsleep {seconds}\nexec "{real}" "$@"\n')
    python.chmod(0o755)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of the live processes on this machine (the board) that contain ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found
