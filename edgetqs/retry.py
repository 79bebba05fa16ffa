"""Retry with exponential backoff, for faults that a second try can cure.

The SSH transport connects, runs idempotent commands and copies files through
this one loop: ``attempts`` tries, waiting ``backoff``, 2x``backoff``, 4x…
between them, retrying only exceptions in ``faults``. Anything else (a refused
key, a command that ran and failed) goes straight through.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def with_backoff(
    action: Callable[[], T],
    *,
    attempts: int,
    backoff: float,
    faults: tuple[type[BaseException], ...],
    give_up: Callable[[BaseException, int], BaseException],
    on_fault: Callable[[BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Return ``action()``, retrying it on ``faults`` up to ``attempts`` times in all.

    ``on_fault(exc)`` runs after every fault (say, to drop a dead connection);
    after the last one, ``give_up(exc, attempts)`` builds the error raised
    (chained to the fault).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    for attempt in range(attempts):
        try:
            return action()
        except faults as exc:
            if on_fault is not None:
                on_fault(exc)
            if attempt == attempts - 1:
                raise give_up(exc, attempts) from exc
            sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")  # the loop returns or raises
