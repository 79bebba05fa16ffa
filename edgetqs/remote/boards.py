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
from dataclasses import dataclass, replace
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.planner import boards as planner_boards
from edgetqs.planner.boards import REPO_ROOT, list_firmware  # noqa: F401  (REPO_ROOT: emulated_board uses it)

# Where models live on the board, relative to the login user's home directory
# (SFTP and the login shell both start there, so a relative path needs no $HOME).
DEFAULT_ROOT = "edgetqs"


@dataclass(frozen=True)
class Firmware:
    """What provisioning needs of a firmware config: planner.boards.Firmware
    (the validated file) reduced to the runtime setup, with ``install_dir``
    relative to the login home, or one built by hand for a one-off board."""

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


def load_firmware(name: str, arch: str = "") -> Firmware:
    """A firmware config by name (firmware_configs/NAME.toml, validated by the
    planner's loader) or by path to a .toml of one's own (for a one-off board)."""
    if name.endswith(".toml"):
        path = Path(name).expanduser()
        if not path.exists():
            raise EdgeTQSError(f"no firmware config at {path}", f"use a name from {', '.join(list_firmware())}, or a path")
        return firmware_from_dict(_read_toml(path), arch=arch, source=str(path))
    config = planner_boards.load_firmware(name)
    return Firmware(
        name=config.name, python=config.python, runtime=config.runtime, runtime_version=config.runtime_version,
        install_dir=home_relative(config.install_dir), arch=config.arch or arch,
        pip_args=config.pip_args, extra_packages=config.extra_packages,
    )


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EdgeTQSError(f"{path} is not valid TOML: {exc}", f"fix the syntax of {path}") from exc


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


def _existing_key(path: str | None) -> str | None:
    """A profile's default key only if it exists: otherwise the agent (or
    ~/.ssh/id_*) is asked, as ssh itself would. An explicit --key must exist."""
    return path if path and Path(path).expanduser().exists() else None


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
    profile = planner_boards.load_target(target) if target else None
    ssh = profile.ssh if profile and profile.ssh else None
    user, address, port = parse_host(host) if host else (None, ssh.host if ssh else "", None)
    firmware_name = firmware or (profile.firmware_name if profile else None)
    board = BoardConnection(
        name=target or address,
        host=address,
        user=user or (ssh.user if ssh else "") or getpass.getuser(),
        port=port or (ssh.port if ssh else 22),
        key_path=key or _existing_key(ssh.key_path if ssh else None),
        known_hosts=known_hosts or (ssh.known_hosts_path if ssh else "~/.ssh/known_hosts"),
        root=home_relative(root or (ssh.root if ssh else DEFAULT_ROOT)),
        firmware=load_firmware(firmware_name, arch=profile.arch if profile else "") if firmware_name else None,
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
