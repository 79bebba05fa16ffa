"""Provisioning over real SSH: checking a board against its firmware config,
and installing a runtime into a venv on it (a real pip, a real venv)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgetqs.remote.provision import check_board, provision, require_runtime
from edgetqs.remote.transport import RuntimeMissing, Transport
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME, RuntimeSpec


def by_name(report):
    return {check.name: check for check in report.checks}


def test_board_without_the_runtime_is_reported_and_refused(sshd_board):
    board = sshd_board.connection()
    firmware = replace(board.firmware.with_setup(extra_packages=()),
                       runtime=replace(board.firmware.runtime, package="edgetqs-no-such-runtime"))
    with Transport(board) as t:
        report = check_board(t, firmware, min_free=0)
        checks = by_name(report)
        assert checks["architecture"].ok and checks["python"].ok and checks["free disk"].ok
        assert not checks["runtime"].ok and "not installed" in checks["runtime"].found
        assert "--install" in checks["runtime"].fix
        assert not report.ok and "runtime" in report.summary()
        with pytest.raises(RuntimeMissing, match=f"edgetqs-no-such-runtime=={DEFAULT_HOST_RUNTIME.version}"):
            require_runtime(t, firmware)


def test_wrong_architecture_and_python_are_named(sshd_board):
    board = sshd_board.connection()
    firmware = board.firmware.with_setup(arch="armv7l", python="3.6", extra_packages=())
    with Transport(board) as t:
        checks = by_name(check_board(t, firmware, min_free=0))
    assert not checks["architecture"].ok and checks["architecture"].found != "armv7l"
    assert not checks["python"].ok and "3.11" in checks["python"].found


def test_too_little_disk_fails_the_check(sshd_board):
    board = sshd_board.connection()
    with Transport(board) as t:
        checks = by_name(check_board(t, board.firmware, min_free=2**60))
    assert not checks["free disk"].ok


@pytest.mark.slow
def test_install_creates_venv_and_runtime_then_is_idempotent(sshd_board, fake_runtime_wheel):
    wheels, dist, version = fake_runtime_wheel
    board = sshd_board.connection()
    firmware = replace(
        board.firmware.with_setup(extra_packages=(), pip_args=("--no-index", "--find-links", str(wheels))),
        runtime=RuntimeSpec(dist, version),
    )
    lines = []
    with Transport(board) as t:
        first = provision(t, firmware, install=True, min_free=0, on_line=lines.append)
        assert first.ok, first.checks
        assert first.actions[0].startswith("created venv") and first.actions[1] == f"installed {dist}=={version}"
        assert first.python == firmware.setup.venv_python
        assert any("Successfully installed" in line for line in lines)  # pip's output streamed back
        second = provision(t, firmware, install=True, min_free=0)
        assert second.ok and second.actions == [] and second.summary() == "ready; nothing to change"
        assert require_runtime(t, firmware) == firmware.setup.venv_python
    assert (sshd_board.workdir / "venv" / "bin" / "python").exists()
