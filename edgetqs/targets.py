"""Board profiles (targets/*.toml) and the OS images they run (firmware_configs/*.toml), as values.

A target says what a board *is* (CPU, RAM, storage, how much of the memory a
model may take, how to reach it over SSH); a firmware config says what it
*runs*: the runtime (a :class:`~edgetqs.runtimes.RuntimeSpec`), threads and
delegate, which the planner prices, and under ``setup`` (:class:`Provisioning`)
what only the remote stage reads to set a board up (Python, the runtime's
venv, extra packages, the [settings] a deployment applies).

Adding a board: a targets/NAME.toml (and a firmware_configs/NAME.toml when it
runs an OS image no existing config describes); nothing in the code.

Both are validated on load: an error names the file, the field and what is
allowed, so a typo in a profile never turns into a silently wrong plan.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from edgetqs.errors import EdgeTQSError
from edgetqs.runtimes import PACKAGES as RUNTIMES
from edgetqs.runtimes import RuntimeSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS_DIR = Path(os.environ.get("EDGETQS_TARGETS", REPO_ROOT / "targets"))
FIRMWARE_DIR = Path(os.environ.get("EDGETQS_FIRMWARE", REPO_ROOT / "firmware_configs"))

ARCHES = ("aarch64", "armv7l", "x86_64")
DELEGATES = ("none", "xnnpack", "gpu")
GOVERNORS = ("performance", "ondemand", "schedutil", "powersave", "conservative")


@dataclass(frozen=True)
class SSHDefaults:
    host: str
    user: str  # empty: the current user
    port: int
    key_path: str
    known_hosts_path: str
    root: str = "edgetqs"  # where models live on the board, relative to the login home


@dataclass(frozen=True)
class Provisioning:
    """The provisioning-only part of a firmware config: how the remote stage
    sets a board up and checks it. The planner never reads these.

    The remote stage holds ``install_dir`` relative to the login home ("~/" stripped).
    """

    python: str  # "3.11": the major.minor the board's Python must have
    install_dir: str  # the runtime's venv on the board
    arch: str = ""  # `uname -m` the board must report; "" accepts any
    pip_args: tuple[str, ...] = ()  # extra pip options for provisioning, e.g. a local wheel dir
    extra_packages: tuple[str, ...] = ("numpy",)  # what the on-device runner needs besides the runtime
    cpu_governor: str | None = None
    nvpmodel_mode: int | None = None
    jetson_clocks: bool = False
    # Where provision --apply-settings finds the interfaces; the real ones unless a
    # config (or a test board) points elsewhere.
    sysfs_root: str = "/sys"
    nvpmodel_tool: str = "nvpmodel"
    jetson_clocks_tool: str = "jetson_clocks"

    @property
    def venv_python(self) -> str:
        return f"{self.install_dir}/bin/python"

    @property
    def has_settings(self) -> bool:
        """Whether the config asks a deployment to change anything on the board."""
        return bool(self.cpu_governor or self.nvpmodel_mode is not None or self.jetson_clocks)


@dataclass(frozen=True)
class Firmware:
    """One firmware config: what the planner prices (runtime, threads, delegate)
    and, under ``setup``, what the remote stage provisions.

    One built by hand for a one-off board may leave out what only the planner reads.
    """

    name: str
    runtime: RuntimeSpec
    setup: Provisioning
    os: str = ""
    threads: int = 1
    delegate: str = "xnnpack"
    path: Path | None = None

    @property
    def runtime_spec(self) -> str:
        """``package==version``, the key of the capability matrix and what pip installs."""
        return self.runtime.spec

    def with_setup(self, **changes) -> Firmware:
        """The same firmware with some provisioning fields changed (a test board, a local venv)."""
        return replace(self, setup=replace(self.setup, **changes))


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    arch: str
    cpu: str
    cores: int
    ram_bytes: int
    storage_bytes: int
    model_memory_share: float
    firmware_name: str
    ssh: SSHDefaults
    firmware: Firmware = field(repr=False, default=None)  # type: ignore[assignment]
    path: Path | None = None

    @property
    def memory_budget_bytes(self) -> int:
        """What a model's footprint (weights + arena + runtime) may take in RAM."""
        return int(self.ram_bytes * self.model_memory_share)

    @property
    def runtime_spec(self) -> str:
        return self.firmware.runtime_spec

    @property
    def runtime(self) -> RuntimeSpec:
        return self.firmware.runtime


# -- validation -------------------------------------------------------------
class _Fields:
    """Reads one TOML table, collecting every problem with its field name."""

    def __init__(self, path: Path, table: dict, prefix: str = ""):
        self.path, self.table, self.prefix = path, table, prefix
        self.problems: list[str] = []
        self.known: set[str] = set()

    def get(self, key: str, kind: type, check: Callable[[Any], str | None] | None = None,
            default: Any = ..., allowed: str = "") -> Any:
        self.known.add(key)
        where = f"{self.prefix}{key}"
        if key not in self.table:
            if default is ...:
                self.problems.append(f"field '{where}' is missing ({allowed or kind.__name__})")
            return None if default is ... else default
        value = self.table[key]
        ok_type = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok_type = float(value), True
        if not ok_type:
            self.problems.append(f"field '{where}' is {value!r}; it must be {allowed or 'a ' + kind.__name__}")
            return None
        problem = check(value) if check else None
        if problem:
            self.problems.append(f"field '{where}' is {value!r}; {problem}")
            return None
        return value

    def unknown_fields(self) -> None:
        for key in self.table:
            if key not in self.known:
                self.problems.append(f"field '{self.prefix}{key}' is not a known field "
                                     f"(known: {', '.join(sorted(self.known))})")


def _one_of(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in options else f"allowed: {', '.join(options)}"


def _positive(v) -> str | None:
    return None if v > 0 else "it must be > 0"


def _share(v) -> str | None:
    return None if 0 < v <= 1 else "it must be a fraction in (0, 1]"


def _port(v) -> str | None:
    return None if 1 <= v <= 65535 else "it must be a TCP port 1..65535"


def _nonempty(v) -> str | None:
    return None if v.strip() else "it must not be empty"


def _strings(v) -> str | None:
    return None if all(isinstance(x, str) for x in v) else "every item must be a string"


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise EdgeTQSError(f"{path}: not valid TOML ({exc})", "fix the TOML syntax at that line") from exc


def _raise_problems(path: Path, problems: list[str], kind: str) -> None:
    if problems:
        raise EdgeTQSError(f"{kind} {path} is malformed: " + "; ".join(problems),
                           f"edit {path} (other files in {path.parent} show the expected fields)")


def _names(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


# -- public API -------------------------------------------------------------
def list_targets() -> list[str]:
    return _names(TARGETS_DIR)


def list_firmware() -> list[str]:
    return _names(FIRMWARE_DIR)


def _open_profile(directory: Path, name: str, kind: str) -> tuple[Path, _Fields]:
    """The profile's path and a field reader for it; an unknown name lists the known ones."""
    path = directory / f"{name}.toml"
    if not path.is_file():
        raise EdgeTQSError(f"unknown {kind} '{name}'",
                           f"use one of: {', '.join(_names(directory))} (files in {directory})")
    return path, _Fields(path, _read_toml(path))


def _same_as(name: str) -> Callable[[Any], str | None]:
    return lambda v: None if v == name else f"it must equal the file name '{name}'"


def load_firmware(name: str) -> Firmware:
    path, f = _open_profile(FIRMWARE_DIR, name, "firmware config")
    return _firmware(path, f, _same_as(name), strict=True)


def load_firmware_file(path: Path) -> Firmware:
    """A firmware config of one's own (a one-off board): validated as the shipped ones,
    but only what provisioning needs is required (os, threads, delegate default)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise EdgeTQSError(f"no firmware config at {path}", f"use a name from {', '.join(list_firmware())}, or a path")
    f = _Fields(path, _read_toml(path))
    return _firmware(path, f, _nonempty, strict=False, default_name=path.stem)


def _firmware(path: Path, f: _Fields, check_name, strict: bool, default_name: str = ...) -> Firmware:
    """Read and validate one firmware table; ``strict``: the planner's fields are mandatory too."""
    settings = f.get("settings", dict, default={}, allowed="a table [settings]")
    planner_reads = dict(
        os=f.get("os", str, _nonempty, default=... if strict else ""),
        threads=f.get("threads", int, _positive, default=... if strict else 1),
        delegate=f.get("delegate", str, _one_of(DELEGATES), allowed=" / ".join(DELEGATES),
                       default=... if strict else "xnnpack"),
    )
    name = f.get("name", str, check_name, default=default_name)
    runtime = (f.get("runtime", str, _one_of(RUNTIMES), allowed=" or ".join(RUNTIMES)),
               f.get("runtime_version", str, _nonempty))
    setup = dict(
        python=f.get("python", str, lambda v: None if v.count(".") == 1 and v.replace(".", "").isdigit()
                     else "write it as MAJOR.MINOR, e.g. \"3.11\""),
        install_dir=f.get("install_dir", str, _nonempty),
        arch=f.get("arch", str, lambda v: None if v in ARCHES else f"allowed: {', '.join(ARCHES)}", default=""),
        pip_args=tuple(f.get("pip_args", list, _strings, default=[], allowed="a list of strings") or ()),
        extra_packages=tuple(f.get("extra_packages", list, _strings, default=["numpy"],
                                   allowed="a list of strings") or ()),
    )
    f.unknown_fields()
    s = _Fields(path, settings or {}, "settings.")
    setup.update(
        cpu_governor=s.get("cpu_governor", str, _one_of(GOVERNORS), default=None),
        nvpmodel_mode=s.get("nvpmodel_mode", int, lambda v: None if v >= 0 else "it must be >= 0", default=None),
        jetson_clocks=s.get("jetson_clocks", bool, default=False),
        sysfs_root=s.get("sysfs_root", str, _nonempty, default="/sys"),
        nvpmodel_tool=s.get("nvpmodel_tool", str, _nonempty, default="nvpmodel"),
        jetson_clocks_tool=s.get("jetson_clocks_tool", str, _nonempty, default="jetson_clocks"),
    )
    s.unknown_fields()
    _raise_problems(path, f.problems + s.problems, "firmware config")
    return Firmware(name=name, runtime=RuntimeSpec(*runtime), setup=Provisioning(**setup), **planner_reads, path=path)


def load_target(name: str) -> Target:
    path, f = _open_profile(TARGETS_DIR, name, "target")
    ssh_table = f.get("ssh", dict, allowed="a table [ssh]")
    values = dict(
        name=f.get("name", str, _same_as(name)),
        description=f.get("description", str, default=""),
        arch=f.get("arch", str, _one_of(ARCHES), allowed=" / ".join(ARCHES)),
        cpu=f.get("cpu", str, _nonempty),
        cores=f.get("cores", int, _positive),
        ram_bytes=f.get("ram_bytes", int, _positive, allowed="a byte count (integer)"),
        storage_bytes=f.get("storage_bytes", int, _positive, allowed="a byte count (integer)"),
        model_memory_share=f.get("model_memory_share", float, _share, allowed="a fraction in (0, 1]"),
        firmware_name=f.get("firmware", str, _one_of(tuple(list_firmware())),
                            allowed=f"one of {', '.join(list_firmware())}"),
    )
    f.unknown_fields()
    problems = f.problems
    ssh = None
    if ssh_table is not None:
        s = _Fields(path, ssh_table, "ssh.")
        ssh = SSHDefaults(
            host=s.get("host", str, _nonempty), user=s.get("user", str, default=""),
            port=s.get("port", int, _port, default=22),
            key_path=s.get("key_path", str, _nonempty), known_hosts_path=s.get("known_hosts_path", str, _nonempty),
            root=s.get("root", str, _nonempty, default="edgetqs"),
        )
        s.unknown_fields()
        problems += s.problems
    _raise_problems(path, problems, "target profile")
    firmware = load_firmware(values["firmware_name"])
    return Target(**values, ssh=ssh, firmware=firmware, path=path)
