"""A real OpenSSH server on 127.0.0.1 as a board, for the remote tests
(edgetqs.remote.local_board.LocalBoard).

``sshd_board`` starts ``/usr/sbin/sshd -D -e -f CONFIG`` on a free port with a
throwaway host key and authorized_keys, logging in as the current user (root
here: PermitRootLogin prohibit-password). The board's root directory is a tmp
dir, so a test can look at what landed "on the board" directly on disk.

    def test_x(sshd_board):
        board = sshd_board.connection()          # edgetqs.remote.connection.BoardConnection
        with Transport(board) as t: t.run("uname -m")
        sshd_board.root / "current"              # the same directory, seen locally
        sshd_board.kill()                        # the server and every session dies now
        sshd_board.start()                       # up again, same port and host key

Also: ``sshd_board_factory(name)`` for more boards (fleets), ``make_bundle(name,
seed=, size=)`` for a real bundle directory, ``fake_runtime_wheel`` for a pip
install with no network. Set EDGETQS_SSHD_LOG=1 to print sshd's log at teardown.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgetqs.remote.local_board import SSHD, LocalBoard, SshKeys, local_firmware, make_keys

# The board itself lives in the library so a demo can use it too.
SshdBoard = LocalBoard
host_firmware = local_firmware


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory) -> SshKeys:
    if not Path(SSHD).exists():
        pytest.skip(f"{SSHD} is missing: apt-get update && apt-get install -y openssh-server")
    return make_keys(tmp_path_factory.mktemp("ssh-keys"))


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
        # name ending in .tar.gz: an archive bundle
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
