"""Rollout-verified search: plans checked by rolling them out before one is chosen.

The knapsack optimises a proxy — the additive, open-loop cost
``sum_l cost_l(q_l)`` — that ranks real plans only roughly. This search keeps
the knapsack as its starting point and judges plans by what they do:

1. **Starts**: the exact knapsack's plan at the budget, its front neighbours
   (its plans at slightly smaller budgets) and the greedy plan.
2. **Measure**: every candidate plan is rolled out *as a whole* — all its
   units quantized at once with the reference quantizer the export matches
   (the converter's verification checks that agreement on every export) —
   from the same context windows the scores came from (data-free free run by
   default, the user's data when given), batched: one engine call rolls out
   ``batch`` plans x K windows. Its error is the rollout RMSE against the float
   model; a plan whose rollouts blow up in more windows is worse whatever its RMSE.
3. **Improve** by local search under the byte budget: *ladder* moves (one unit
   one format up its ladder, paid for by another unit one format down, or
   alone when it fits) and *swaps* (two units exchange their rungs). Each round
   ranks the incumbent's neighbours by the cost the scores predict, rolls out
   the most promising ones plus a seeded random few, and moves to the best
   measured one if it improves. It stops when no neighbour improves, or at the
   evaluation or time budget.

Deterministic under ``seed`` (contexts and the random picks). The result
records every evaluated plan's predicted cost and measured error, so the
cost model's own ranking can be checked against the rollouts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edgetqs.engine import Engine
from edgetqs.errors import EdgeTQSError
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.planner import costs
from edgetqs.planner.allocators import undominated
from edgetqs.planner.plan import Problem, plan_from_choice, solve_many
from edgetqs.quant import aeq
from edgetqs.quant.formats import FORMATS
from edgetqs.quant.modes import Mode
from edgetqs.quant.ops import OPS
from edgetqs.quant.quantizer import residual

# Front neighbours: the knapsack's plans at these fractions of the budget also start the search.
FRONT_FRACTIONS = (1.0, 0.98, 0.95, 0.9)
RANDOM_SHARE = 0.25  # of each batch, picked at random among the not-yet-ranked-first neighbours
ALLOCATOR_NAME = "verified-search"


@dataclass
class SearchSettings:
    evaluations: int | None = None  # plan rollouts; None: 2 per unit, at least 16
    seconds: float | None = None  # wall-clock limit (checked between batches)
    horizon: int = 32  # model calls per rollout
    windows: int = 16  # context windows K
    seed: int = 0
    batch: int = 8  # plans per engine call
    data: str | None = None  # CSV/NPY series; None: data-free contexts

    def budget_for(self, units: int) -> int:
        if self.evaluations is not None:
            if self.evaluations < 1:
                raise EdgeTQSError(f"the search needs at least one evaluation (got {self.evaluations})",
                                   "pass --evaluations N with N >= 1")
            return self.evaluations
        return max(2 * units, 16)


# When `edgetqs plan` runs the search without being asked (docs/EVALUATION.md, runs of 2026-12-03): on the
# deep zoo models (26-38 weighted units) it beat the TQS knapsack in 7-9 of 12 cells at 1-3x a sweep per
# budget; on 3-8 units the methods mostly land on the same plans and its time is mostly fixed costs. A
# plan rollout runs the whole model at every call, so above some size it is left to an explicit --verify.
AUTO_MIN_UNITS = 24
AUTO_MAX_FILE_BYTES = 64 * 2**20  # the float .tflite


def search_by_default(problem: Problem) -> tuple[bool, str]:
    """(run the search?, why) for a plan the user did not say --verify or --no-verify for."""
    units = sum(not u.dead for u in problem.units)
    if mode_refusal(problem.mode) is not None:
        return False, f"{problem.mode} mode: the search cannot roll it out"
    if units < AUTO_MIN_UNITS:
        return False, f"{units} live units (< {AUTO_MIN_UNITS}): the knapsack's plan is rarely improved on"
    if problem.graph.size_bytes > AUTO_MAX_FILE_BYTES:
        return False, (f"float model of {problem.graph.size_bytes / 2**20:.0f} MiB (> {AUTO_MAX_FILE_BYTES // 2**20} MiB):"
                       " plan rollouts would take long; pass --verify to run them")
    return True, f"{units} live units (>= {AUTO_MIN_UNITS}): plans are checked by rollouts"


def mode_refusal(mode: Mode) -> EdgeTQSError | None:
    """Why the search (and its plan rollouts) cannot handle ``mode``, or None: its engine rolls plans out
    with quantized weights and float or on-the-fly activations, not static int8 activations."""
    if mode.quantizes_activations:
        return EdgeTQSError("the verified search rolls plans out with float or on-the-fly quantized activations, "
                            "not static int8 ones: it supports dynamic and weight-only modes",
                            "plan static-int8 models with the knapsack (allocator mckp)")
    return None


@dataclass(frozen=True)
class Measured:
    choice: tuple[int, ...]
    memory_bytes: int
    predicted_cost: float
    rmse: float  # rollout RMSE vs the float model over the search windows (finite windows)
    blow_up_fraction: float
    origin: str  # start:<how> or the move that produced it

    def key(self) -> tuple[float, float]:
        """Fewer blown-up windows first, then lower error (the evaluation's 'beats')."""
        return (self.blow_up_fraction, self.rmse)

    def to_dict(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "predicted_cost": self.predicted_cost, "rmse": self.rmse,
                "blow_up_fraction": self.blow_up_fraction, "origin": self.origin}


@dataclass
class SearchResult:
    plan: object  # edgetqs.planner.planfile.Plan: the best measured plan
    best: Measured
    knapsack: Measured  # the exact knapsack's own plan at the budget, as measured
    evaluated: list[Measured] = field(default_factory=list)
    seconds: float = 0.0
    contexts: str = ""
    stopped: str = ""  # converged | evaluations | time

    def summary(self) -> dict:
        return {"evaluations": len(self.evaluated), "seconds": round(self.seconds, 2), "stopped": self.stopped,
                "contexts": self.contexts, "best": self.best.to_dict(), "knapsack": self.knapsack.to_dict(),
                "improvement": (self.knapsack.rmse / self.best.rmse) if self.best.rmse > 0 else None,
                "plans": [m.to_dict() for m in self.evaluated]}


class ExportedWeights:
    """Q(W) - W exactly as AI Edge Quantizer stores each (tensor, format): read back from one
    real export per format with every unit that allows it at that format.

    The reference quantizer agrees with AEQ per channel but not to the bit for
    blockwise formats (AEQ rounds its block scales): reading the export back is
    the only way to roll out exactly the weights the .tflite will hold.
    """

    def __init__(self, problem: Problem, tflite_path):
        self.problem, self.tflite_path = problem, tflite_path
        self.tensors = costs.weight_tensors(problem.graph)
        self._residuals: dict[tuple[str, str], np.ndarray] = {}
        self._exported: set[str] = set()

    def residual(self, tensor: str, fmt: str) -> np.ndarray | None:
        if fmt == "fp32" or not self.tensors[tensor].quantizable:
            return None
        if fmt not in self._exported:
            self._export(fmt)
        return self._residuals.get((tensor, fmt))

    def _export(self, fmt: str) -> None:
        graph = self.problem.graph
        choice = [u.formats.index(fmt) if fmt in u.formats else _most_precise(u) for u in self.problem.units]
        formats = plan_from_choice(self.problem, choice, 0, "exported-weights", None).formats()
        recipe = aeq.build_recipe(graph, formats, self.problem.mode)
        exported = TFLiteGraph.from_bytes(aeq.export(self.tflite_path, recipe, self.problem.mode))
        for unit, q in zip(self.problem.units, choice):
            if unit.formats[q] != fmt:
                continue
            for name in unit.weight_tensors:
                if self.tensors[name].quantizable:
                    original = graph.float_constant(graph.tensor_by_name(name))
                    stored = exported.float_constant(_constant_named(exported, name))
                    self._residuals[(name, fmt)] = (stored - original).astype(np.float32)
        self._exported.add(fmt)


def _constant_named(graph: TFLiteGraph, name: str):
    """The constant tensor called ``name`` (an export may also hold activations of that name)."""
    return next(t for t in graph.tensors if t.name == name and t.is_constant)


class ReferenceWeights:
    """Q(W) - W from the reference quantizer (no export; blockwise formats differ slightly from AEQ)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.tensors = costs.weight_tensors(problem.graph)
        self._residuals: dict[tuple[str, str], np.ndarray] = {}

    def residual(self, tensor: str, fmt: str) -> np.ndarray | None:
        t = self.tensors[tensor]
        if fmt == "fp32" or not t.quantizable:
            return None
        key = (tensor, fmt)
        if key not in self._residuals:
            weights = self.problem.graph.float_constant(self.problem.graph.tensor_by_name(tensor))
            self._residuals[key] = residual(weights, FORMATS[fmt], t.channel_axis).astype(np.float32)
        return self._residuals[key]


def _most_precise(unit) -> int:
    return max(range(len(unit.formats)), key=lambda q: unit.memory_bytes[q])


# Ops LiteRT runs as hybrid kernels when their weight is stored as integers, and how each
# quantizes its float input on the fly (the op descriptions, edgetqs.quant.ops).
HYBRID_OPS = {name: spec.hybrid_input for name, spec in OPS.items() if spec.hybrid_input}


def quantize_inputs(x: np.ndarray, per: str) -> np.ndarray:
    """Asymmetric int8 quantize-dequantize, one (scale, zero point) per row (last axis) or per sample:
    how LiteRT's XNNPACK dynamic-range kernels (qd8) quantize a float input on the fly."""
    axes = (-1,) if per == "row" else tuple(range(1, x.ndim))
    lo = np.minimum(np.min(x, axis=axes, keepdims=True), 0.0)
    hi = np.maximum(np.max(x, axis=axes, keepdims=True), 0.0)
    scale = (hi - lo) / 255.0
    safe = np.where(scale > 0, scale, 1.0)
    zero = np.round(-128.0 - lo / safe)
    q = np.clip(np.round(x / safe) + zero, -128, 127)
    return ((q - zero) * safe).astype(np.float32)


class HybridInputs:
    """Engine hooks (``OpHooks``) for LiteRT's dynamic-range arithmetic: where a plan stores an op's
    weight as integers, that op quantizes its float input to int8 on the fly (``quantize_inputs``).

    ``quantized_rows`` (node index -> the batch rows of the plans that quantize its weight) is
    set per batch of plans.
    """

    def __init__(self):
        self.quantized_rows: dict[int, list[slice]] = {}

    def on_input(self, x: np.ndarray) -> np.ndarray:
        return x

    def run_op(self, node, inputs, kernel):
        rows = self.quantized_rows.get(node.index)
        if rows and node.opcode in HYBRID_OPS:
            x = np.array(inputs[0], dtype=np.float32)
            for r in rows:
                x[r] = quantize_inputs(x[r], HYBRID_OPS[node.opcode])
            inputs = [x, *inputs[1:]]
        return kernel(node, inputs)


def hybrid_engine(graph, spec) -> Engine:
    """The engine composed with :class:`HybridInputs`: plan rollouts as LiteRT computes them."""
    return Engine(graph, spec, hooks=HybridInputs())


class PlanRollouts:
    """Whole-plan rollouts: every unit at its planned format, K windows, batched over plans."""

    def __init__(self, problem: Problem, spec, windows: np.ndarray, horizon: int, backend=None, source: str = "",
                 weights=None, covariates: np.ndarray | None = None):
        """``covariates`` [K, horizon*patch, C]: a covariate model's given inputs, the same for every plan."""
        self.problem, self.windows, self.horizon, self.source = problem, windows, horizon, source
        self.covariates = covariates
        self.backend = backend or hybrid_engine(problem.graph, spec)
        self.reference = self.backend.rollout_probes(windows, horizon, [{}], covariates)[0]
        self.weights = weights or ReferenceWeights(problem)
        self._readers: dict[str, list[int]] = {}
        for node in self.backend.nodes:
            for i in node.inputs:
                if i >= 0:
                    self._readers.setdefault(self.problem.graph.tensors[i].name, []).append(node.index)

    def _set_quantized_rows(self, choices: list) -> None:
        """Tell a hybrid engine which plans (batch rows) store which ops' weights as integers."""
        hooks = getattr(self.backend, "hooks", None)
        if not isinstance(hooks, HybridInputs):
            return
        k, rows = len(self.windows), {}
        for g, choice in enumerate(choices):
            for unit, q in zip(self.problem.units, choice):
                if FORMATS[unit.formats[q]].is_float:
                    continue
                for name in unit.weight_tensors:
                    for node in self._readers.get(name, []):
                        group_rows = rows.setdefault(node, [])
                        if not group_rows or group_rows[-1].start != g * k:
                            group_rows.append(slice(g * k, (g + 1) * k))
        hooks.quantized_rows = rows

    def rollout(self, choices: list) -> np.ndarray:
        """[plans, K, T*patch, F] rollouts of whole plans."""
        self._set_quantized_rows(choices)
        return self.backend.rollout_probes(self.windows, self.horizon, [self.deltas(c) for c in choices],
                                           self.covariates)

    def deltas(self, choice) -> dict[str, np.ndarray]:
        out = {}
        for unit, q in zip(self.problem.units, choice):
            for name in unit.weight_tensors:
                r = self.weights.residual(name, unit.formats[q])
                if r is not None:
                    out[name] = r
        return out

    def measure(self, choices: list) -> list[tuple[float, float]]:
        """(rmse vs float, blow-up fraction) per plan."""
        from edgetqs.metrics import rollout_metrics

        runs = self.rollout(choices)
        results = []
        for run in runs:
            m = rollout_metrics(run, self.reference)
            results.append((float(m.rmse), float(m.blow_up_fraction)))
        return results


class _Ladders:
    """Each unit's useful formats in order of bytes (undominated by bytes and predicted cost)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.rungs = [undominated(u.options()) for u in problem.units]

    def position(self, unit: int, q: int) -> int:
        rungs = self.rungs[unit]
        if q in rungs:
            return rungs.index(q)
        size = self.problem.units[unit].memory_bytes[q]  # a dominated choice: the rung of nearest size below
        below = [i for i, r in enumerate(rungs) if self.problem.units[unit].memory_bytes[r] <= size]
        return below[-1] if below else 0

    def memory(self, choice) -> int:
        return self.problem.fixed_memory_bytes + sum(u.memory_bytes[q] for u, q in zip(self.problem.units, choice))

    def cost(self, choice) -> float:
        return float(sum(u.costs[q] for u, q in zip(self.problem.units, choice)))

    def neighbours(self, choice: tuple[int, ...], budget: int) -> list[tuple[tuple[int, ...], str]]:
        """Ladder moves (i up, j down or nothing) and swaps (i, j exchange rungs) that fit ``budget``."""
        pos = [self.position(i, q) for i, q in enumerate(choice)]
        n = len(choice)
        found: dict[tuple[int, ...], str] = {}

        def at(i: int, p: int) -> int | None:
            return self.rungs[i][p] if 0 <= p < len(self.rungs[i]) else None

        def add(changes: dict[int, int], move: str) -> None:
            new = list(choice)
            for i, q in changes.items():
                new[i] = q
            key = tuple(new)
            if key != choice and key not in found and self.memory(key) <= budget:
                found[key] = move

        names = [u.name for u in self.problem.units]
        for i in range(n):
            up = at(i, pos[i] + 1)
            if up is None:
                continue
            add({i: up}, f"up {names[i]}")
            for j in range(n):
                down = at(j, pos[j] - 1)
                if j != i and down is not None:
                    add({i: up, j: down}, f"up {names[i]}, down {names[j]}")
        for i in range(n):
            for j in range(i + 1, n):
                qi, qj = at(i, pos[j]), at(j, pos[i])
                if pos[i] != pos[j] and qi is not None and qj is not None:
                    add({i: qi, j: qj}, f"swap {names[i]} <-> {names[j]}")
        return list(found.items())


def search_contexts(problem: Problem, card, settings: SearchSettings, backend):
    """The context windows TQS scored with: the same free run (seed, K) or the same data."""
    from edgetqs.tqs.score import ScoreSettings, make_contexts

    return make_contexts(backend, card, ScoreSettings(horizon=settings.horizon, windows=settings.windows,
                                                      seed=settings.seed, data=settings.data))


def plan_rollouts(problem: Problem, card, settings: SearchSettings, weights) -> PlanRollouts:
    """Whole-plan rollouts from the contexts TQS scored with (covariates included), on the hybrid engine."""
    engine = hybrid_engine(problem.graph, card.rollout)
    contexts = search_contexts(problem, card, settings, engine)
    return PlanRollouts(problem, card.rollout, contexts.windows, settings.horizon, engine, contexts.source,
                        weights, contexts.covariates_for(settings.horizon, card.rollout.patch))


def verified_search(problem: Problem, card, budget_bytes: int, settings: SearchSettings | None = None,
                    rollouts: PlanRollouts | None = None, tflite_path=None,
                    extra_starts: dict[str, object] | None = None) -> SearchResult:
    """The best plan under ``budget_bytes`` by measured rollout error (see the module doc).

    ``tflite_path``: the float model; given, plans roll out with the weights AEQ
    actually exports (:class:`ExportedWeights`), else the reference quantizer's.
    ``rollouts``: share one :class:`PlanRollouts` (engine, contexts, reference,
    residuals) across the budgets of one model. ``extra_starts``: label -> plan of
    the same units (e.g. other sensitivities' knapsack plans) that also start the
    search when they fit the budget — the search then keeps the best of them on
    its windows at the least.
    """
    settings = settings or SearchSettings()
    refusal = mode_refusal(problem.mode)
    if refusal is not None:
        raise refusal
    start_time = time.perf_counter()
    if rollouts is None:
        weights = ExportedWeights(problem, tflite_path) if tflite_path else ReferenceWeights(problem)
        rollouts = plan_rollouts(problem, card, settings, weights)
    ladders = _Ladders(problem)
    limit = settings.budget_for(len(problem.units))
    rng = np.random.default_rng(settings.seed)
    seen: dict[tuple[int, ...], Measured] = {}
    order: list[Measured] = []

    def run(candidates: list[tuple[tuple[int, ...], str]]) -> list[Measured]:
        fresh = [(c, o) for c, o in candidates if c not in seen][: max(limit - len(order), 0)]
        for i in range(0, len(fresh), settings.batch):
            part = fresh[i:i + settings.batch]
            for (choice, origin), (rmse, blown) in zip(part, rollouts.measure([c for c, _ in part])):
                m = Measured(choice, ladders.memory(choice), ladders.cost(choice), rmse, blown, origin)
                seen[choice] = m
                order.append(m)
        return [seen[c] for c, _ in candidates if c in seen]

    starts = _starts(problem, budget_bytes) + _extra(problem, ladders, budget_bytes, extra_starts or {})
    unique: dict[tuple[int, ...], str] = {}
    for choice, origin in starts:
        unique.setdefault(choice, origin)
    measured_starts = run(list(unique.items()))
    knapsack = measured_starts[0]
    best = min(measured_starts, key=Measured.key)
    stopped = "converged"
    while True:
        if len(order) >= limit:
            stopped = "evaluations"
            break
        if settings.seconds is not None and time.perf_counter() - start_time >= settings.seconds:
            stopped = "time"
            break
        pending = [(c, o) for c, o in ladders.neighbours(best.choice, budget_bytes) if c not in seen]
        if not pending:
            break
        batch = _pick(pending, ladders, settings.batch, rng)
        improved = min(run(batch), key=Measured.key, default=None)
        if improved is not None and improved.key() < best.key():
            best = improved
        elif len(pending) <= len(batch):
            break  # every neighbour measured, none better: a local optimum
    plan = plan_from_choice(problem, list(best.choice), budget_bytes, ALLOCATOR_NAME, None)
    return SearchResult(plan, best, knapsack, order, time.perf_counter() - start_time,
                        rollouts.source, stopped)


def _starts(problem: Problem, budget_bytes: int) -> list[tuple[tuple[int, ...], str]]:
    budgets = [int(budget_bytes * f) for f in FRONT_FRACTIONS]
    feasible = [b for b in budgets if b >= problem.smallest_memory()]
    if not feasible or feasible[0] != budget_bytes:
        solve_many(problem, [budget_bytes])  # raises the knapsack's own "below the smallest footprint" error
    starts = []
    for b, plan in zip(feasible, solve_many(problem, feasible, "mckp")):
        starts.append((_choice_of(problem, plan), f"start: knapsack at {b / budget_bytes:.0%} of the budget"))
    starts.append((_choice_of(problem, solve_many(problem, [budget_bytes], "greedy")[0]), "start: greedy"))
    unique: dict[tuple[int, ...], str] = {}
    for choice, origin in starts:
        unique.setdefault(choice, origin)
    return list(unique.items())


def _extra(problem: Problem, ladders: "_Ladders", budget_bytes: int, plans: dict) -> list[tuple[tuple[int, ...], str]]:
    found = []
    for label, plan in plans.items():
        by_unit = {a.unit: a.format for a in plan.assignments}
        units = problem.units
        if set(by_unit) != {u.name for u in units} or any(by_unit[u.name] not in u.formats for u in units):
            continue  # planned for other units or formats than this problem's
        choice = tuple(u.formats.index(by_unit[u.name]) for u in units)
        if ladders.memory(choice) <= budget_bytes:
            found.append((choice, f"start: {label}"))
    return found


def _choice_of(problem: Problem, plan) -> tuple[int, ...]:
    return tuple(u.formats.index(a.format) for u, a in zip(problem.units, plan.assignments))


def _pick(pending, ladders: _Ladders, size: int, rng: np.random.Generator):
    """The ``size`` neighbours to roll out next: most promising by predicted cost, plus a random few."""
    ranked = sorted(pending, key=lambda item: (ladders.cost(item[0]), item[1]))
    random_count = min(int(round(size * RANDOM_SHARE)), max(len(ranked) - size, 0))
    head = ranked[: size - random_count]
    rest = ranked[size - random_count:]
    picks = [rest[i] for i in sorted(rng.choice(len(rest), random_count, replace=False))] if random_count else []
    return head + picks
