"""Every method's plans for one model: TQS variants, baselines (same MCKP, their
own sensitivities) and the fixed heuristics (uniform, first/last at 8 bits).

Budgets are average weight bits: ``budget_bytes(problem, b)`` is the memory
(file + arena, planner byte costs) the model takes when every unit stores ``b``
bits per weight, linearly interpolated between the unit's integer/float
formats (int2, int4, int8, fp16, fp32) — so 4 bits is exactly uniform int4.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from edgetqs.planner.plan import KeepFloat, Problem, plan_from_choice, build_problem, solve_many
from edgetqs.planner.formats import DEFAULT_LADDER as LADDER  # per-channel ints and floats: "b bits per weight"
from edgetqs.planner.formats import FORMATS

RUNTIME = "ai-edge-litert==2.3.0"
MODE = "dynamic"


@dataclass
class MethodPlan:
    method: str
    plan: object  # edgetqs.planner.planfile.Plan
    budget_bits: float | None  # None: a fixed-size method (uniform, heuristic)
    seed: int | None = None
    budget_bytes: int | None = None  # the cell's budget (a fixed-size plan records none)

    def key(self) -> str:
        """Identical assignments convert to identical models: converted once."""
        formats = [(a.unit, a.format) for a in self.plan.assignments]
        return hashlib.sha256(json.dumps(formats).encode()).hexdigest()[:16]


def problem_for(canonical, scores, bottom: str | None = None, keep_float: KeepFloat | None = None) -> Problem:
    sha = hashlib.sha256(json.dumps(scores.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
    return build_problem(canonical.graph, scores, sha, RUNTIME, MODE, bottom=bottom, keep_float=keep_float)


def _ladder_points(unit) -> list[tuple[int, int]]:
    return sorted((FORMATS[f].bits, unit.memory_bytes[unit.formats.index(f)]) for f in LADDER if f in unit.formats)


def budget_bytes(problem: Problem, bits: float) -> int:
    total = problem.fixed_memory_bytes
    for unit in problem.units:
        points = _ladder_points(unit)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        total += float(np.interp(bits, xs, ys)) if len(xs) > 1 else ys[0]
    return int(math.floor(total))


def uniform_choice(problem: Problem, fmt: str) -> list[int]:
    """Every unit in ``fmt``; a unit that cannot take it gets the next more precise allowed format."""
    want = FORMATS[fmt].bits
    choice = []
    for unit in problem.units:
        ladder = [(FORMATS[f].bits, unit.formats.index(f)) for f in LADDER if f in unit.formats]
        above = [i for bits, i in sorted(ladder) if bits >= want]
        choice.append(above[0] if above else sorted(ladder)[-1][1])
    return choice


def first_last_choice(problem: Problem) -> list[int]:
    """The heuristic: the first and the last unit at int8, the rest at int4."""
    low, high = uniform_choice(problem, "int4"), uniform_choice(problem, "int8")
    return [high[i] if i in (0, len(problem.units) - 1) else low[i] for i in range(len(problem.units))]


def fixed_plan(problem: Problem, choice: list[int], name: str):
    memory = problem.fixed_memory_bytes + sum(u.memory_bytes[q] for u, q in zip(problem.units, choice))
    return plan_from_choice(problem, choice, memory, name, None)


def memory_of(plan) -> int:
    return int(plan.predicted["memory_bytes"])


def uniform_at_budget(problem: Problem, budget: int):
    """The uniform plan nearest ``budget`` from below: of every single format (blockwise ones too)
    whose uniform plan fits, the most bits, then the finest scales (blocks of 32 before 64
    before per channel); None if none fits. A unit that cannot take the format gets what
    :func:`uniform_choice` gives it for the same bit-width."""
    fitting = []
    for name, f in FORMATS.items():
        fallback = uniform_choice(problem, next(n for n in LADDER if FORMATS[n].bits >= f.bits))
        choice = [u.formats.index(name) if name in u.formats else q for u, q in zip(problem.units, fallback)]
        plan = fixed_plan(problem, choice, f"uniform-{name}")
        if memory_of(plan) <= budget:
            fitting.append(((f.bits, f.block_size > 0, -f.block_size), plan))
    return max(fitting, key=lambda item: item[0])[1] if fitting else None


def budgeted(method: str, problem: Problem, budgets: dict[float, int], allocator: str = "mckp",
             seed: int | None = None) -> list[MethodPlan]:
    """``method``'s plans at each budget (average bits -> bytes) this problem can reach."""
    feasible = [(b, B) for b, B in budgets.items() if B >= problem.smallest_memory()]
    plans = solve_many(problem, [B for _, B in feasible], allocator)
    return [MethodPlan(method, p, b, seed, B) for (b, B), p in zip(feasible, plans)]


def predicted_cost(problem: Problem, plan) -> float | None:
    """The total cost ``problem``'s sensitivities predict for ``plan`` (None: a format it does not offer)."""
    by_unit = {u.name: u for u in problem.units}
    total = 0.0
    for a in plan.assignments:
        unit = by_unit.get(a.unit)
        if unit is None or a.format not in unit.formats:
            return None
        total += unit.costs[unit.formats.index(a.format)]
    return float(total)
