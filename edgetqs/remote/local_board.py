"""A throwaway OpenSSH server on 127.0.0.1 that serves this machine as a board.

It runs ``/usr/sbin/sshd -D -e -f CONFIG`` on a free port with its own host
key, authorized_keys and known_hosts (nothing in ~/.ssh is read or changed),
logging in as the current user (PermitRootLogin prohibit-password when that is
root). The tests use it as their board, and a demo can use it as a "local
board" without any setup::

    keys = make_keys(workdir / "keys")
    with LocalBoard(workdir / "board", keys) as board:
        with Transport(board.connection()) as t: ...
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.remote.connection import BoardConnection
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME
from edgetqs.targets import Firmware, Provisioning

SSHD = "/usr/sbin/sshd"


def _keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


@dataclass
class SshKeys:
    """Key material shared by every board of a session."""

    host_key: Path  # the board's host key (private; .pub beside it)
    other_host_key: Path  # a different host key, for the 'host key changed' fault
    client_key: Path  # authorized on the board
    stranger_key: Path  # not authorized


def make_keys(directory: Path) -> SshKeys:
    """Fresh ed25519 keys (no passphrase) in ``directory``."""
    if not Path(SSHD).exists():
        raise EdgeTQSError(f"{SSHD} is missing, so no local board can run",
                           "apt-get update && apt-get install -y openssh-server")
    directory.mkdir(parents=True, exist_ok=True)
    return SshKeys(
        host_key=_keygen(directory / "host_ed25519"),
        other_host_key=_keygen(directory / "other_host_ed25519"),
        client_key=_keygen(directory / "client_ed25519"),
        stranger_key=_keygen(directory / "stranger_ed25519"),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (sshd's per-connection children call setsid,
    so a process-group kill would miss them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class LocalBoard:
    """One running sshd acting as a board; its root directory is ``workdir/board``."""

    workdir: Path
    keys: SshKeys
    port: int = field(default_factory=_free_port)
    user: str = field(default_factory=getpass.getuser)
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = None

    def __post_init__(self):
        self.root = self.workdir / "board"  # the board's edgetqs root
        self.root.mkdir(parents=True, exist_ok=True)
        self.known_hosts = self.workdir / "known_hosts"
        self.authorized_keys = self.workdir / "authorized_keys"
        shutil.copy(f"{self.keys.client_key}.pub", self.authorized_keys)
        self.trust_host_key(self.keys.host_key)
        self.config = self.workdir / "sshd_config"
        self.config.write_text(self._config_text(self.keys.host_key))
        self.log = self.workdir / "sshd.log"

    def _config_text(self, host_key: Path) -> str:
        return "\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "AllowTcpForwarding yes",  # the jump-host test goes through this same server
            "Subsystem sftp internal-sftp",
            "MaxStartups 50",
            "LogLevel VERBOSE",
            "",
        ])

    def trust_host_key(self, host_key: Path) -> None:
        """Write known_hosts so that it trusts ``host_key`` (and only it) for this board."""
        key_type, key_b64 = Path(f"{host_key}.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {key_type} {key_b64}\n")

    def use_host_key(self, host_key: Path) -> None:
        """Serve a different host key from now on (restart to apply)."""
        self.config.write_text(self._config_text(host_key))

    def start(self) -> None:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
        log = open(self.log, "ab")
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EdgeTQSError(f"sshd exited at start: {self.log.read_text()[-2000:]}",
                                   "read sshd's complaint above (config, host key permissions)")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise EdgeTQSError(f"sshd did not listen on {self.port}: {self.log.read_text()[-2000:]}",
                           "read sshd's log above")

    def kill(self) -> None:
        """SIGKILL the server and every session it serves, as a power cut would."""
        if self.process is None:
            return
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> LocalBoard:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def connection(self, **overrides) -> BoardConnection:
        """A BoardConnection for this board; fast retries so fault tests stay quick."""
        board = BoardConnection(
            name="sshd-board",
            host=self.host,
            user=self.user,
            port=self.port,
            key_path=str(self.keys.client_key),
            known_hosts=str(self.known_hosts),
            root=str(self.root),
            firmware=local_firmware(install_dir=str(self.workdir / "venv")),
            connect_timeout=5.0,
            retries=2,
            backoff=0.1,
        )
        return replace(board, **overrides)

    def connection_via(self, port: int, **overrides) -> BoardConnection:
        """A connection through a relay on ``port`` (link_proxy.LinkProxy): the
        same board and host key, trusted under the relay's address."""
        known_hosts = self.workdir / f"known_hosts.{port}"
        key_type, key_b64 = Path(f"{self.keys.host_key}.pub").read_text().split()[:2]
        known_hosts.write_text(f"[{self.host}]:{port} {key_type} {key_b64}\n")
        return self.connection(port=port, known_hosts=str(known_hosts), **overrides)




def local_firmware(**setup) -> Firmware:
    """The firmware this machine matches as a board: Python 3.11, its own
    architecture, the host's LiteRT in a venv (which does not exist until
    provisioned); ``setup`` changes provisioning fields (install_dir, say)."""
    firmware = Firmware(name="local-board", runtime=DEFAULT_HOST_RUNTIME,
                        setup=Provisioning(python="3.11", install_dir="edgetqs-venv", arch=os.uname().machine))
    return firmware.with_setup(**setup)
