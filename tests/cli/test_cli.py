"""The CLI frame: every stage has a subcommand with an example; expected
errors print one message and exit non-zero without a traceback."""

import subprocess
import sys

import pytest

from edgetqs.cli.app import STAGE_MODULES, build_parser, main


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return list(action.choices)


def test_every_stage_module_registers_a_subcommand():
    names = _subcommands()
    for expected in ("zoo", "inspect", "score", "plan", "convert", "provision", "flash", "validate", "demo"):
        assert expected in names
    assert len(STAGE_MODULES) >= 6


@pytest.mark.parametrize("name", _subcommands())
def test_help_shows_an_example(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out
    assert f"edgetqs {name}" in out


def test_expected_error_has_no_traceback(tmp_path):
    missing = tmp_path / "nope.tflite"
    result = subprocess.run(
        [sys.executable, "-m", "edgetqs", "inspect", str(missing)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr
