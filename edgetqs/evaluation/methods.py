"""Every method's plans for one model: TQS variants, baselines (same MCKP, their
own sensitivities), the fixed heuristics (uniform, first/last at 8 bits) and
the rollout-verified search.

Budgets are average weight bits: ``budget_bytes(problem, b)`` is the memory
(file + arena, planner byte costs) the model takes when every unit stores ``b``
bits per weight, linearly interpolated between the unit's integer/float
formats (int2, int4, int8, fp16, fp32) — so 4 bits is exactly uniform int4.

Sensitivities are scored once per model (:func:`all_scores`); plans are made per
activation mode (:func:`all_plans`), priced by the planner in that mode (static:
AEQ's own static export, calibrated as the converter calibrates). A mode the
planner refuses for the model raises :class:`ModeUnavailable`
(:func:`reference_problem`); the verified search and its rollout check skip the
modes ``planner.search.mode_refusal`` names, with its reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from edgetqs import zoo
from edgetqs.errors import EdgeTQSError
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME

from edgetqs.planner.plan import KeepFloat, Problem, plan_from_choice, build_problem, solve_many
from edgetqs.quant.formats import DEFAULT_LADDER as LADDER  # per-channel ints and floats: "b bits per weight"
from edgetqs.quant.formats import FORMATS
from edgetqs.quant.modes import Mode
from edgetqs.sensitivity import get_method, method_names
from edgetqs.tqs.score import ScoreSettings

RUNTIME = DEFAULT_HOST_RUNTIME.spec
SHORT_HORIZON = 8  # the horizon ablation's other T

# name -> what it is (the CLI's --methods help and the report's legend): every sensitivity method of
# the registry (edgetqs/sensitivity.py; a new one is evaluated without touching this file), then
# the allocators, searches and fixed heuristics, with this evaluation's wording where it says more.
METHODS = {
    **{name: get_method(name).summary for name in method_names()},
    "tqs-quant": "TQS, quant probe, fixed T, exact MCKP",
    "tqs-gauss": "TQS, Gaussian probe",
    "tqs-quant-greedy": "TQS quant, greedy allocator",
    "tqs-saturation": "TQS saturation-aware: first-step kick x growth before d_t saturates (tqs/saturation.py)",
    "verified-search": "local search from the TQS knapsack's front, plans judged by whole-plan rollouts",
    "weight-error": "data-free relative weight error (NNCF-style)",
    "single-step": "one forward step's output change (TQS with T = 1)",
    "hessian": "HAWQ-style Hessian trace (Keras source models only)",
    "random": "random sensitivities (mean over seeds)",
    "uniform-at-budget": "the most precise single format that fits",
    "uniform-int8": "every unit int8 (fixed size)",
    "uniform-int4": "every unit int4 (fixed size)",
    "first-last-8": "first and last unit int8, the rest int4 (fixed size)",
}
DEFAULT_METHODS = tuple(METHODS)
SWEEP_METHODS = ("tqs-quant", "tqs-gauss")  # read straight off the shared TQS sweep (one_probe)


@dataclass
class MethodPlan:
    method: str
    plan: object  # edgetqs.planner.planfile.Plan
    budget_bits: float | None  # None: a fixed-size method (uniform, heuristic)
    seed: int | None = None
    budget_bytes: int | None = None  # the cell's budget (a fixed-size plan records none)

    def key(self) -> str:
        """Identical assignments in one mode convert to identical models: converted once."""
        formats = [(a.unit, a.format) for a in self.plan.assignments]
        return hashlib.sha256(json.dumps([str(self.plan.mode), formats]).encode()).hexdigest()[:16]


class ModeUnavailable(EdgeTQSError):
    """The planner (or AEQ's calibration) refuses an activation mode for this model."""


def problem_for(canonical, scores, like: Problem, bottom: str | None = None,
                keep_float: KeepFloat | None = None) -> Problem:
    """The planner's problem for ``scores`` in the mode (and static calibration) of ``like``."""
    return _problem(canonical, scores, like.mode, like.static_calibration, bottom, keep_float)


def _problem(canonical, scores, mode: Mode, calibration: dict | None, bottom: str | None = None,
             keep_float: KeepFloat | None = None) -> Problem:
    sha = hashlib.sha256(json.dumps(scores.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
    return build_problem(canonical.graph, scores, sha, RUNTIME, mode, bottom=bottom, keep_float=keep_float,
                         static_calibration=calibration)


def reference_problem(canonical, scored: "Scored", mode: Mode, calibration_data: str | None = None) -> Problem:
    """TQS-quant's problem in ``mode``: the one budgets are priced on, and the planner's check that the
    mode is available for the model (static: AEQ's all-int8 export must work and load in LiteRT).
    Static plans are priced with the activation ranges the converter then calibrates with
    (``calibration_data``: a series file, else the model's own free run)."""
    from edgetqs.planner.plan import static_calibration_for

    try:
        calibration = static_calibration_for(canonical, calibration_data) if mode.quantizes_activations else None
        return _problem(canonical, one_probe(scored.tqs, "quant"), mode, calibration)
    except EdgeTQSError as exc:
        raise ModeUnavailable(exc.problem, exc.fix) from exc


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


# -- one model's plans ------------------------------------------------------------
def cached_scores(canonical, horizon: int, windows: int, seed: int = 0, data: str | None = None):
    """TQS scores (both probes) of one model, cached by model sha and settings; the sweep's
    wall time is kept in the settings (``sweep_seconds``) for the search's time comparison."""
    from edgetqs.model.intake import cache_dir
    from edgetqs.tqs.score import ScoreSettings, score_model
    from edgetqs.tqs.scorefile import load_scores

    tag = "free" if data is None else hashlib.sha256(open(data, "rb").read()).hexdigest()[:12]
    path = cache_dir() / "evaluation" / f"{canonical.graph.sha256[:16]}-T{horizon}-K{windows}-s{seed}-{tag}.json"
    if path.exists():
        return load_scores(path)
    start = time.perf_counter()
    scores = score_model(canonical.graph, canonical.card, ScoreSettings(horizon=horizon, windows=windows, seed=seed,
                                                                        data=data), progress=False)
    scores.settings["sweep_seconds"] = round(time.perf_counter() - start, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    scores.save(path)
    return scores


def one_probe(scores, probe: str):
    """The TQS sweep read as method tqs-<probe>: that probe's gamma drives the cost."""
    return get_method(f"tqs-{probe}").from_sweep(scores)


def budgets_for(problem: Problem, settings) -> dict[float, int]:
    """Average bits -> bytes: the bit budgets (see budget_bytes), and each byte budget under the
    average bits it amounts to (so every cell has one label and one byte count)."""
    budgets = {float(b): budget_bytes(problem, b) for b in settings.budgets_bits}
    budgets.update({bits_for(problem, int(B)): int(B) for B in settings.budgets_bytes})
    return dict(sorted(budgets.items()))


def feasible_budgets(problem: Problem, budgets: dict[float, int], settings, notes: list[str]) -> dict[float, int]:
    """The budgets the model can meet; the others are noted (none at all: an error that says the smallest)."""
    smallest = problem.smallest_memory()
    too_small = sorted({B for B in list(budgets.values()) + list(settings.budgets_bytes) if B < smallest})
    if too_small:
        notes.append(f"budgets below the smallest footprint ({smallest} B) skipped: {', '.join(map(str, too_small))} B")
    kept = {b: B for b, B in budgets.items() if B >= smallest}
    if not kept:
        raise EdgeTQSError(f"every budget is below the smallest footprint this model reaches ({smallest} B: "
                           "every unit at its cheapest format, plus the file without weights and the arena)",
                           f"give budgets of at least {smallest} B (or average bits, --budgets 3,4,5,6)")
    return kept


def bits_for(problem: Problem, memory: int) -> float:
    """The average weight bits whose budget_bytes is ``memory`` (bisection; 3 decimals)."""
    lo, hi = 0.0, 32.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if budget_bytes(problem, mid) <= memory else (lo, mid)
    return round(lo, 3)


@dataclass
class Scored:
    """One model's sensitivities, shared by every mode: the TQS sweep, each chosen registry method's
    scores (random: one per seed), and the ablation's short-T sweep."""

    tqs: object  # ScoreFile, both probes
    methods: list[tuple[str, int | None, object]] = field(default_factory=list)  # (method, seed or None, scores)
    short: object | None = None


def all_scores(canonical, settings, score_data: str | None, notes: list[str], timings: dict,
               say=lambda text: None) -> Scored:
    """Every chosen method's sensitivities of ``canonical`` (modes do not change them)."""
    chosen = set(settings.methods)
    scored = Scored(cached_scores(canonical, settings.score_horizon, settings.score_windows, settings.seed, score_data))
    timings["tqs_sweep_seconds"] = scored.tqs.settings.get("sweep_seconds")
    sweep = ScoreSettings(horizon=settings.score_horizon, windows=settings.score_windows, seed=settings.seed,
                          data=score_data)
    keras_inputs, no_hessian = zoo.keras_training_inputs(canonical.card)  # what the hessian method needs
    for method in (m for m in method_names() if m in chosen and m not in SWEEP_METHODS):
        if method == "hessian" and no_hessian:
            notes.append(f"{canonical.card.name}: hessian skipped: {no_hessian}")
            continue
        say(f"{canonical.card.name}: {method} sensitivities")
        for seed in (range(settings.random_seeds) if method == "random" else [settings.seed]):
            result = get_method(method).score(canonical.graph, canonical.card, replace(sweep, seed=seed),
                                              template=scored.tqs, **keras_inputs)
            scored.methods.append((method, seed if method == "random" else None, result))
            if method == "tqs-saturation":
                timings["saturation"] = _saturation_summary(result.settings["saturation"])
    if settings.ablations:
        scored.short = cached_scores(canonical, SHORT_HORIZON, settings.score_windows, settings.seed, score_data)
    return scored


def all_plans(canonical, settings, scored: Scored, quant: Problem, score_data: str | None, timings: dict,
              say=lambda text: None):
    """Every chosen method's plans in ``quant``'s mode (``quant``: :func:`reference_problem`); the
    problems whose predicted cost is checked against the measured error (plus "rollout": the search's
    PlanRollouts, where the search handles the mode); notes; search summaries; skips (method, reason)."""
    from edgetqs.planner.search import mode_refusal

    chosen, notes, searches, skipped = set(settings.methods), [], [], []
    mode = quant.mode
    predictors = {"tqs-quant": quant}
    budgets = feasible_budgets(quant, budgets_for(quant, settings), settings, notes)
    plans: list[MethodPlan] = []
    if "tqs-quant" in chosen:
        plans += budgeted("tqs-quant", quant, budgets)
    if "tqs-gauss" in chosen:
        gauss = predictors["tqs-gauss"] = problem_for(canonical, one_probe(scored.tqs, "gauss"), quant)
        plans += budgeted("tqs-gauss", gauss, budgets)
    if "tqs-quant-greedy" in chosen:
        plans += budgeted("tqs-quant-greedy", quant, budgets, allocator="greedy")
    for fmt in ("int8", "int4"):
        if f"uniform-{fmt}" in chosen:
            plans.append(MethodPlan(f"uniform-{fmt}", fixed_plan(quant, uniform_choice(quant, fmt), fmt), None))
    if "first-last-8" in chosen:
        plans.append(MethodPlan("first-last-8", fixed_plan(quant, first_last_choice(quant), "first-last-8"), None))
    if "uniform-at-budget" in chosen:
        for b, B in budgets.items():
            plan = uniform_at_budget(quant, B)
            if plan is not None:
                plans.append(MethodPlan("uniform-at-budget", plan, b, budget_bytes=B))
    for method, seed, scores in scored.methods:
        problem = problem_for(canonical, scores, quant)
        if method != "random":
            predictors[method] = problem
        plans += budgeted(method, problem, budgets, seed=seed)
    refusal = mode_refusal(mode)
    if refusal is None:
        rollouts = predictors["rollout"] = search_rollouts(canonical, quant, settings, score_data)
        if "verified-search" in chosen:
            plans += _searched(canonical, quant, budgets, settings, rollouts, searches, timings, say, plans)
    else:  # no rollout prediction either: the check rolls plans out with the search's arithmetic
        skipped.append(("verified-search" if "verified-search" in chosen else "rollout check", refusal.problem))
    if scored.short is not None:
        short = problem_for(canonical, one_probe(scored.short, "quant"), quant)
        plans += budgeted(f"tqs-quant-T{SHORT_HORIZON}", short, budgets)
        plans += budgeted("tqs-quant-bottom-int4", problem_for(canonical, one_probe(scored.tqs, "quant"), quant,
                                                               bottom="int4"), budgets)
        plans += budgeted("tqs-quant-float1", problem_for(canonical, one_probe(scored.tqs, "quant"), quant,
                                                          keep_float=KeepFloat(count=1)), budgets)
    return plans, predictors, notes, searches, skipped


def search_rollouts(canonical, problem: Problem, settings, score_data: str | None):
    """One PlanRollouts per model (engine, the TQS contexts, exported weights), shared by every budget."""
    from edgetqs.planner.search import ExportedWeights, SearchSettings, plan_rollouts

    search = SearchSettings(horizon=settings.score_horizon, windows=settings.score_windows, seed=settings.seed,
                            data=score_data)
    return plan_rollouts(problem, canonical.card, search, ExportedWeights(problem, canonical.tflite_path))


def _searched(canonical, problem: Problem, budgets: dict, settings, rollouts, searches: list, timings: dict, say,
              others: list[MethodPlan]):
    """The search per budget, started from the TQS knapsack's front and from every other method's plan
    in that cell (a portfolio: on its own windows it keeps the best of them at the least)."""
    from edgetqs.planner.search import SearchSettings, verified_search

    plans, total = [], 0.0
    search = SearchSettings(evaluations=settings.search_evaluations, seconds=settings.search_seconds,
                            horizon=settings.score_horizon, windows=settings.score_windows, seed=settings.seed)
    for b, B in budgets.items():
        if B < problem.smallest_memory():
            continue
        say(f"{canonical.card.name}: verified search at {b} ({problem.mode})")
        starts = {f"{mp.method}" + (f" seed {mp.seed}" if mp.seed is not None else ""): mp.plan
                  for mp in others if mp.budget_bits == b or (mp.budget_bits is None and memory_of(mp.plan) <= B)}
        result = verified_search(problem, canonical.card, B, search, rollouts=rollouts, extra_starts=starts)
        total += result.seconds
        searches.append({"model": canonical.card.name, "mode": problem.mode, "budget_bits": b, "budget_bytes": B,
                         **result.summary()})
        plans.append(MethodPlan("verified-search", result.plan, b, None, B))
    timings["search_seconds"] = round(timings.get("search_seconds", 0.0) + total, 2)
    return plans


def _saturation_summary(parts: dict) -> dict:
    growth = [p["growth"] for p in parts["units"].values()]
    return {"spread": parts["spread"], "growth_min": min(growth), "growth_max": max(growth),
            "informative_calls_min": min(p["informative_calls"] for p in parts["units"].values()),
            "borrowed": sum(p["borrowed"] for p in parts["units"].values())}

