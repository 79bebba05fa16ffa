"""Several boards at once: the same action on each, concurrently, each board's
failure kept to itself.

A fleet is a list of BoardConnections: from repeated ``--target``/``--host``
options, or from a group file (TOML)::

    # fleets/lab.toml
    [[board]]
    target = "rpi4"                 # profile: SSH defaults and firmware
    host = "pi@10.0.0.21"           # ad hoc parts override the profile
    [[board]]
    name = "bench-pi5"
    target = "rpi5"
    host = "pi@10.0.0.22:2222"
    key = "~/.ssh/lab_ed25519"
"""

from __future__ import annotations

import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable

from edgetqs.errors import EdgeTQSError
from edgetqs.remote.connection import BoardConnection, resolve_board
from edgetqs.remote.transport import Transport

BOARD_KEYS = {"name", "target", "host", "key", "known_hosts", "root", "jump", "firmware"}
MAX_PARALLEL = 16


@dataclass
class BoardOutcome:
    board: str
    address: str
    ok: bool
    detail: str  # the action's summary, or the error (problem + fix)
    seconds: float
    result: Any = None
    error: EdgeTQSError | None = None  # the expected error that failed this board

    def to_json(self) -> dict:
        result = self.result
        if hasattr(result, "to_json"):
            result = result.to_json()
        elif hasattr(result, "to_dict"):  # validate's verdict
            result = result.to_dict()
        elif is_dataclass(result):
            result = asdict(result)
        return {"board": self.board, "address": self.address, "ok": self.ok, "detail": self.detail,
                "seconds": round(self.seconds, 2), "result": result}


def load_group(path: str | Path) -> list[BoardConnection]:
    """The boards of a group file (see the module doc)."""
    path = Path(path)
    if not path.exists():
        raise EdgeTQSError(f"no fleet file {path}", "write one with [[board]] tables (see `edgetqs flash --help`)")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EdgeTQSError(f"{path} is not valid TOML: {exc}", f"fix the syntax of {path}") from exc
    entries = data.get("board", [])
    if not entries:
        raise EdgeTQSError(f"{path} lists no boards", 'add [[board]] tables with target = "..." and/or host = "..."')
    boards = []
    for index, entry in enumerate(entries, 1):
        unknown = set(entry) - BOARD_KEYS
        if unknown:
            raise EdgeTQSError(
                f"{path}: board #{index} has unknown field(s) {', '.join(sorted(unknown))}",
                f"allowed fields: {', '.join(sorted(BOARD_KEYS))}",
            )
        board = resolve_board(**{k: v for k, v in entry.items() if k != "name"})
        boards.append(replace(board, name=entry["name"]) if "name" in entry else board)
    _check_unique(boards, str(path))
    return boards


def _check_unique(boards: list[BoardConnection], where: str) -> None:
    names = [board.name for board in boards]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise EdgeTQSError(
            f"{where} names {', '.join(duplicates)} more than once", "give each board its own name = \"...\""
        )


def run_fleet(
    boards: list[BoardConnection],
    action: Callable[[Transport], Any],
    describe: Callable[[Any], tuple[bool, str]] = lambda result: (True, "done"),
    on_done: Callable[[BoardOutcome], None] | None = None,
    parallel: int = MAX_PARALLEL,
) -> list[BoardOutcome]:
    """Run ``action(transport)`` on every board concurrently (threads: the work
    is waiting on the network). ``describe(result) -> (ok, detail)`` judges a
    result that did not raise. An expected error on one board becomes that
    board's failed outcome; the others go on. Outcomes keep the boards' order."""
    lock = threading.Lock()

    def one(board: BoardConnection) -> BoardOutcome:
        started, error = time.monotonic(), None
        try:
            with Transport(board) as transport:
                result = action(transport)
            ok, detail = describe(result)
        except EdgeTQSError as exc:
            result, ok, detail, error = None, False, exc.problem + (f" — fix: {exc.fix}" if exc.fix else ""), exc
        except Exception as exc:  # a bug on one board must not hide the others' results
            result, ok, detail = None, False, f"unexpected {type(exc).__name__}: {exc}"
        outcome = BoardOutcome(board.name, board.address, ok, detail, time.monotonic() - started, result, error)
        if on_done:
            with lock:
                on_done(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(boards)))) as pool:
        return list(pool.map(one, boards))


def summary_table(outcomes: list[BoardOutcome], title: str):
    """A rich table: one row per board, failures in red."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for column in ("board", "address", "status", "detail", "time"):
        table.add_column(column, overflow="fold")
    for outcome in outcomes:
        status = Text("ok", style="green") if outcome.ok else Text("FAILED", style="bold red")
        table.add_row(outcome.board, outcome.address, status, outcome.detail, f"{outcome.seconds:.1f} s")
    return table
