"""The remote commands end to end through the CLI against the sshd board:
provision -> flash -> validate (a real forecaster, real LiteRT on the 'board'),
then a model damaged on the board fails validation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tests.remote.forecast_bundle import build_forecaster, tamper_output_bias, write_forecast_bundle

from edgetqs.cli.app import main
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME

pytestmark = pytest.mark.slow
SHORT = ["--contexts", "2", "--horizon", "4"]  # the verdict, not the statistics, is under test


def board_args(board, firmware: Path) -> list[str]:
    return ["--host", f"{board.user}@{board.host}:{board.port}", "--key", str(board.keys.client_key),
            "--known-hosts", str(board.known_hosts), "--root", str(board.root), "--firmware", str(firmware)]


def test_provision_flash_validate_through_the_cli(sshd_board, tmp_path, capsys):
    # The board's runtime lives in this project's venv (ai-edge-litert 2.3.0 + numpy).
    venv = Path(sys.executable).parent.parent
    firmware = tmp_path / "project-venv.toml"
    firmware.write_text(f'name = "project-venv"\npython = "3.11"\nruntime = "{DEFAULT_HOST_RUNTIME.package}"\n'
                        f'runtime_version = "{DEFAULT_HOST_RUNTIME.version}"\ninstall_dir = "{venv}"\n')
    files = build_forecaster()
    bundle = write_forecast_bundle(tmp_path / "bundle", files)
    args = board_args(sshd_board, firmware)
    capsys.readouterr()  # TensorFlow's chatter while building the bundle

    assert main(["provision", *args, "--json", "--min-free-mib", "1"]) == 0
    provisioned = json.loads(capsys.readouterr().out)[0]["result"]
    assert provisioned["python"] == f"{venv}/bin/python" and provisioned["actions"] == []

    assert main(["flash", str(bundle), *args]) == 0
    assert "FAILED" not in capsys.readouterr().out
    assert main(["validate", str(bundle), *args, "--out", str(tmp_path / "v"), "--json", *SHORT]) == 0
    verdict = json.loads(capsys.readouterr().out)[0]
    assert verdict["ok"] and "PASS" in verdict["detail"]
    assert verdict["result"]["passed"] is True and verdict["result"]["checks"]  # the verdict itself, as JSON
    report = tmp_path / "v" / "127.0.0.1" / "report.html"  # an ad hoc board is named by its address
    assert report.exists() and json.loads((report.parent / "validation.json").read_text())["passed"]

    tamper_output_bias(sshd_board.root / "current" / "model.tflite", files)
    assert main(["validate", str(bundle), *args, "--out", str(tmp_path / "v2"), "--json", *SHORT]) == 1
    failed = json.loads(capsys.readouterr().out)[0]
    assert not failed["ok"] and "computes different numbers than the host" in failed["detail"]
