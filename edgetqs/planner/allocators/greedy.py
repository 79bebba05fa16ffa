"""Greedy allocation (METHOD.md §3): start every unit at its most precise option,
then repeatedly take the downgrade that adds the least cost per byte saved,
until the plan fits. Fast (a heap over units), usually near the optimum, but
not exact: a lumpy step can overshoot the budget by more than it had to.
"""

from __future__ import annotations

import heapq
from typing import Sequence

from edgetqs.planner.allocators import Allocation, Option, register, smallest_bytes, undominated


def _best_step(opts: Sequence[Option], ladder: list[int], pos: int) -> tuple[float, int] | None:
    """(added cost per byte saved, target position) of the best downgrade from ``pos``."""
    current = opts[ladder[pos]]
    best = None
    for target in range(pos):
        o = opts[ladder[target]]
        rate = (o.cost - current.cost) / (current.bytes - o.bytes)
        if best is None or rate < best[0]:
            best = (rate, target)
    return best


@register("greedy")
def allocate(options: Sequence[Sequence[Option]], capacity: int) -> Allocation | None:
    if smallest_bytes(options) > capacity:
        return None
    ladders = [undominated(opts) for opts in options]  # bytes ascending, cost descending
    position = [len(ladder) - 1 for ladder in ladders]
    used = sum(options[l][ladder[-1]].bytes for l, ladder in enumerate(ladders))
    heap = []
    for l, ladder in enumerate(ladders):
        step = _best_step(options[l], ladder, position[l])
        if step:
            heapq.heappush(heap, (step[0], l, step[1]))
    while used > capacity:
        _, l, target = heapq.heappop(heap)
        ladder = ladders[l]
        used -= options[l][ladder[position[l]]].bytes - options[l][ladder[target]].bytes
        position[l] = target
        step = _best_step(options[l], ladder, target)
        if step:
            heapq.heappush(heap, (step[0], l, step[1]))
    return [ladders[l][position[l]] for l in range(len(options))]
