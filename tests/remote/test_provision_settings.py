"""`provision --apply-settings` against the real sshd board: the firmware's
[settings] (CPU governor, nvpmodel power mode, jetson_clocks) applied over SSH,
idempotently, and a clear error where the board lacks the interface or the
permission.

This machine is no Jetson and its kernel has no cpufreq, so the board gets a
sysfs tree of its own (``settings.sysfs_root``: cpu*/cpufreq files it can
write) and stand-in ``nvpmodel`` / ``jetson_clocks`` shell scripts (the real
tools do not exist here), named through ``settings.nvpmodel_tool`` /
``jetson_clocks_tool``. They behave as the real ones do where edgetqs looks:
``nvpmodel -q`` ends with the mode number, ``nvpmodel -m N`` sets it,
``jetson_clocks`` pins every CPU's scaling_min_freq to its cpuinfo_max_freq.
Every command still runs on the board through sshd; the read-only case uses a
real read-only kernel attribute.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edgetqs.cli.app import main
from edgetqs.errors import EdgeTQSError
from edgetqs.remote.provision import provision
from edgetqs.remote.transport import Transport
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME

CPUS = ("cpu0", "cpu1")
MAX_FREQ, MIN_FREQ = "1500000", "600000"


class StandInBoard:
    """The sysfs tree and JetPack tool stand-ins a test board uses, seen locally."""

    def __init__(self, directory: Path, governor: str = "ondemand", mode: int = 2):
        self.directory = directory
        self.sysfs = directory / "sys"
        for cpu in CPUS:
            cpufreq = self.cpufreq(cpu)
            cpufreq.mkdir(parents=True)
            (cpufreq / "scaling_governor").write_text(governor + "\n")
            (cpufreq / "scaling_available_governors").write_text("ondemand performance powersave schedutil\n")
            (cpufreq / "scaling_min_freq").write_text(MIN_FREQ + "\n")
            (cpufreq / "cpuinfo_max_freq").write_text(MAX_FREQ + "\n")
        self.calls = directory / "calls.log"
        self.calls.touch()
        (directory / "nvpmodel.mode").write_text(f"{mode}\n")
        self.nvpmodel = self._script("nvpmodel", f"""
state={directory}/nvpmodel.mode
case "$1" in
  -q) echo "NV Power Mode: MODE_$(cat $state)"; cat $state ;;
  -m) echo "nvpmodel -m $2" >> {self.calls}; echo "$2" > $state ;;
  *) echo "usage: nvpmodel -q | -m N" >&2; exit 2 ;;
esac""")
        self.jetson_clocks = self._script("jetson_clocks", f"""
echo jetson_clocks >> {self.calls}
for d in {self.sysfs}/devices/system/cpu/cpu*/cpufreq; do cat "$d/cpuinfo_max_freq" > "$d/scaling_min_freq"; done""")

    def cpufreq(self, cpu: str) -> Path:
        return self.sysfs / "devices/system/cpu" / cpu / "cpufreq"

    def _script(self, name: str, body: str) -> Path:
        path = self.directory / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"#!/bin/sh\n# stand-in for NVIDIA's {name} (edgetqs tests)\n{body.strip()}\n")
        path.chmod(0o755)
        return path

    def firmware(self, base, **settings):
        return base.with_setup(sysfs_root=str(self.sysfs), nvpmodel_tool=str(self.nvpmodel),
                               jetson_clocks_tool=str(self.jetson_clocks), **settings)

    def governors(self) -> list[str]:
        return [(self.cpufreq(cpu) / "scaling_governor").read_text().strip() for cpu in CPUS]


JETSON = dict(cpu_governor="performance", nvpmodel_mode=0, jetson_clocks=True)


def by_name(report) -> dict:
    return {change.name: change for change in report.settings}


def test_apply_changes_only_what_differs_and_a_second_run_changes_nothing(sshd_board, tmp_path):
    stand_in = StandInBoard(tmp_path / "jetson")
    board = sshd_board.connection()
    firmware = stand_in.firmware(board.firmware, extra_packages=(), **JETSON)
    with Transport(board) as t:
        first = provision(t, firmware, min_free=0, apply_settings=True)
        settings = by_name(first)
        assert [c.name for c in first.settings] == ["nvpmodel_mode", "cpu_governor", "jetson_clocks"]
        assert (settings["nvpmodel_mode"].before, settings["nvpmodel_mode"].after) == ("2", "0")
        assert (settings["cpu_governor"].before, settings["cpu_governor"].after) == ("ondemand", "performance")
        assert (settings["jetson_clocks"].before, settings["jetson_clocks"].after) == ("off", "on")
        assert "cpu_governor: ondemand -> performance" in first.actions
        assert stand_in.governors() == ["performance", "performance"]
        assert all((stand_in.cpufreq(cpu) / "scaling_min_freq").read_text().strip() == MAX_FREQ for cpu in CPUS)
        assert stand_in.calls.read_text().splitlines() == ["nvpmodel -m 0", "jetson_clocks"]

        second = provision(t, firmware, min_free=0, apply_settings=True)
    assert all(not change.changed for change in second.settings), second.settings
    assert [c.before for c in second.settings] == ["0", "performance", "on"]
    assert not second.actions
    assert stand_in.calls.read_text().splitlines() == ["nvpmodel -m 0", "jetson_clocks"]  # no tool ran again


def test_only_the_cpus_that_differ_are_written(sshd_board, tmp_path):
    stand_in = StandInBoard(tmp_path / "pi", governor="performance")
    (stand_in.cpufreq("cpu1") / "scaling_governor").write_text("powersave\n")
    untouched = (stand_in.cpufreq("cpu0") / "scaling_governor").stat().st_mtime_ns
    board = sshd_board.connection()
    with Transport(board) as t:
        report = provision(t, stand_in.firmware(board.firmware, cpu_governor="performance"), min_free=0,
                           apply_settings=True)
    (change,) = report.settings
    assert change.before == "mixed: performance, powersave" and change.after == "performance"
    assert stand_in.governors() == ["performance", "performance"]
    assert (stand_in.cpufreq("cpu0") / "scaling_governor").stat().st_mtime_ns == untouched


def test_a_board_without_the_interfaces_gets_a_clear_error(sshd_board, tmp_path):
    empty_sysfs = tmp_path / "no-cpufreq"  # as in a VM: no cpu*/cpufreq at all
    (empty_sysfs / "devices/system/cpu/cpu0").mkdir(parents=True)
    board = sshd_board.connection()
    with Transport(board) as t:
        governor = board.firmware.with_setup(cpu_governor="performance", sysfs_root=str(empty_sysfs))
        with pytest.raises(EdgeTQSError, match="no CPU frequency governor interface") as caught:
            provision(t, governor, min_free=0, apply_settings=True)
        assert "cpu_governor" in caught.value.fix
        # the real tool names: neither exists on this machine
        with pytest.raises(EdgeTQSError, match="no 'nvpmodel' on its PATH") as caught:
            provision(t, board.firmware.with_setup(nvpmodel_mode=0), min_free=0, apply_settings=True)
        assert "nvidia-l4t-tools" in caught.value.fix
        with pytest.raises(EdgeTQSError, match="no 'jetson_clocks' on its PATH"):
            provision(t, board.firmware.with_setup(jetson_clocks=True), min_free=0, apply_settings=True)


READ_ONLY_ATTRIBUTE = Path("/sys/devices/system/cpu/cpu0/topology/core_id")  # 0444 in the kernel: even root cannot write


@pytest.mark.skipif(not READ_ONLY_ATTRIBUTE.exists(), reason="no sysfs topology attribute to stand for a read-only file")
def test_a_read_only_interface_says_to_run_as_root_or_add_a_sudo_rule(sshd_board, tmp_path):
    stand_in = StandInBoard(tmp_path / "ro")
    governor_file = stand_in.cpufreq("cpu0") / "scaling_governor"
    governor_file.unlink()
    governor_file.symlink_to(READ_ONLY_ATTRIBUTE)
    board = sshd_board.connection()
    with Transport(board) as t:
        with pytest.raises(EdgeTQSError, match="setting the CPU governor failed: .*Permission denied") as caught:
            provision(t, stand_in.firmware(board.firmware, cpu_governor="performance"), min_free=0,
                      apply_settings=True)
    assert "root" in caught.value.fix and "sudo" in caught.value.fix


def test_a_governor_the_cpus_do_not_offer_is_refused(sshd_board, tmp_path):
    stand_in = StandInBoard(tmp_path / "pi")
    board = sshd_board.connection()
    with Transport(board) as t:
        with pytest.raises(EdgeTQSError, match="offer the governors .* not 'conservative'"):
            provision(t, stand_in.firmware(board.firmware, cpu_governor="conservative"), min_free=0,
                      apply_settings=True)
    assert stand_in.governors() == ["ondemand", "ondemand"]


def test_cli_applies_the_settings_of_a_firmware_file(sshd_board, tmp_path, capsys):
    """A one-off firmware .toml (validated by the planner's loader) whose [settings] point at the stand-ins."""
    stand_in = StandInBoard(tmp_path / "jetson")
    venv = Path(sys.executable).parent.parent  # this project's venv has the runtime
    firmware = tmp_path / "my-jetson.toml"
    firmware.write_text(
        f'name = "my-jetson"\npython = "3.11"\nruntime = "{DEFAULT_HOST_RUNTIME.package}"\n'
        f'runtime_version = "{DEFAULT_HOST_RUNTIME.version}"\n'
        f'install_dir = "{venv}"\n\n[settings]\ncpu_governor = "performance"\nnvpmodel_mode = 0\n'
        f'jetson_clocks = true\nsysfs_root = "{stand_in.sysfs}"\nnvpmodel_tool = "{stand_in.nvpmodel}"\n'
        f'jetson_clocks_tool = "{stand_in.jetson_clocks}"\n')
    args = ["provision", "--host", f"{sshd_board.user}@{sshd_board.host}:{sshd_board.port}",
            "--key", str(sshd_board.keys.client_key), "--known-hosts", str(sshd_board.known_hosts),
            "--root", str(sshd_board.root), "--firmware", str(firmware), "--min-free-mib", "1", "--apply-settings"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]["result"]
    assert [(s["name"], s["before"], s["after"]) for s in result["settings"]] == [
        ("nvpmodel_mode", "2", "0"), ("cpu_governor", "ondemand", "performance"), ("jetson_clocks", "off", "on")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "already set" in out and "changed" not in out.replace("nothing to change", "")


def test_a_one_off_firmware_file_is_validated_like_the_shipped_ones(tmp_path):
    """Remote and planner share one Firmware type and one validating loader."""
    from edgetqs.remote.connection import firmware_on_board as load_firmware
    from edgetqs.targets import Firmware

    path = tmp_path / "typo.toml"
    path.write_text(f'python = "3.11"\nruntime = "{DEFAULT_HOST_RUNTIME.package}"\nruntime_version = "{DEFAULT_HOST_RUNTIME.version}"\n'
                    'install_dir = "~/venv"\n\n[settings]\ncpu_govenor = "performance"\n')
    with pytest.raises(EdgeTQSError, match="'settings.cpu_govenor' is not a known field") as caught:
        load_firmware(str(path))
    assert str(path) in caught.value.fix
    path.write_text(path.read_text().replace("govenor", "governor"))
    firmware = load_firmware(str(path), arch="aarch64")
    assert isinstance(firmware, Firmware)
    assert (firmware.name, firmware.setup.install_dir, firmware.setup.venv_python, firmware.runtime.module, firmware.setup.arch) == (
        "typo", "venv", "venv/bin/python", "ai_edge_litert", "aarch64")
    assert firmware.setup.cpu_governor == "performance" and firmware.setup.sysfs_root == "/sys"
    shipped = load_firmware("jetpack6-l4t36")
    assert isinstance(shipped, Firmware) and shipped.setup.install_dir == "edgetqs/venv"
    assert (shipped.setup.nvpmodel_mode, shipped.setup.jetson_clocks, shipped.setup.nvpmodel_tool) == (0, True, "nvpmodel")


def test_a_firmware_without_settings_changes_nothing(sshd_board):
    board = sshd_board.connection()
    with Transport(board) as t:
        report = provision(t, board.firmware.with_setup(extra_packages=()), min_free=0, apply_settings=True)
    assert report.settings == [] and report.actions == []
