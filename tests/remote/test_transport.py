"""The SSH transport against a real sshd: commands, files, and every fault of
reaching a board (host keys, client keys, unreachable, timeouts)."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest

from edgetqs.remote.transport import (
    AuthRefused,
    CommandTimedOut,
    HostKeyMismatch,
    HostKeyUnknown,
    HostUnreachable,
    RemoteCommandFailed,
    Transport,
    fingerprint,
)


def test_run_returns_exit_stdout_stderr_and_streams_lines(sshd_board):
    lines = []
    with Transport(sshd_board.connection()) as t:
        code, out, err = t.run("echo one; echo two; echo oops >&2; exit 3", timeout=10, on_line=lines.append)
    assert (code, out, err) == (3, "one\ntwo\n", "oops\n")
    assert lines == ["one", "two"]


def test_check_raises_with_stderr_tail_and_is_not_retried(sshd_board):
    marker = sshd_board.root / "runs"
    with Transport(sshd_board.connection()) as t:
        with pytest.raises(RemoteCommandFailed) as info:
            t.check(f"echo x >> {marker}; echo 'no such thing' >&2; exit 7")
    assert info.value.exit_code == 7 and "no such thing" in str(info.value)
    assert marker.read_text() == "x\n"  # ran once: a command's own failure is never retried


def test_put_and_get_round_trip(sshd_board, tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(300_000))
    with Transport(sshd_board.connection()) as t:
        t.put(src, str(sshd_board.root / "blob.bin"))
        t.get(str(sshd_board.root / "blob.bin"), tmp_path / "back.bin")
    assert (sshd_board.root / "blob.bin").read_bytes() == src.read_bytes()
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_unknown_host_key_is_refused_with_fingerprint_and_trust_command(sshd_board):
    sshd_board.known_hosts.write_text("")
    with pytest.raises(HostKeyUnknown) as info:
        Transport(sshd_board.connection()).connect()
    expected = _fingerprint_of(sshd_board.keys.host_key)
    message = str(info.value)
    assert expected in message
    assert f"ssh-keyscan -p {sshd_board.port} -t ed25519 127.0.0.1 >> {sshd_board.known_hosts}" in message
    assert not sshd_board.known_hosts.read_text()  # nothing was added behind our back


def test_changed_host_key_is_refused_as_mismatch(sshd_board):
    sshd_board.kill()
    sshd_board.use_host_key(sshd_board.keys.other_host_key)
    sshd_board.start()
    with pytest.raises(HostKeyMismatch) as info:
        Transport(sshd_board.connection()).connect()
    message = str(info.value)
    assert _fingerprint_of(sshd_board.keys.host_key) in message  # what we trusted
    assert _fingerprint_of(sshd_board.keys.other_host_key) in message  # what it offered
    assert "ssh-keygen -R" in message


def test_wrong_client_key_is_refused(sshd_board):
    board = sshd_board.connection(key_path=str(sshd_board.keys.stranger_key))
    with pytest.raises(AuthRefused) as info:
        Transport(board).connect()
    assert "ssh-copy-id" in str(info.value)


def test_unreachable_board_retries_with_backoff_then_says_so(sshd_board):
    sshd_board.kill()
    waits = []
    board = sshd_board.connection(retries=3, backoff=0.2)
    with pytest.raises(HostUnreachable) as info:
        Transport(board, sleep=waits.append).connect()
    assert waits == [0.2, 0.4, 0.8]  # bounded, exponential
    assert "after 4 attempts" in str(info.value)


def test_command_outliving_its_timeout_is_killed_on_the_board(sshd_board):
    pid_file = sshd_board.root / "sleeper.pid"
    started = time.monotonic()
    with Transport(sshd_board.connection()) as t:
        with pytest.raises(CommandTimedOut):
            t.run(f"sh -c 'echo $$ > {pid_file}; exec sleep 300'", timeout=1)
    assert time.monotonic() - started < 15
    pid = int(pid_file.read_text())
    assert not _alive(pid), "the remote command survived its timeout"


def test_jump_host_reaches_the_board_through_a_tcp_channel(sshd_board):
    board = sshd_board.connection()
    through = replace(board, jump=board)  # the board is its own jump host: ProxyJump path, real forwarding
    with Transport(through) as t:
        assert t.run("echo via-jump").stdout == "via-jump\n"


def _fingerprint_of(key_path) -> str:
    import paramiko

    return fingerprint(paramiko.Ed25519Key.from_private_key_file(str(key_path)))


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_key_from_ssh_agent_when_no_key_file_is_given(sshd_board, tmp_path, monkeypatch):
    import subprocess

    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd_board.keys.client_key)], env=env, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on: the agent must do it
        with Transport(sshd_board.connection(key_path=None)) as t:
            assert t.run("echo agent").stdout == "agent\n"
    finally:
        agent.kill()
        agent.wait()


def test_encrypted_key_without_agent_says_to_use_the_agent(sshd_board, tmp_path):
    import subprocess

    key = tmp_path / "locked_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(key)], check=True)
    with pytest.raises(AuthRefused, match="encrypted") as info:
        Transport(sshd_board.connection(key_path=str(key))).connect()
    assert "ssh-add" in info.value.fix  # never a password prompt, never a stored passphrase


def test_connection_dropped_mid_command_reconnects_and_reruns_it(sshd_board):
    marker = sshd_board.root / "attempts"
    restarted = []

    def drop_the_link_once(line):
        if line == "started" and not restarted:
            restarted.append(True)
            sshd_board.kill()  # every session dies: a transport fault, not the command's failure
            sshd_board.start()

    with Transport(sshd_board.connection()) as t:
        result = t.run(f"echo x >> {marker}; echo started; sleep 1; echo finished", timeout=20,
                       on_line=drop_the_link_once)
    assert result.exit == 0 and result.stdout.endswith("finished\n")
    assert marker.read_text().count("x") >= 2  # ran again after reconnecting


def test_no_retry_when_asked_not_to(sshd_board):
    def drop(line):
        sshd_board.kill()

    with Transport(sshd_board.connection()) as t:
        with pytest.raises(HostUnreachable, match="lost the connection"):
            t.run("echo started; sleep 5", timeout=20, on_line=drop, retry=False)


def test_hashed_known_hosts_entries_are_honoured(sshd_board):
    # Debian and Ubuntu hash known_hosts by default (HashKnownHosts yes).
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(sshd_board.known_hosts)], check=True, capture_output=True)
    assert sshd_board.known_hosts.read_text().startswith("|1|")
    with Transport(sshd_board.connection()) as t:
        assert t.run("echo hashed").stdout == "hashed\n"
