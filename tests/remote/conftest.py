"""A real OpenSSH server on 127.0.0.1 as a board, for the remote tests.

``sshd_board`` starts ``/usr/sbin/sshd -D -e -f CONFIG`` on a free port with a
throwaway host key and authorized_keys, logging in as the current user (root
here: PermitRootLogin prohibit-password). The board's root directory is a tmp
dir, so a test can look at what landed "on the board" directly on disk.

    def test_x(sshd_board):
        board = sshd_board.connection()          # edgetqs.remote.boards.BoardConnection
        with Transport(board) as t: t.run("uname -m")
        sshd_board.root / "current"              # the same directory, seen locally
        sshd_board.kill()                        # the server and every session dies now
        sshd_board.start()                       # up again, same port and host key

Also: ``sshd_board_factory(name)`` for more boards (fleets), ``make_bundle(name,
seed=, size=)`` for a real bundle directory, ``fake_runtime_wheel`` for a pip
install with no network. Set EDGETQS_SSHD_LOG=1 to print sshd's log at teardown.
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

import pytest

from edgetqs.remote.boards import BoardConnection, Firmware

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


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory) -> SshKeys:
    if not Path(SSHD).exists():
        pytest.skip(f"{SSHD} is missing: apt-get update && apt-get install -y openssh-server")
    keys = tmp_path_factory.mktemp("ssh-keys")
    return SshKeys(
        host_key=_keygen(keys / "host_ed25519"),
        other_host_key=_keygen(keys / "other_host_ed25519"),
        client_key=_keygen(keys / "client_ed25519"),
        stranger_key=_keygen(keys / "stranger_ed25519"),
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
class SshdBoard:
    """One running sshd acting as a board."""

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
                raise RuntimeError(f"sshd exited at start: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {self.port}: {self.log.read_text()[-2000:]}")

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

    stop = kill

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
            firmware=host_firmware(install_dir=str(self.workdir / "venv")),
            connect_timeout=5.0,
            retries=2,
            backoff=0.1,
        )
        return replace(board, **overrides)


def host_firmware(**overrides) -> Firmware:
    """The firmware this host 'board' matches: its Python 3.11 and architecture,
    LiteRT in a venv (which does not exist until provisioned)."""
    firmware = Firmware(
        name="test-host", python="3.11", runtime="ai-edge-litert", runtime_version="2.3.0",
        install_dir="edgetqs-venv", arch=os.uname().machine,
    )
    return replace(firmware, **overrides)


@pytest.fixture
def sshd_board_factory(tmp_path, ssh_keys):
    """make(name) -> another running SshdBoard (for fleets); all stopped at teardown."""
    boards = []

    def make(name: str = "sshd") -> SshdBoard:
        board = SshdBoard(workdir=tmp_path / name, keys=ssh_keys)
        board.start()
        boards.append(board)
        return board

    yield make
    for board in boards:
        board.kill()
        if os.environ.get("EDGETQS_SSHD_LOG"):
            print(board.log.read_text())


@pytest.fixture
def sshd_board(sshd_board_factory) -> SshdBoard:
    return sshd_board_factory("sshd")


@pytest.fixture
def make_bundle(tmp_path):
    """make_bundle(name, model_bytes=..., seed=...) -> a real bundle directory
    (edgetqs.bundle.write_bundle) whose model is ``model_bytes`` (random bytes
    by default: flashing does not care what the model computes)."""
    import numpy as np

    from edgetqs.bundle import write_bundle

    def make(name: str = "bundle", model_bytes: bytes | None = None, seed: int = 0, size: int = 64 * 1024):
        rng = np.random.default_rng(seed)
        window, features, horizon, contexts = 8, 3, 5, 2
        return write_bundle(
            tmp_path / "bundles" / name,
            model=model_bytes if model_bytes is not None else rng.bytes(size),
            rollout={"window": window, "features": features, "patch": 1},
            probes_x=rng.standard_normal((4, window, features)).astype("float32"),
            probes_y=rng.standard_normal((4, features)).astype("float32"),
            contexts=rng.standard_normal((contexts, window, features)).astype("float32"),
            horizon=horizon,
            reference_float=rng.standard_normal((contexts, horizon, features)).astype("float32"),
            reference_host=rng.standard_normal((contexts, horizon, features)).astype("float32"),
        )

    return make


@pytest.fixture(scope="session")
def fake_runtime_wheel(tmp_path_factory):
    """A tiny real wheel standing in for a runtime package, so installing it
    into a board's venv needs no network: (wheel directory, dist name, version)."""
    import zipfile

    directory = tmp_path_factory.mktemp("wheels")
    dist, version = "edgetqs-fake-runtime", "1.0"
    module = dist.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": "INTERPRETER = 'fake'\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: edgetqs-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(directory / f"{module}-{version}-py3-none-any.whl", "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return directory, dist, version
