"""How to reach a board: a target profile (``--target rpi4``), an ad hoc
address (``--host user@ADDR[:PORT] --key FILE --known-hosts FILE``), or both
(the ad hoc parts override the profile's SSH defaults).

A :class:`BoardConnection` is everything the transport needs to reach one board
plus the firmware config its runtime is checked against.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass, replace
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs import targets
# Firmware: the one type for planner and remote.
from edgetqs.targets import Firmware

# Where models live on the board, relative to the login user's home directory
# (SFTP and the login shell both start there, so a relative path needs no $HOME).
DEFAULT_ROOT = "edgetqs"


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


def firmware_on_board(name: str, arch: str = "") -> Firmware:
    """A firmware config as the remote stage uses it on a board: by name
    (firmware_configs/NAME.toml) or by path to a .toml of one's own (a one-off
    board), with ``install_dir`` made relative to the login home and ``arch``
    (the target profile's) filled in where the config names none."""
    config = targets.load_firmware_file(Path(name)) if name.endswith(".toml") else targets.load_firmware(name)
    return config.with_setup(install_dir=home_relative(config.setup.install_dir), arch=config.setup.arch or arch)


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
    profile = targets.load_target(target) if target else None
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
        firmware=firmware_on_board(firmware_name, arch=profile.arch if profile else "") if firmware_name else None,
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
