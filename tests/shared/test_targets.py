"""Board profiles and firmware configs (edgetqs/targets.py): all shipped ones load, bad ones fail precisely."""

import shutil
from pathlib import Path

import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs import targets as boards
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME, RuntimeSpec

REQUIRED_TARGETS = {"rpi-zero2w", "rpi4", "rpi5", "jetson-nano", "jetson-orin-nano", "local"}


def test_every_shipped_target_loads_with_its_firmware():
    assert REQUIRED_TARGETS <= set(boards.list_targets())
    for name in boards.list_targets():
        target = boards.load_target(name)
        assert target.ram_bytes > target.memory_budget_bytes > 0
        assert target.firmware.runtime.package in boards.RUNTIMES
        assert target.ssh.port == 22 and target.ssh.known_hosts_path


def test_runtime_follows_python_and_arch():
    # JetPack's Python 3.8 and 32-bit Pi OS have no ai-edge-litert wheel: tflite-runtime
    assert boards.load_target("jetson-nano").firmware.runtime.package == "tflite-runtime"
    assert boards.load_firmware("rpios-bullseye-armhf").runtime == RuntimeSpec("tflite-runtime", "2.14.0")
    assert boards.load_target("rpi4").runtime_spec == DEFAULT_HOST_RUNTIME.spec
    orin = boards.load_target("jetson-orin-nano").firmware
    assert orin.setup.nvpmodel_mode == 0 and orin.setup.jetson_clocks


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(EdgeTQSError) as err:
        boards.load_target("rpi9")
    assert "rpi9" in err.value.problem
    for name in REQUIRED_TARGETS:
        assert name in err.value.fix


@pytest.fixture
def profile_dir(tmp_path, monkeypatch):
    shutil.copytree(boards.TARGETS_DIR, tmp_path / "targets")
    shutil.copytree(boards.FIRMWARE_DIR, tmp_path / "firmware")
    monkeypatch.setattr(boards, "TARGETS_DIR", tmp_path / "targets")
    monkeypatch.setattr(boards, "FIRMWARE_DIR", tmp_path / "firmware")
    return tmp_path


@pytest.mark.parametrize("old, new, field, says", [
    ('model_memory_share = 0.25', 'model_memory_share = 1.5', "model_memory_share", "(0, 1]"),
    ('ram_bytes = 4294967296', 'ram_bytes = "4GB"', "ram_bytes", "byte count"),
    ('arch = "aarch64"', 'arch = "arm64"', "arch", "aarch64"),
    ('port = 22', 'port = 70000', "ssh.port", "1..65535"),
    ('firmware = "rpios-bookworm-arm64"', 'firmware = "raspbian"', "firmware", "rpios-bookworm-arm64"),
    ('cores = 4', 'cores = 4\ncolour = "red"', "colour", "not a known field"),
])
def test_malformed_target_names_file_field_and_rule(profile_dir, old, new, field, says):
    path = profile_dir / "targets" / "rpi4.toml"
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(EdgeTQSError) as err:
        boards.load_target("rpi4")
    message = err.value.problem
    assert str(path) in message and f"'{field}'" in message and says in message


def test_missing_field_and_bad_toml(profile_dir):
    path = profile_dir / "targets" / "rpi5.toml"
    path.write_text(path.read_text().replace('cpu = "Cortex-A76 x4 @ 2.4 GHz"\n', ""))
    with pytest.raises(EdgeTQSError, match=r"field 'cpu' is missing"):
        boards.load_target("rpi5")
    path.write_text("name = \n")
    with pytest.raises(EdgeTQSError, match="not valid TOML"):
        boards.load_target("rpi5")


def test_malformed_firmware(profile_dir):
    path = profile_dir / "firmware" / "jetpack6-l4t36.toml"
    path.write_text(path.read_text().replace('runtime = "ai-edge-litert"', 'runtime = "tensorrt"')
                    .replace('cpu_governor = "performance"', 'cpu_governor = "turbo"'))
    with pytest.raises(EdgeTQSError) as err:
        boards.load_firmware("jetpack6-l4t36")
    assert "'runtime'" in err.value.problem and "tflite-runtime" in err.value.problem
    assert "'settings.cpu_governor'" in err.value.problem and "performance" in err.value.problem


def test_the_planner_reads_no_provisioning_field():
    """Provisioning-only fields live in Firmware.setup; planner/ and converter/ never reach into it."""
    firmware = boards.load_firmware("rpios-bookworm-arm64")
    assert {f for f in vars(firmware) if f != "path"} == {"name", "runtime", "setup", "os", "threads", "delegate"}
    assert firmware.setup.venv_python.endswith("/bin/python") and firmware.runtime.overhead_bytes > 0
    package = Path(boards.__file__).parent
    for source in [*(package / "planner").rglob("*.py"), *(package / "converter").rglob("*.py")]:
        assert ".setup." not in source.read_text(), source


def test_the_host_runtime_constant_is_the_installed_runtime():
    """DEFAULT_HOST_RUNTIME is the one place the host runtime's version is written in code; it must be the pin."""
    from importlib.metadata import version

    assert version(DEFAULT_HOST_RUNTIME.package) == DEFAULT_HOST_RUNTIME.version
    pins = (Path(boards.__file__).parents[1] / "constraints.txt").read_text().splitlines()
    assert f"{DEFAULT_HOST_RUNTIME.package}=={DEFAULT_HOST_RUNTIME.version}" in pins
    assert RuntimeSpec.parse(DEFAULT_HOST_RUNTIME.spec) == DEFAULT_HOST_RUNTIME
    with pytest.raises(EdgeTQSError, match="package==version"):
        RuntimeSpec.parse("ai-edge-litert")


def test_a_runtime_names_the_numpy_its_wheels_need():
    assert RuntimeSpec("tflite-runtime", "2.14.0").numpy_requirement == "numpy<2"
    assert DEFAULT_HOST_RUNTIME.numpy_requirement == "numpy"
