"""SSH to a board with paramiko: keys only, strict host keys, bounded commands.

Security: the host key must already be in the known_hosts file (RejectPolicy);
an unknown or changed key is refused with its SHA256 fingerprint and the
command to trust it after checking that fingerprint out of band. Passwords are
never sent.

Faults: connecting is retried with exponential backoff on transport faults
(refused, reset, timed out) only. A command that ran and exited non-zero is
never retried. Every remote command is wrapped in ``timeout`` on the board,
because closing the channel on the host does not stop the process there.
"""

from __future__ import annotations

import base64
import hashlib
import select
import shlex
import socket
import stat
import time
from pathlib import Path
from typing import Callable, NamedTuple

import paramiko

from edgetqs.errors import EdgeTQSError
from edgetqs.retry import with_backoff
from edgetqs.remote.connection import BoardConnection

# Bytes read from the local file and written per SFTP request batch.
PUT_CHUNK = 256 * 1024
# Seconds `timeout` waits after TERM before it KILLs a remote command.
KILL_AFTER = 5
# Exit codes of coreutils `timeout`: TERM worked (124) or KILL was needed (137).
TIMEOUT_EXITS = (124, 137)
STDERR_TAIL_LINES = 15


class RemoteError(EdgeTQSError):
    """Base of every failure talking to a board."""


class HostUnreachable(RemoteError):
    pass


class AuthRefused(RemoteError):
    pass


class HostKeyUnknown(RemoteError):
    pass


class HostKeyMismatch(RemoteError):
    pass


class RuntimeMissing(RemoteError):
    pass


class DiskFull(RemoteError):
    pass


class RemoteCommandFailed(RemoteError):
    def __init__(self, problem: str, fix: str = "", exit_code: int = 1, stderr: str = ""):
        super().__init__(problem, fix)
        self.exit_code = exit_code
        self.stderr = stderr


class CommandTimedOut(RemoteError):
    pass


class CommandResult(NamedTuple):
    exit: int
    stdout: str
    stderr: str


# Faults of the connection itself, worth a retry; anything else is not.
TRANSPORT_FAULTS = (
    ConnectionError,  # refused, reset, aborted
    socket.gaierror,  # name lookup: mDNS names (rpi4.local) come and go
    socket.timeout,
    TimeoutError,
    EOFError,
    paramiko.ssh_exception.NoValidConnectionsError,
    paramiko.SSHException,
)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint, as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _trust_command(board: BoardConnection, known_hosts: str, key_type: str) -> str:
    return f"ssh-keyscan -p {board.port} -t {key_type} {board.host} >> {known_hosts}"


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    """RejectPolicy that says which key was offered and how to trust it."""

    def __init__(self, board: BoardConnection, known_hosts: str):
        self.board = board
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        raise HostKeyUnknown(
            f"{self.board.name} ({self.board.address}) offered a host key that is not in "
            f"{self.known_hosts}: {key.get_name()} {fingerprint(key)}",
            "check that fingerprint on the board itself (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), "
            f"then trust it: {_trust_command(self.board, self.known_hosts, _keyscan_type(key))}",
        )


def _keyscan_type(key: paramiko.PKey) -> str:
    name = key.get_name()
    return {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa"}.get(name, "ecdsa" if "ecdsa" in name else name)


class Transport:
    """One SSH connection to one board. Use as a context manager.

    ``run(cmd, timeout)`` returns ``(exit, stdout, stderr)``; ``check`` raises
    on a non-zero exit; ``put``/``get`` copy files over SFTP.
    """

    def __init__(self, board: BoardConnection, sleep: Callable[[float], None] = time.sleep):
        self.board = board
        self._sleep = sleep
        self._client: paramiko.SSHClient | None = None
        self._jump: Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self.sent_bytes = 0  # file bytes written by put (all attempts), for progress and benchmarks

    # -- connection ---------------------------------------------------------
    def __enter__(self) -> Transport:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        try:
            with_backoff(self._connect_once, attempts=self.board.retries + 1, backoff=self.board.backoff,
                         faults=TRANSPORT_FAULTS, on_fault=lambda _: self.close(), sleep=self._sleep,
                         give_up=lambda exc, attempts: HostUnreachable(
                             f"cannot reach {self.board.name} ({self.board.address}) after "
                             f"{attempts} attempts: {exc or type(exc).__name__}",
                             "check that the board is on, on the network and runs sshd on that port "
                             f"(try: ssh -p {self.board.port} {self.board.user}@{self.board.host})"))
        except EdgeTQSError:
            self.close()  # refused keys etc.: no retry, but no half-open connection either
            raise

    def _connect_once(self) -> None:
        board = self.board
        known_hosts = str(Path(board.known_hosts).expanduser())
        client = paramiko.SSHClient()
        self._client = client
        if Path(known_hosts).exists():
            client.load_host_keys(known_hosts)
        client.set_missing_host_key_policy(_RefuseUnknownHost(board, known_hosts))
        sock = self._jump_channel() if board.jump else None
        key = str(Path(board.key_path).expanduser()) if board.key_path else None
        if key and not Path(key).exists():
            raise AuthRefused(f"SSH key {key} does not exist", "give the private key with --key FILE")
        try:
            client.connect(
                board.host,
                port=board.port,
                username=board.user,
                key_filename=key,
                allow_agent=key is None,  # a given key is the one to use; else ask the agent
                look_for_keys=key is None,
                timeout=board.connect_timeout,
                banner_timeout=board.connect_timeout,
                auth_timeout=board.connect_timeout,
                channel_timeout=board.connect_timeout,
                sock=sock,
            )
        except paramiko.BadHostKeyException as exc:
            raise self._mismatch(exc, known_hosts) from exc
        except paramiko.ssh_exception.PasswordRequiredException as exc:  # before its base class below
            raise AuthRefused(
                f"the key {key} is encrypted", "load it into ssh-agent (ssh-add KEY) and drop --key"
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise AuthRefused(
                f"{board.name} ({board.address}) refused the key {key or '(agent/default keys)'}: {exc}",
                f"add the public key to ~{board.user}/.ssh/authorized_keys on the board "
                f"(ssh-copy-id -i {key or '~/.ssh/id_ed25519'} -p {board.port} {board.user}@{board.host}), "
                "or give the right one with --key FILE",
            ) from exc

    def _mismatch(self, exc: paramiko.BadHostKeyException, known_hosts: str) -> HostKeyMismatch:
        name = known_hosts_name(self.board.host, self.board.port)
        return HostKeyMismatch(
            f"the host key of {self.board.name} ({self.board.address}) CHANGED: {known_hosts} has "
            f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}, the board offered "
            f"{exc.key.get_name()} {fingerprint(exc.key)} — it may have been reinstalled, or someone "
            "is in the middle",
            "if the board was reinstalled, check the new fingerprint on the board itself, then: "
            f"ssh-keygen -R '{name}' -f {known_hosts} && "
            f"{_trust_command(self.board, known_hosts, _keyscan_type(exc.key))}",
        )

    def _jump_channel(self) -> paramiko.Channel:
        """A direct-tcpip channel through the jump host to the board (ProxyJump)."""
        self._jump = Transport(self.board.jump, sleep=self._sleep)
        self._jump.connect()
        ssh_transport = self._jump._client.get_transport()
        try:
            return ssh_transport.open_channel(
                "direct-tcpip", (self.board.host, self.board.port), ("127.0.0.1", 0),
                timeout=self.board.connect_timeout,
            )
        except paramiko.ChannelException as exc:
            raise HostUnreachable(
                f"jump host {self.board.jump.address} cannot reach {self.board.host}:{self.board.port}: {exc}",
                "check the board's address as seen from the jump host, and AllowTcpForwarding there",
            ) from exc

    def close(self) -> None:
        for closable in (self._sftp, self._client, self._jump):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # closing a dead connection may fail; nothing left to do
                    pass
        self._sftp = self._client = self._jump = None

    def _reconnect(self) -> None:
        self.close()
        self.connect()

    def _connected(self) -> bool:
        ssh_transport = self._client.get_transport() if self._client else None
        return bool(ssh_transport and ssh_transport.is_active())

    def _ssh(self) -> paramiko.SSHClient:
        if not self._connected():
            self._reconnect()
        return self._client

    # -- commands -----------------------------------------------------------
    def run(
        self,
        cmd: str,
        timeout: float = 60,
        on_line: Callable[[str], None] | None = None,
        retry: bool = True,
    ) -> CommandResult:
        """Run a shell command on the board, bounded there by `timeout`.

        ``on_line`` gets each stdout line as it arrives (progress). A transport
        fault before the command finished reconnects and reruns it when
        ``retry`` (so only pass idempotent commands, or retry=False).
        """
        bounded = f"timeout --kill-after={KILL_AFTER} {max(1, int(timeout + 0.999))} sh -c {shlex.quote(cmd)}"
        started = time.monotonic()
        result = with_backoff(
            lambda: self._run_once(bounded, timeout + KILL_AFTER + 10, on_line),
            attempts=self.board.retries + 1 if retry else 1, backoff=self.board.backoff, faults=TRANSPORT_FAULTS,
            on_fault=lambda _: self.close(), sleep=self._sleep,
            give_up=lambda exc, _: HostUnreachable(
                f"lost the connection to {self.board.name} while running `{cmd[:80]}`: {exc or type(exc).__name__}",
                "check the board and the network, then rerun"))
        # 137 is also any SIGKILL (the OOM killer's): a timeout only if the time was up.
        if result.exit == TIMEOUT_EXITS[0] or (result.exit in TIMEOUT_EXITS and time.monotonic() - started >= timeout):
            raise CommandTimedOut(
                f"`{cmd[:120]}` on {self.board.name} ran longer than {timeout:g} s and was stopped on the board",
                "give it more time (--timeout) or find out why it hangs on the board",
            )
        return result

    def _run_once(self, bounded: str, wall_limit: float, on_line) -> CommandResult:
        channel = self._ssh().get_transport().open_session(timeout=self.board.connect_timeout)
        channel.exec_command(bounded)
        stdout, stderr, pending = bytearray(), bytearray(), bytearray()
        deadline = time.monotonic() + wall_limit
        while True:
            if time.monotonic() > deadline:  # the board's own `timeout` should have ended it long ago
                channel.close()
                raise CommandTimedOut(
                    f"`{bounded[:120]}` on {self.board.name} gave no exit status within {wall_limit:g} s",
                    "check that coreutils `timeout` exists on the board and that the network is not stalled",
                )
            select.select([channel], [], [], 0.2)
            got = False
            while channel.recv_ready():
                chunk = channel.recv(65536)
                stdout += chunk
                pending += chunk
                got = True
            while channel.recv_stderr_ready():
                stderr += channel.recv_stderr(65536)
                got = True
            pending = _emit_lines(pending, on_line)
            if channel.exit_status_ready() and not got and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            if channel.closed and not got:
                raise EOFError("the channel closed before the command exited")
        if pending and on_line:
            on_line(pending.decode(errors="replace"))
        code = channel.recv_exit_status()
        channel.close()
        if code == -1:  # sshd went away without sending an exit status
            raise EOFError("no exit status from the board")
        return CommandResult(code, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    def check(self, cmd: str, timeout: float = 60, on_line=None, retry: bool = True, what: str = "") -> CommandResult:
        """``run`` that raises RemoteCommandFailed (with the stderr tail) on a non-zero exit."""
        result = self.run(cmd, timeout=timeout, on_line=on_line, retry=retry)
        if result.exit != 0:
            raise command_failed(self.board, what or cmd, result)
        return result

    # -- files --------------------------------------------------------------
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self._ssh().open_sftp()
            self._sftp.get_channel().settimeout(self.board.connect_timeout * 3)
        return self._sftp

    def put(self, local: str | Path, remote: str, on_progress: Callable[[int, int], None] | None = None,
            offset: int | Callable[[], int] = 0) -> None:
        """Copy one file to the board, streamed in chunks (never read whole).

        ``offset``: the first ``offset`` bytes are already on the board (the
        caller verified them), so only the rest is sent, written in place from
        there. A callable is asked again before every attempt, so after a
        dropped link a resumable upload resumes again instead of starting over.
        ``on_progress(position, size)`` counts from the offset; every byte
        written is added to ``sent_bytes``.
        """
        start = offset if callable(offset) else (lambda: offset)
        self._with_retry(lambda: self._put_once(str(local), remote, start(), on_progress), f"uploading {remote}")

    def _put_once(self, local: str, remote: str, offset: int, on_progress) -> None:
        try:
            self._stream(local, remote, offset, on_progress)
        except OSError as exc:
            if not self._connected():  # "Socket is closed": the link died, not the write
                raise EOFError(f"connection lost: {exc}") from exc
            if self._out_of_space(exc, remote):
                raise DiskFull(
                    f"{self.board.name} ran out of disk space while writing {remote}",
                    "free space on the board (old models: edgetqs flash --keep 1) or use a bigger card",
                ) from exc
            if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
                raise
            raise RemoteError(f"cannot write {remote} on {self.board.name}: {exc}", "check the path and its permissions") from exc

    def _stream(self, local: str, remote: str, offset: int, on_progress) -> None:
        size = Path(local).stat().st_size
        position = offset
        with open(local, "rb") as source, self.sftp().open(remote, "r+b" if offset else "wb") as target:
            target.set_pipelined(True)  # don't wait for each write's ack (like paramiko's put)
            if offset:
                target.truncate(offset)  # anything past the verified prefix is not trusted
                target.seek(offset)
                source.seek(offset)
            if on_progress:
                on_progress(position, size)
            for chunk in iter(lambda: source.read(PUT_CHUNK), b""):
                self.sent_bytes += len(chunk)  # counted when handed over: bytes lost in flight were sent too
                target.write(chunk)
                position += len(chunk)
                if on_progress:
                    on_progress(position, size)
        # The acks of pipelined writes arrive by close; a short file means some write failed.
        written = self.sftp().stat(remote).st_size
        if written != size:
            raise OSError(f"size mismatch in put: {remote} has {written} bytes on the board, {size} were sent")

    def makedirs(self, remote: str) -> None:
        """``mkdir -p`` over SFTP (no login shell, so no shell start-up cost)."""
        def make():
            path = ""
            for part in remote.split("/"):
                path = f"{path}/{part}" if path or remote.startswith("/") else part
                if part and not self.is_dir(path):
                    self.sftp().mkdir(path)

        self._with_retry(make, f"creating {remote}")

    def _out_of_space(self, exc: OSError, remote: str) -> bool:
        """SFTP v3 reports ENOSPC as a bare "Failure" (or, with pipelined writes, only
        as a short file), so when a write fails for a vague reason, ask df."""
        if exc.errno == 28 or "no space" in str(exc).lower():
            return True
        directory = remote.rsplit("/", 1)[0] or "/"
        result = self.run(f"df -Pk {shlex.quote(directory)} | tail -n 1", timeout=30)
        fields = result.stdout.split()
        return result.exit == 0 and len(fields) > 3 and fields[3].isdigit() and int(fields[3]) < 64

    def get(self, remote: str, local: str | Path) -> None:
        def fetch():
            try:
                self.sftp().get(remote, str(local))
            except FileNotFoundError as exc:
                raise RemoteError(f"{remote} does not exist on {self.board.name}", "check the path") from exc

        self._with_retry(fetch, f"fetching {remote}")

    def exists(self, remote: str) -> bool:
        try:
            self.sftp().stat(remote)
            return True
        except FileNotFoundError:
            return False

    def is_dir(self, remote: str) -> bool:
        try:
            return stat.S_ISDIR(self.sftp().stat(remote).st_mode)
        except FileNotFoundError:
            return False

    def _with_retry(self, action: Callable[[], None], what: str) -> None:
        with_backoff(action, attempts=self.board.retries + 1, backoff=self.board.backoff, faults=TRANSPORT_FAULTS,
                     on_fault=lambda _: self.close(), sleep=self._sleep,
                     give_up=lambda exc, _: HostUnreachable(
                         f"lost the connection to {self.board.name} while {what}: {exc or type(exc).__name__}",
                         "check the board and the network, then rerun (finished work is kept)"))


def _emit_lines(pending: bytearray, on_line) -> bytearray:
    if not on_line:
        return bytearray()
    *lines, rest = bytes(pending).split(b"\n")
    for line in lines:
        on_line(line.decode(errors="replace"))
    return bytearray(rest)




def stderr_tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def command_failed(board: BoardConnection, what: str, result: CommandResult) -> RemoteCommandFailed:
    tail = stderr_tail(result.stderr) or "(no stderr)"
    return RemoteCommandFailed(
        f"`{what[:120]}` failed on {board.name} with exit {result.exit}:\n{tail}",
        "read the board's error above; rerun with --debug for the full command",
        exit_code=result.exit,
        stderr=result.stderr,
    )
