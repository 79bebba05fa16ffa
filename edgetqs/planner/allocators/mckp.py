"""Exact multiple-choice knapsack: an integer program solved by HiGHS
(scipy.optimize.milp) — binary x[l, q], one option per unit, total bytes <= the
budget. Byte sizes are integers, so the budget is met exactly, never
approximately; the MIP gap is zero so the optimum is proven (and checked).

Before the solver, exact reductions shrink the problem (1,000 units solve in
milliseconds instead of a second):

1. dominated options (larger and no cheaper) are never optimal: dropped;
2. Lagrangian reduced-cost fixing. For any price per byte ``lam >= 0`` and any
   feasible plan x: ``cost(x) >= LB + sum_l rc_l(x_l)``, where
   ``rc_l(q) = c_lq + lam*b_lq - min_q' (c_lq' + lam*b_lq')`` and
   ``LB = sum_l min_q (c_lq + lam*b_lq) - lam*B``. So with an incumbent of cost
   UB (the greedy plan), an option with ``rc > UB - LB`` cannot be in any plan
   better than UB and is dropped. ``lam`` is the LP relaxation's price: the
   slope of the convex-hull step where the greedy walk crosses the budget.
   Most units keep one option; only the rest are solved for.
3. The remaining units are solved exactly by dynamic programming over the
   bytes left above their smallest options when that table is small (integer
   bytes: exact, no discretisation), else by the integer program.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array

from edgetqs.errors import EdgeTQSError
from edgetqs.planner.allocators import Allocation, Option, greedy, register, smallest_bytes, totals, undominated


def _lp_price(options: Sequence[Sequence[Option]], kept: list[list[int]], capacity: int) -> float:
    """The LP relaxation's price per byte: the hull-step slope at which the budget binds."""
    steps = []
    used = 0
    for l, ladder in enumerate(kept):
        hull = _lower_hull(options[l], ladder)
        used += options[l][hull[-1]].bytes
        for a, b in zip(hull[:-1], hull[1:]):  # from b (bigger) down to a
            saved = options[l][b].bytes - options[l][a].bytes
            steps.append(((options[l][a].cost - options[l][b].cost) / saved, saved))
    if used <= capacity:
        return 0.0
    steps.sort()
    for slope, saved in steps:
        used -= saved
        if used <= capacity:
            return slope
    return steps[-1][0] if steps else 0.0


def _lower_hull(opts: Sequence[Option], ladder: list[int]) -> list[int]:
    """The lower convex hull of (bytes, cost) over an undominated ladder (bytes ascending)."""
    hull: list[int] = []
    for i in ladder:
        while len(hull) >= 2:
            a, b = opts[hull[-2]], opts[hull[-1]]
            c = opts[i]
            # b lies on or above the segment a-c: not on the lower hull
            if (b.cost - a.cost) * (c.bytes - a.bytes) >= (c.cost - a.cost) * (b.bytes - a.bytes):
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


def _reduce(options, kept, capacity, incumbent_cost: float) -> list[list[int]]:
    """Drop options that provably cannot beat the incumbent (reduced-cost fixing)."""
    lam = _lp_price(options, kept, capacity)
    priced = [[options[l][q].cost + lam * options[l][q].bytes for q in ladder] for l, ladder in enumerate(kept)]
    best = [min(p) for p in priced]
    lower_bound = sum(best) - lam * capacity
    slack = incumbent_cost - lower_bound
    slack += 1e-9 * max(abs(incumbent_cost), abs(lower_bound), 1e-300)  # never prune on rounding
    return [[q for q, p in zip(ladder, priced[l]) if p - best[l] <= slack] for l, ladder in enumerate(kept)]


@register("mckp")
def allocate(options: Sequence[Sequence[Option]], capacity: int) -> Allocation | None:
    if smallest_bytes(options) > capacity:
        return None
    kept = [undominated(opts) for opts in options]
    incumbent = _fill(options, kept, greedy.allocate(options, capacity), capacity)
    kept = _reduce(options, kept, capacity, totals(options, incumbent)[1])
    if all(len(k) == 1 for k in kept):
        return [k[0] for k in kept]
    return _solve_reduced(options, kept, capacity)


def _fill(options, kept: list[list[int]], choice: Allocation, capacity: int) -> Allocation:
    """Spend what greedy left unused on the upgrades that cut the most cost per byte: a better incumbent."""
    choice = list(choice)
    left = capacity - totals(options, choice)[0]
    upgrades = sorted(
        ((options[l][q].cost - options[l][choice[l]].cost) / (options[l][q].bytes - options[l][choice[l]].bytes), l, q)
        for l, ladder in enumerate(kept) for q in ladder
        if options[l][q].bytes > options[l][choice[l]].bytes and options[l][q].cost < options[l][choice[l]].cost)
    for _, l, q in upgrades:
        extra = options[l][q].bytes - options[l][choice[l]].bytes
        if 0 < extra <= left and options[l][q].cost < options[l][choice[l]].cost:
            left -= extra
            choice[l] = q
    return choice


DP_TABLE_LIMIT = 30_000_000  # cells (units x bytes) the exact DP may use: ~30 MB of choices


def _solve_reduced(options, kept: list[list[int]], capacity: int) -> Allocation:
    fixed = [l for l, k in enumerate(kept) if len(k) == 1]
    capacity_left = capacity - sum(options[l][kept[l][0]].bytes for l in fixed)
    free = [l for l, k in enumerate(kept) if len(k) > 1]
    choice = [kept[l][0] if len(kept[l]) == 1 else 0 for l in range(len(options))]
    sub_options = [[options[l][q] for q in kept[l]] for l in free]
    slack = capacity_left - smallest_bytes(sub_options)
    solver = _dp if (slack + 1) * len(free) <= DP_TABLE_LIMIT else _milp
    sub = solver(sub_options, capacity_left)
    for l, q in zip(free, sub):
        choice[l] = kept[l][q]
    if sum(options[l][q].bytes for l, q in enumerate(choice)) > capacity:  # integer check, no tolerance
        raise EdgeTQSError("the integer program returned a plan over the budget", "use --allocator greedy and report this")
    return choice


def _dp(options: Sequence[Sequence[Option]], capacity: int) -> Allocation:
    """Exact DP over integer bytes above each unit's smallest option: best[c] = least cost within c.

    Bytes are counted in units of the gcd of all the extras (exact: every
    reachable total is a multiple of it), which shrinks the table 4x for the
    usual 4-byte-aligned sizes.
    """
    floors = [min(o.bytes for o in opts) for opts in options]
    extras = [[o.bytes - floors[l] for o in opts] for l, opts in enumerate(options)]
    step = math.gcd(*[e for row in extras for e in row]) or 1
    slack = (capacity - sum(floors)) // step
    best = np.zeros(slack + 1)  # least cost of the units so far within c extra steps
    picks = np.zeros((len(options), slack + 1), dtype=np.uint8)
    for l, opts in enumerate(options):
        new = np.full(slack + 1, np.inf)
        for q, o in enumerate(opts):
            extra = extras[l][q] // step
            if extra > slack:
                continue
            candidate = best[: slack + 1 - extra] + o.cost
            target = new[extra:]
            better = candidate < target
            target[better] = candidate[better]
            picks[l, extra:][better] = q
        best = new
    choice, c = [0] * len(options), slack
    for l in range(len(options) - 1, -1, -1):
        q = int(picks[l, c])
        choice[l] = q
        c -= extras[l][q] // step
    return choice


def _milp(options: Sequence[Sequence[Option]], capacity: int) -> Allocation:
    kept = [list(range(len(opts))) for opts in options]
    unit_of = np.concatenate([np.full(len(k), l) for l, k in enumerate(kept)])
    index = np.concatenate([np.asarray(k) for k in kept])
    sizes = np.array([options[l][q].bytes for l, q in zip(unit_of, index)], dtype=np.float64)
    costs = np.array([options[l][q].cost for l, q in zip(unit_of, index)], dtype=np.float64)
    # HiGHS stops within an absolute gap of 1e-6, which scipy does not expose: shift each
    # unit's costs to start at 0 (a constant off the objective) and scale so the greedy
    # plan's objective is 1e6. A gap of 1e-6 is then 1e-12 of it; the argmin is unchanged.
    floor = np.array([min(o.cost for o in opts) for opts in options])
    costs = costs - floor[unit_of]
    greedy_choice = greedy.allocate(options, capacity)
    reference = sum(options[l][q].cost - floor[l] for l, q in enumerate(greedy_choice)) if greedy_choice else 0.0
    costs = costs * (1e6 / reference) if reference > 0 else costs
    n_units, n_vars = len(options), len(index)
    one_per_unit = csr_array((np.ones(n_vars), (unit_of, np.arange(n_vars))), shape=(n_units, n_vars))
    constraints = [LinearConstraint(one_per_unit, 1, 1),
                   LinearConstraint(sizes.reshape(1, -1), -np.inf, capacity)]
    result = milp(costs, constraints=constraints, integrality=np.ones(n_vars), bounds=Bounds(0, 1),
                  options={"mip_rel_gap": 0.0, "presolve": True})
    if result.x is None:
        raise EdgeTQSError(f"the integer program did not solve ({result.message})",
                           "use --allocator greedy, and report this model")
    choice = [0] * n_units
    for var in np.flatnonzero(result.x > 0.5):
        choice[unit_of[var]] = int(index[var])
    return choice
