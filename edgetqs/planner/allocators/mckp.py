"""Exact multiple-choice knapsack: least total cost, one option per unit, total
bytes <= the budget. Byte sizes are integers and every comparison with the
budget is on integers, so a plan never exceeds it; the optimum is proven.

How (each step exact):

1. Dominated options (larger and no cheaper) are never optimal: dropped.
2. The LP relaxation: walking every unit's lower convex hull from the top,
   steps in order of cost added per byte saved, until the budget is met. The
   slope of the crossing step is the LP's price per byte ``lam``; the walk
   (crossing step taken) plus a fill of the bytes left over is an incumbent
   plan of cost UB.
3. Lagrangian reduced-cost fixing. For any ``lam >= 0`` and feasible plan x:
   ``cost(x) >= LB + sum_l rc_l(x_l)`` with
   ``rc_l(q) = c_lq + lam*b_lq - min_q' (c_lq' + lam*b_lq')`` and
   ``LB = sum_l min_q (c_lq + lam*b_lq) - lam*B``. An option with
   ``rc > UB - LB`` cannot be in a plan better than UB: dropped. Most units
   keep a single option.
4. The units left are solved by a sparse dynamic program over (bytes, cost)
   states: dominated states dropped, and states whose Lagrangian bound on the
   remaining units exceeds UB pruned (the same bound as 3). If that ever grows
   past STATE_LIMIT states, HiGHS solves the reduced integer program instead
   (scipy.optimize.milp, zero gap).

``allocate_many`` shares steps 1-2's preparation across the budgets of a front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array

from edgetqs.errors import EdgeTQSError
from edgetqs.planner.allocators import Allocation, Option, greedy, register, undominated

STATE_LIMIT = 2_000_000  # sparse-DP states before handing the reduced problem to HiGHS


@dataclass
class _Prepared:
    """The instance as padded arrays of undominated options, and its hull steps by slope."""

    sizes: np.ndarray  # [L, K] int64, bytes ascending per unit; padding repeats the last option
    costs: np.ndarray  # [L, K] float64, cost descending per unit
    index: np.ndarray  # [L, K] option index in the caller's lists
    count: np.ndarray  # [L] undominated options per unit
    hull_pos: list[np.ndarray]  # per unit, the ladder positions on the lower hull (ascending)
    step_unit: np.ndarray  # hull steps sorted by slope: which unit
    step_saved: np.ndarray  # bytes the step saves
    step_slope: np.ndarray  # cost added per byte saved
    step_to: np.ndarray  # ladder position the step lands on


def _prepare(options: Sequence[Sequence[Option]]) -> _Prepared:
    ladders = [undominated(opts) for opts in options]
    width = max(len(l) for l in ladders)
    L = len(options)
    sizes = np.zeros((L, width), np.int64)
    costs = np.zeros((L, width))
    index = np.zeros((L, width), np.int64)
    hulls, units, saved, slopes, targets = [], [], [], [], []
    for l, ladder in enumerate(ladders):
        padded = ladder + [ladder[-1]] * (width - len(ladder))
        sizes[l] = [options[l][q].bytes for q in padded]
        costs[l] = [options[l][q].cost for q in padded]
        index[l] = padded
        hull = _lower_hull(sizes[l, : len(ladder)], costs[l, : len(ladder)])
        hulls.append(hull)
        for a, b in zip(hull[:-1], hull[1:]):  # step from b (bigger) down to a
            units.append(l)
            saved.append(sizes[l, b] - sizes[l, a])
            slopes.append((costs[l, a] - costs[l, b]) / (sizes[l, b] - sizes[l, a]))
            targets.append(a)
    order = np.argsort(np.asarray(slopes), kind="stable")
    # Within a unit, convexity makes its steps' slopes increase from the top of the
    # hull down, so any slope-ordered prefix takes each unit's steps in hull order.
    return _Prepared(sizes, costs, index, np.array([len(l) for l in ladders]), hulls,
                     np.asarray(units, np.int64)[order], np.asarray(saved, np.int64)[order],
                     np.asarray(slopes)[order], np.asarray(targets, np.int64)[order])


def _lower_hull(sizes: np.ndarray, costs: np.ndarray) -> np.ndarray:
    hull: list[int] = []
    for i in range(len(sizes)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b on or above the segment a-i: not on the lower hull
            if (costs[b] - costs[a]) * (sizes[i] - sizes[a]) >= (costs[i] - costs[a]) * (sizes[b] - sizes[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return np.asarray(hull)


def _lp_walk(prep: _Prepared, capacity: int) -> tuple[float, np.ndarray]:
    """(LP price per byte, an integer plan as ladder positions) from the hull walk."""
    top = np.array([h[-1] for h in prep.hull_pos])
    used = int(prep.sizes[np.arange(len(top)), top].sum())
    if used <= capacity:
        return 0.0, top
    over = used - capacity
    crossing = int(np.searchsorted(np.cumsum(prep.step_saved), over))  # first prefix that fits
    taken = slice(0, crossing + 1)
    position = top.copy()
    # the last step taken per unit is its lowest landing point (steps run down the hull)
    last = prep.step_unit[taken]
    _, last_idx = np.unique(last[::-1], return_index=True)
    units = last[::-1][last_idx]
    position[units] = prep.step_to[taken][::-1][last_idx]
    return float(prep.step_slope[crossing]), position


def _fill(prep: _Prepared, position: np.ndarray, capacity: int) -> np.ndarray:
    """Spend the bytes the walk left over on upgrades, best cost cut per byte first."""
    L = len(position)
    rows = np.arange(L)
    left = capacity - int(prep.sizes[rows, position].sum())
    extra = prep.sizes - prep.sizes[rows, position][:, None]
    gain = prep.costs[rows, position][:, None] - prep.costs
    candidates = np.argwhere((extra > 0) & (extra <= left) & (gain > 0))
    if len(candidates) == 0:
        return position
    rates = gain[candidates[:, 0], candidates[:, 1]] / extra[candidates[:, 0], candidates[:, 1]]
    position = position.copy()
    for l, q in candidates[np.argsort(-rates)]:
        more = prep.sizes[l, q] - prep.sizes[l, position[l]]
        if 0 < more <= left and prep.costs[l, q] < prep.costs[l, position[l]]:
            left -= int(more)
            position[l] = q
    return position


def _reduced_options(prep: _Prepared, lam: float, capacity: int, incumbent_cost: float):
    """Options per unit that can still beat the incumbent, and the Lagrangian pieces of the bound."""
    valid = np.arange(prep.sizes.shape[1])[None, :] < prep.count[:, None]
    priced = np.where(valid, prep.costs + lam * prep.sizes, np.inf)
    best = priced.min(axis=1)
    lower_bound = best.sum() - lam * capacity
    slack = incumbent_cost - lower_bound
    slack += 1e-9 * max(abs(incumbent_cost), abs(lower_bound), 1e-300)  # never prune on rounding
    return priced - best[:, None] <= slack, best


def _solve_one(prep: _Prepared, capacity: int) -> np.ndarray | None:
    L = prep.sizes.shape[0]
    rows = np.arange(L)
    if int(prep.sizes[:, 0].sum()) > capacity:
        return None
    lam, position = _lp_walk(prep, capacity)
    if lam == 0.0:
        return position  # the most precise option of every unit fits
    position = _fill(prep, position, capacity)
    incumbent = float(prep.costs[rows, position].sum())
    keep, best = _reduced_options(prep, lam, capacity, incumbent)
    free = np.flatnonzero(keep.sum(axis=1) > 1)
    if len(free) == 0:
        return np.argmax(keep, axis=1)
    fixed = np.setdiff1d(rows, free)
    choice = np.zeros(L, np.int64)
    choice[fixed] = np.argmax(keep[fixed], axis=1)
    capacity_left = capacity - int(prep.sizes[fixed, choice[fixed]].sum())
    sub = [[(int(prep.sizes[l, q]), float(prep.costs[l, q]), q) for q in np.flatnonzero(keep[l])] for l in free]
    bound_cap = incumbent - float(prep.costs[fixed, choice[fixed]].sum())
    picked = _sparse_dp(sub, capacity_left, lam, best[free], bound_cap)
    if picked is None:
        picked = _milp([[Option(b, c) for b, c, _ in opts] for opts in sub], capacity_left)
    choice[free] = [sub[i][p][2] for i, p in enumerate(picked)]
    if int(prep.sizes[rows, choice].sum()) > capacity:  # integer check, no tolerance
        raise EdgeTQSError("the exact allocator produced a plan over the budget", "use --allocator greedy and report this")
    # never worse than the incumbent (a guard against float ties in the pruning)
    if float(prep.costs[rows, choice].sum()) > incumbent:
        return position
    return choice


def _sparse_dp(sub, capacity: int, lam: float, priced_best: np.ndarray, upper: float) -> list[int] | None:
    """Exact DP over (bytes, cost) states of the free units, Lagrangian-pruned; None if too many states."""
    n = len(sub)
    min_bytes = np.array([min(b for b, _, _ in opts) for opts in sub], np.int64)
    rest_bytes = np.concatenate([np.cumsum(min_bytes[::-1])[::-1][1:], [0]])  # units after i, at their smallest
    rest_priced = np.concatenate([np.cumsum(priced_best[::-1])[::-1][1:], [0.0]])
    tol = 1e-9 * max(abs(upper), 1e-300)
    state_bytes, state_cost = np.zeros(1, np.int64), np.zeros(1)
    history = []
    for i, opts in enumerate(sub):
        b = np.concatenate([state_bytes + ob for ob, _, _ in opts])
        c = np.concatenate([state_cost + oc for _, oc, _ in opts])
        parent = np.tile(np.arange(len(state_bytes)), len(opts))
        option = np.repeat(np.arange(len(opts)), len(state_bytes))
        # bound: these units so far + the Lagrangian bound of the rest within the bytes left
        ok = (b + rest_bytes[i] <= capacity) & (c + rest_priced[i] - lam * (capacity - b) <= upper + tol)
        b, c, parent, option = b[ok], c[ok], parent[ok], option[ok]
        order = np.lexsort((c, b))  # by bytes, then cost
        b, c, parent, option = b[order], c[order], parent[order], option[order]
        running = np.minimum.accumulate(c)
        undominated = np.concatenate([[True], c[1:] < running[:-1]]) if len(c) else np.zeros(0, bool)
        b, c, parent, option = b[undominated], c[undominated], parent[undominated], option[undominated]
        if len(b) > STATE_LIMIT:
            return None
        history.append((parent, option))
        state_bytes, state_cost = b, c
    if len(state_cost) == 0:
        return None  # pruned everything: only the incumbent is optimal; let HiGHS confirm
    state = int(np.argmin(state_cost))
    picked = [0] * n
    for i in range(n - 1, -1, -1):
        parent, option = history[i]
        picked[i] = int(option[state])
        state = int(parent[state])
    return picked


def _milp(options: Sequence[Sequence[Option]], capacity: int) -> Allocation:
    """The reduced problem as a 0-1 integer program for HiGHS."""
    unit_of = np.concatenate([np.full(len(opts), l) for l, opts in enumerate(options)])
    index = np.concatenate([np.arange(len(opts)) for opts in options])
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
    constraints = [LinearConstraint(one_per_unit, 1, 1), LinearConstraint(sizes.reshape(1, -1), -np.inf, capacity)]
    result = milp(costs, constraints=constraints, integrality=np.ones(n_vars), bounds=Bounds(0, 1),
                  options={"mip_rel_gap": 0.0, "presolve": True})
    if result.x is None:
        raise EdgeTQSError(f"the integer program did not solve ({result.message})",
                           "use --allocator greedy, and report this model")
    choice = [0] * n_units
    for var in np.flatnonzero(result.x > 0.5):
        choice[unit_of[var]] = int(index[var])
    return choice


def allocate_many(options: Sequence[Sequence[Option]], capacities: Sequence[int]) -> list[Allocation | None]:
    """The exact plan for each budget, sharing the preparation (the Pareto front's case)."""
    prep = _prepare(options)
    results: list[Allocation | None] = []
    for capacity in capacities:
        position = _solve_one(prep, int(capacity))
        results.append(None if position is None else [int(prep.index[l, q]) for l, q in enumerate(position)])
    return results


@register("mckp")
def allocate(options: Sequence[Sequence[Option]], capacity: int) -> Allocation | None:
    return allocate_many(options, [capacity])[0]


allocate.many = allocate_many
