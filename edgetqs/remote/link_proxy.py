"""A TCP relay on 127.0.0.1 between the host and a board: counts the bytes
that cross it and can cut the link, as a dropped Wi-Fi or a pulled cable would.

The SSH client connects to the relay's port instead of the board's; every
connection is relayed to the board unchanged (the SSH session, its host key
and its encryption are the board's own). ``drop()`` resets every connection
now; ``drop_after(n)`` resets them once ``n`` more bytes went to the board.
Tests use it to count what a resumed upload really sends, the fleet benchmark
to make links drop mid-upload::

    with LinkProxy(board.port) as link:
        conn = board.connection_via(link.port)  # LocalBoard
        link.drop_after(2 * 2**20)
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field

CHUNK = 64 * 1024


@dataclass
class LinkProxy:
    target_port: int
    target_host: str = "127.0.0.1"
    port: int = 0  # chosen at start
    to_board: int = 0  # bytes relayed host -> board (SSH framing included)
    from_board: int = 0
    drops: int = 0
    _drop_at: int | None = None
    _listener: socket.socket | None = None
    _connections: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> LinkProxy:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name=f"link-proxy-{self.port}").start()
        return self

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.drop(count=False)

    def __enter__(self) -> LinkProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def drop_after(self, more_bytes: int) -> None:
        """Reset the link once ``more_bytes`` more bytes went towards the board."""
        with self._lock:
            self._drop_at = self.to_board + more_bytes

    def drop(self, count: bool = True) -> None:
        """Reset every open connection (RST, not a clean close: the link died)."""
        with self._lock:
            connections, self._connections = self._connections, []
            if count and connections:
                self.drops += 1
        for sock in connections:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while self._listener is not None:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                board = socket.create_connection((self.target_host, self.target_port), timeout=5)
            except OSError:
                client.close()  # the board is down: the host sees its connection refused/closed
                continue
            board.settimeout(None)
            with self._lock:
                self._connections += [client, board]
            threading.Thread(target=self._pump, args=(client, board, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(board, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, towards_board: bool) -> None:
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                sink.sendall(data)
                if self._count(len(data), towards_board):
                    self.drop()
                    return
        except OSError:
            pass
        for sock in (source, sink):  # one side ended: end the other (half-close is not needed by SSH)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _count(self, n: int, towards_board: bool) -> bool:
        """Add ``n`` relayed bytes; True when a drop_after mark was just crossed."""
        with self._lock:
            if not towards_board:
                self.from_board += n
                return False
            self.to_board += n
            if self._drop_at is not None and self.to_board >= self._drop_at:
                self._drop_at = None
                return True
            return False
