"""Which board to talk to: a target profile (``--target rpi4``), an ad hoc
address (``--host user@ADDR[:PORT] --key FILE --known-hosts FILE``), or both
(the ad hoc parts override the profile's SSH defaults).

A :class:`BoardConnection` is everything the transport needs to reach one board
plus the firmware config its runtime is checked against.
"""

from __future__ import annotations

import getpass
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgetqs.errors import EdgeTQSError

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGETS_DIR = REPO_ROOT / "targets"
FIRMWARE_DIR = REPO_ROOT / "firmware_configs"

# Where models live on the board, relative to the login user's home directory
# (SFTP and the login shell both start there, so a relative path needs no $HOME).
DEFAULT_ROOT = "edgetqs"


@dataclass(frozen=True)
class Firmware:
    """The runtime setup a board is checked against (firmware_configs/*.toml)."""

    name: str
    python: str  # "3.11": the major.minor the board's Python must have
    runtime: str  # pip distribution name, e.g. "ai-edge-litert"
    runtime_version: str
    install_dir: str  # the venv on the board, relative to home ("~/" stripped)
    arch: str = ""  # `uname -m` the board must report; "" accepts any
    pip_args: tuple[str, ...] = ()  # extra pip options, e.g. a local wheel dir
    extra_packages: tuple[str, ...] = ("numpy",)  # the runner needs numpy too

    @property
    def module(self) -> str:
        """The import name of the runtime package (ai-edge-litert -> ai_edge_litert)."""
        return self.runtime.replace("-", "_")

    @property
    def venv_python(self) -> str:
        return f"{self.install_dir}/bin/python"


@dataclass(frozen=True)
class BoardConnection:
    """How to reach one board over SSH and where its models live there."""

    name: str
    host: str
    user: str
    port: int = 22
    key_path: str | None = None  # None: use the SSH agent / default keys
    known_hosts: str = "~/.ssh/known_hosts"
    root: str = DEFAULT_ROOT
    jump: BoardConnection | None = None
    firmware: Firmware | None = None
    connect_timeout: float = 10.0
    retries: int = 3  # attempts after the first on a transport fault
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def parse_host(spec: str) -> tuple[str | None, str, int | None]:
    """``user@addr:port`` -> (user, addr, port); user and port are optional.
    IPv6 addresses go in brackets: ``pi@[fe80::1]:22``."""
    match = re.fullmatch(r"(?:(?P<user>[^@]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<addr>[^:@]+))(?::(?P<port>\d+))?", spec)
    if not match:
        raise EdgeTQSError(
            f"cannot read --host {spec!r}",
            "write it as user@ADDRESS or user@ADDRESS:PORT (IPv6 in brackets: user@[::1]:22)",
        )
    port = int(match["port"]) if match["port"] else None
    return match["user"], match["v6"] or match["addr"], port


def known_targets() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EdgeTQSError(f"{path} is not valid TOML: {exc}", f"fix the syntax of {path}") from exc


def _target_profile(name: str) -> dict:
    path = TARGETS_DIR / f"{name}.toml"
    if not path.exists():
        raise EdgeTQSError(
            f"unknown target {name!r}",
            f"use one of: {', '.join(known_targets())}, or give --host user@ADDR",
        )
    return _read_toml(path)


def load_firmware(name: str, arch: str = "") -> Firmware:
    """A firmware config by name (firmware_configs/NAME.toml) or by path to a .toml."""
    path = Path(name).expanduser() if name.endswith(".toml") else FIRMWARE_DIR / f"{name}.toml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in FIRMWARE_DIR.glob("*.toml")))
        raise EdgeTQSError(f"unknown firmware config {name!r}", f"use one of: {known}, or a path to a .toml")
    return firmware_from_dict(_read_toml(path), arch=arch, source=str(path))


def firmware_from_dict(data: dict, arch: str = "", source: str = "firmware config") -> Firmware:
    missing = [key for key in ("python", "runtime", "runtime_version", "install_dir") if key not in data]
    if missing:
        raise EdgeTQSError(f"{source} lacks {', '.join(missing)}", f"add them to {source}")
    return Firmware(
        name=data.get("name", source),
        python=str(data["python"]),
        runtime=data["runtime"],
        runtime_version=str(data["runtime_version"]),
        install_dir=home_relative(data["install_dir"]),
        arch=data.get("arch", arch),
        pip_args=tuple(data.get("pip_args", ())),
        extra_packages=tuple(data.get("extra_packages", ("numpy",))),
    )


def home_relative(path: str) -> str:
    """``~/x`` -> ``x``: remote paths are relative to the login home directory."""
    return path[2:] if path.startswith("~/") else path


def resolve_board(
    target: str | None = None,
    host: str | None = None,
    key: str | None = None,
    known_hosts: str | None = None,
    root: str | None = None,
    jump: str | None = None,
    firmware: str | None = None,
) -> BoardConnection:
    """One board from a profile and/or ad hoc options (ad hoc wins)."""
    if not target and not host:
        raise EdgeTQSError(
            "no board given", "name one with --target NAME (see targets/) or --host user@ADDR[:PORT]"
        )
    profile = _target_profile(target) if target else {}
    ssh = profile.get("ssh", {})
    user, address, port = parse_host(host) if host else (None, ssh.get("host", ""), None)
    user = user or ssh.get("user") or getpass.getuser()
    firmware_name = firmware or profile.get("firmware")
    board = BoardConnection(
        name=target or address,
        host=address,
        user=user,
        port=port or int(ssh.get("port", 22)),
        key_path=key or ssh.get("key_path") or ssh.get("key"),
        known_hosts=known_hosts or ssh.get("known_hosts_path") or ssh.get("known_hosts") or "~/.ssh/known_hosts",
        root=home_relative(root or ssh.get("root") or DEFAULT_ROOT),
        firmware=load_firmware(firmware_name, arch=profile.get("arch", "")) if firmware_name else None,
    )
    if jump:
        jump_user, jump_addr, jump_port = parse_host(jump)
        board = replace(
            board,
            jump=BoardConnection(
                name=f"jump:{jump_addr}", host=jump_addr, user=jump_user or user, port=jump_port or 22,
                key_path=board.key_path, known_hosts=board.known_hosts,
            ),
        )
    return board
