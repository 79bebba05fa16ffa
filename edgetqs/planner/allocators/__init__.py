"""Allocators: pick one option per unit minimising total cost under a byte budget.

An allocator is a function ``allocate(options, capacity) -> list[int] | None``:
``options[l]`` is unit l's list of ``Option(bytes, cost)``, ``capacity`` the
bytes all units may take together; it returns the chosen option index per unit,
or None when even the smallest choice of every unit does not fit. Register new
ones with :func:`register`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from edgetqs.errors import EdgeTQSError


@dataclass(frozen=True)
class Option:
    bytes: int
    cost: float


Allocation = list[int]
Allocator = Callable[[Sequence[Sequence[Option]], int], "Allocation | None"]
ALLOCATORS: dict[str, Allocator] = {}


def register(name: str):
    def wrap(func: Allocator) -> Allocator:
        ALLOCATORS[name] = func
        return func

    return wrap


def get_allocator(name: str) -> Allocator:
    if name not in ALLOCATORS:
        raise EdgeTQSError(f"unknown allocator '{name}'", f"use one of: {', '.join(sorted(ALLOCATORS))}")
    return ALLOCATORS[name]


def allocate_front(name: str, options: Sequence[Sequence[Option]], capacities: Sequence[int]) -> list["Allocation | None"]:
    """One allocation per budget; allocators with a ``many`` attribute share work across budgets."""
    allocator = get_allocator(name)
    many = getattr(allocator, "many", None)
    return many(options, capacities) if many else [allocator(options, c) for c in capacities]


def smallest_bytes(options: Sequence[Sequence[Option]]) -> int:
    return sum(min(o.bytes for o in opts) for opts in options)


def totals(options: Sequence[Sequence[Option]], choice: Allocation) -> tuple[int, float]:
    """(total bytes, total cost) of an allocation."""
    return (sum(options[l][q].bytes for l, q in enumerate(choice)),
            sum(options[l][q].cost for l, q in enumerate(choice)))


def undominated(opts: Sequence[Option]) -> list[int]:
    """Indices of options not beaten by one that is no larger and no costlier, by bytes ascending."""
    order = sorted(range(len(opts)), key=lambda i: (opts[i].bytes, opts[i].cost))
    kept, best_cost = [], float("inf")
    for i in order:
        if opts[i].cost < best_cost:
            kept.append(i)
            best_cost = opts[i].cost
    return kept


from edgetqs.planner.allocators import greedy, mckp  # noqa: E402,F401  (registers them)
