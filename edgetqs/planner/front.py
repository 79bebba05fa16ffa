"""The Pareto front: one score file, plans across a range of budgets.

The scores do not depend on the format, so one problem (options per unit)
gives the plan for every budget; the front is the least predicted error at
each memory size. The knee is the budget after which extra bytes buy the
least: the point farthest below the chord from the smallest to the largest
plan, in (bytes, log error) normalised to the unit square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetqs.files import save_figure
from edgetqs.planner.plan import Problem, format_size, marginal_error_per_byte, solve_many, uniform_costs
from edgetqs.planner.planfile import Plan


@dataclass
class FrontPoint:
    budget_bytes: int
    plan: Plan

    @property
    def memory_bytes(self) -> int:
        return self.plan.predicted["memory_bytes"]

    @property
    def total_cost(self) -> float:
        return self.plan.predicted["total_cost"]

    def format_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.plan.assignments:
            counts[a.format] = counts.get(a.format, 0) + 1
        return counts


@dataclass
class Front:
    points: list[FrontPoint]
    knee: int  # index into points
    board_budget: int | None

    def table(self) -> list[dict]:
        return [{"budget_bytes": p.budget_bytes, "memory_bytes": p.memory_bytes,
                 "model_bytes": p.plan.predicted["model_bytes"], "total_cost": p.total_cost,
                 "formats": p.format_counts(), "knee": i == self.knee} for i, p in enumerate(self.points)]


def pareto_front(problem: Problem, budgets: int = 20, allocator: str = "mckp",
                 board_budget: int | None = None) -> Front:
    """Plans at ``budgets`` memory sizes evenly spaced from the smallest to the largest reachable,
    plus the sizes of the uniform plans (all int8, all int4, ...) so the front shows what mixing buys there."""
    low, high = problem.smallest_memory(), problem.largest_memory()
    uniform = [size for size, _ in uniform_costs(problem).values() if low <= size <= high]
    sizes = sorted({int(b) for b in np.linspace(low, high, budgets)} | set(uniform))
    points = []
    for size, plan in zip(sizes, solve_many(problem, sizes, allocator)):
        if points and plan.predicted["memory_bytes"] == points[-1].memory_bytes:
            continue  # the same plan as the previous budget: not a new point
        points.append(FrontPoint(size, plan))
    return Front(points, _knee(points), board_budget)


def _knee(points: list[FrontPoint]) -> int:
    # log error: only plans with some error (the all-float end has error 0)
    positive = [i for i, p in enumerate(points) if p.total_cost > 0]
    if len(positive) < 3:
        return positive[-1] if positive else len(points) - 1
    x = np.array([points[i].memory_bytes for i in positive], float)
    y = np.log10(np.array([points[i].total_cost for i in positive]))
    x = (x - x.min()) / max(np.ptp(x), 1e-300)
    y = (y - y.min()) / max(np.ptp(y), 1e-300)
    chord = y[0] + (y[-1] - y[0]) * x  # distance below the chord from the first to the last point
    return positive[int(np.argmax(chord - y))]


def plot_front(front: Front, problem: Problem, path: str | Path, title: str = "") -> Path:
    """Predicted error vs memory, board budget and knee marked, uniform formats for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    # error 0 (all float) has no place on a log axis: it is named in the legend instead
    shown = [p for p in front.points if p.total_cost > 0]
    exact = [p for p in front.points if p.total_cost <= 0]
    # a staircase: the best error within a budget holds until the next plan fits
    ax.plot([p.memory_bytes / 1024 for p in shown], [p.total_cost for p in shown], "o-", drawstyle="steps-post",
            label="TQS plans (exact MCKP)", color="C0")
    if exact:
        ax.plot([], [], " ", label=f"error 0 (all float) from {format_size(exact[0].memory_bytes)}")
    knee = front.points[front.knee]
    if knee.total_cost > 0:
        ax.plot([knee.memory_bytes / 1024], [knee.total_cost], "*", ms=16, color="C3",
                label=f"knee: {format_size(knee.memory_bytes)}")
    for name, (size, cost) in uniform_costs(problem).items():
        if cost > 0:
            ax.plot([size / 1024], [cost], "s", color="gray", alpha=0.6)
            ax.annotate(f"all {name}", (size / 1024, cost), fontsize=8, xytext=(4, 4), textcoords="offset points")
    if front.board_budget is not None:
        largest = max(p.memory_bytes for p in front.points)
        if front.board_budget <= 4 * largest:
            ax.axvline(front.board_budget / 1024, color="C2", ls="--",
                       label=f"board budget {format_size(front.board_budget)}")
        else:  # a line far off to the right would squash the front into one pixel column
            ax.plot([], [], " ", label=f"board budget {format_size(front.board_budget)} (every plan fits)")
    ax.set_yscale("log")
    ax.set_xlabel("model memory (KiB): .tflite + activation arena")
    ax.set_ylabel("predicted rollout error  sum exp(γT)·‖δ‖")
    ax.set_title(title or f"Pareto front — {problem.scores.model.get('name')} on {problem.runtime}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def unit_table(problem: Problem, plan: Plan) -> list[dict]:
    """Per unit: format, bytes, cost, gamma and the marginal error per byte of its next drop."""
    marginal = marginal_error_per_byte(problem, plan)
    rows = []
    for u, a in zip(problem.units, plan.assignments):
        rows.append({"unit": u.name, "format": a.format, "bytes": a.bytes, "cost": a.cost,
                     "gamma": None if math.isinf(u.gamma) else u.gamma, "dead": u.dead,
                     "marginal_error_per_byte": marginal[u.name], "allowed": u.formats})
    return rows
