"""From a score file to a plan: the options per unit, the budget, the allocation.

Per unit l and allowed format q (METHOD.md §3):

    cost_l(q)  = A_l * ||delta_l(q)||        (norms from the weights alone)

where the amplification ``A_l`` comes from the score file's sensitivity method
(its cost model, edgetqs/sensitivity.py): ``exp(gamma_l * T)`` for TQS.
    bytes_l(q) = what the unit's weights take in the .tflite (costs.py)

A format is allowed for a unit when AEQ can store every quantizable weight of
the unit in it, the capability matrix says the board's runtime computes it
correctly for that op and mode, it is not below the bottom tier, and the unit
is not kept in float. Dead units get their cheapest allowed format.

The budget is the memory the model takes: its .tflite (mapped) plus the
activation arena, plus in weight-only mode the float copies DEQUANTIZE makes,
plus the packed copy of the weights the firmware's delegate makes (XNNPACK;
fractions per format in edgetqs/runtimes.py).
From a target it is ``RAM x share - runtime overhead`` (and the file must fit
the storage); ``--budget`` gives it directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.engine.litert import load_interpreter
from edgetqs import runtimes
from edgetqs.runtimes import DEFAULT_DELEGATE, DEFAULT_HOST_RUNTIME
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.planner import costs
from edgetqs.planner.allocators import Option, allocate_front, get_allocator, smallest_bytes
from edgetqs.targets import Target
from edgetqs.planner.conformance import CapabilityMatrix
from edgetqs.planner.planfile import Assignment, Plan, check_made_for
from edgetqs.quant import aeq
from edgetqs.quant.formats import FORMATS, WeightFormat, get_format
from edgetqs.quant.modes import Mode
from edgetqs.quant.quantizer import residual_norm
from edgetqs.sensitivity import cost_model
from edgetqs.tqs.score import model_contexts
from edgetqs.tqs.scorefile import ScoreFile, file_sha256, load_scores



@dataclass
class KeepFloat:
    """Units kept in fp32: the N most sensitive, by name, and/or the most sensitive within a byte budget."""

    count: int = 0
    names: list[str] = field(default_factory=list)
    bytes: int = 0


@dataclass
class UnitOptions:
    name: str
    weight_tensors: list[str]
    gamma: float  # the sensitivity method's score (TQS: gamma); -inf when dead
    dead: bool
    formats: list[str]
    file_bytes: list[int]  # in the .tflite
    memory_bytes: list[int]  # file bytes + float copies and the delegate's packed copy made at run time
    packed_bytes: list[int]  # of memory_bytes, the delegate's packed copy
    costs: list[float]

    def options(self) -> list[Option]:
        return [Option(b, c) for b, c in zip(self.memory_bytes, self.costs)]


@dataclass
class Problem:
    """Everything the allocators need for one model, scores, runtime and mode."""

    graph: TFLiteGraph
    scores: object  # edgetqs.tqs.scorefile.ScoreFile
    scores_sha256: str
    runtime: str
    mode: Mode
    units: list[UnitOptions]
    fixed_file_bytes: int  # graph, non-weight tensors and weights outside every unit
    arena_bytes: int
    static_calibration: dict | None = None  # static mode: the activation ranges AEQ prices plans with
    delegate: str = "none"  # whose packed weight copy the memory counts (edgetqs.runtimes)
    fixed_packed_bytes: int = 0  # the delegate's packed copy of the weights outside every unit

    @property
    def fixed_memory_bytes(self) -> int:
        return self.fixed_file_bytes + self.arena_bytes + self.fixed_packed_bytes

    def smallest_memory(self) -> int:
        return self.fixed_memory_bytes + smallest_bytes([u.options() for u in self.units])

    def largest_memory(self) -> int:
        return self.fixed_memory_bytes + sum(max(u.memory_bytes) for u in self.units)


# -- building the options ---------------------------------------------------
def _allowed(tensors: list[costs.WeightTensor], fmt: WeightFormat, runtime: str, mode: Mode,
             matrix: CapabilityMatrix) -> bool:
    quantizable = [t for t in tensors if t.quantizable]
    if fmt.name != "fp32" and not quantizable:
        return False
    # Static plans need static results (int8 activations change the kernels); a matrix
    # made before static checks existed falls back to the dynamic ones.
    matrix_mode = mode if mode != Mode.STATIC or matrix.has_mode(runtime, "static") else "dynamic"
    return all(costs.applicable(t, fmt) and matrix.supports(runtime, t.op, matrix_mode, fmt.name) for t in quantizable)


def _residual_norm(graph: TFLiteGraph, t: costs.WeightTensor, fmt: WeightFormat, cache: dict) -> float:
    if not t.quantizable or fmt.name == "fp32":
        return 0.0
    key = (t.name, fmt.name)
    if key not in cache:
        cache[key] = residual_norm(graph.tensor_by_name(t.name).data, fmt, t.channel_axis)
    return cache[key]


def _bottom_ok(fmt: WeightFormat, bottom: WeightFormat | None) -> bool:
    return bottom is None or fmt.is_float or fmt.bits >= bottom.bits


def _keep_float_names(scores, keep: KeepFloat, float_bytes: dict[str, int]) -> set[str]:
    names = set(keep.names)
    unknown = names - {u.name for u in scores.units}
    if unknown:
        raise EdgeTQSError(f"--keep-float names unknown unit(s): {', '.join(sorted(unknown))}",
                           f"units are: {', '.join(u.name for u in scores.units[:8])}…")
    log_amplification = cost_model(scores)
    live = sorted((u for u in scores.units if not u.dead), key=lambda u: -log_amplification(u))
    names |= {u.name for u in live[: keep.count]}
    spent = 0
    for u in live:  # most sensitive first, while the float byte budget lasts
        if keep.bytes and spent + float_bytes[u.name] <= keep.bytes:
            names.add(u.name)
            spent += float_bytes[u.name]
    return names


def build_problem(graph: TFLiteGraph, scores, scores_sha256: str, runtime: str, mode: Mode | str = Mode.DYNAMIC,
                  matrix: CapabilityMatrix | None = None, bottom: str | None = None,
                  keep_float: KeepFloat | None = None, static_calibration: dict | None = None,
                  delegate: str = DEFAULT_DELEGATE) -> Problem:
    """The options per unit for ``graph`` on ``runtime`` with ``delegate`` (the firmware's; LiteRT's default
    XNNPACK unless a target says otherwise)."""
    mode = Mode.parse(mode)
    check_scores_match(graph, scores)
    matrix = matrix or CapabilityMatrix.load()
    bottom_fmt = get_format(bottom) if bottom else None
    tensors = costs.weight_tensors(graph)
    log_amplification = cost_model(scores)
    missing = [(u.name, n) for u in scores.units for n in u.weight_tensors if n not in tensors]
    if missing:
        raise EdgeTQSError(f"the score file names weight tensors the model lacks as float constants: "
                           f"{', '.join(f'{u}:{t}' for u, t in missing[:4])}",
                           "score this model again with `edgetqs score`")
    float_bytes = {u.name: sum(costs.tensor_bytes(tensors[n], FORMATS["fp32"], mode) for n in u.weight_tensors)
                   for u in scores.units}
    kept_float = _keep_float_names(scores, keep_float or KeepFloat(), float_bytes)
    norm_cache: dict = {}
    units = []
    for group in _share_groups(scores.units):
        member_tensors = [[tensors[n] for n in u.weight_tensors] for u in group]
        unit_tensors = list({t.name: t for ts in member_tensors for t in ts}.values())
        dead = all(u.dead for u in group)
        gamma = max(u.score if u.score is not None and not u.dead else -math.inf for u in group)  # the method's score
        in_float = any(u.name in kept_float for u in group)
        candidates = ["fp32"] if in_float else [
            name for name, fmt in FORMATS.items()
            if _bottom_ok(fmt, bottom_fmt) and _allowed(unit_tensors, fmt, runtime, mode, matrix)]
        amplification = [0.0 if u.dead else math.exp(log_amplification(u)) for u in group]
        options = []
        for name in candidates:
            fmt = FORMATS[name]
            file_b = sum(costs.tensor_bytes(t, fmt, mode) for t in unit_tensors)
            packed_b = sum(costs.packed_copy_bytes(t, fmt, mode, delegate) for t in unit_tensors)
            mem_b = file_b + packed_b + sum(costs.dequantized_copy_bytes(t, fmt, mode) for t in unit_tensors)
            # members sharing a tensor each feel its residual with their own amplification
            cost = sum(a * math.sqrt(sum(_residual_norm(graph, t, fmt, norm_cache) ** 2 for t in ts))
                       for a, ts in zip(amplification, member_tensors))
            options.append((name, file_b, mem_b, packed_b, cost))
        if dead:  # its perturbation never reaches the output: the cheapest format
            options = [min(options, key=lambda o: o[2])]
        label = group[0].name if len(group) == 1 else f"{group[0].name} (+{len(group) - 1} sharing its weights)"
        units.append(UnitOptions(label, [t.name for t in unit_tensors], gamma, dead, *map(list, zip(*options))))
    if mode == Mode.STATIC:  # AEQ's own static export of the graph, all units at int8, priced once
        int8_bytes = _add_static_islands(graph, tensors, units, static_calibration)
        fixed = costs.static_fixed_bytes([[tensors[n] for n in u.weight_tensors] for u in units], int8_bytes)
    else:
        fixed = _fixed_file_bytes(graph, tensors, scores, mode)
    in_units = {n for u in scores.units for n in u.weight_tensors}
    fixed_packed = sum(costs.packed_copy_bytes(t, FORMATS["fp32"], mode, delegate)
                       for n, t in tensors.items() if n not in in_units)
    return Problem(graph, scores, scores_sha256, runtime, mode, units, fixed, costs.arena_bytes(graph),
                   static_calibration, delegate, fixed_packed)


def _fixed_file_bytes(graph: TFLiteGraph, tensors: dict[str, costs.WeightTensor], scores, mode: Mode) -> int:
    """The file without the units' weights: the float graph re-serialised, plus weights outside every
    unit, in float (static mode: costs.static_fixed_bytes)."""
    in_units = {n for u in scores.units for n in u.weight_tensors}
    outside = sum(costs.tensor_bytes(t, FORMATS["fp32"], mode) for n, t in tensors.items() if n not in in_units)
    return costs.base_bytes(graph, tensors) + outside


def _add_static_islands(graph: TFLiteGraph, tensors: dict[str, costs.WeightTensor], units: list[UnitOptions],
                        static_calibration: dict | None) -> int:
    """A unit left float in a static plan costs more than its weights: AEQ wraps its ops in
    DEQUANTIZE/QUANTIZE (new tensors, ops, quantization tables). Measured per unit and
    float format against the all-int8 file, and added to that option's bytes.
    Returns the all-int8 file's bytes (the fixed bytes are priced from it)."""
    unit_tensors = [[tensors[n] for n in u.weight_tensors if tensors[n].quantizable] for u in units]
    all_int8 = {t.name: "int8" for ts in unit_tensors for t in ts}
    reference = len(_static_reference_export(graph, all_int8, static_calibration))
    for unit, quantizable in zip(units, unit_tensors):
        int8_bytes = sum(costs.tensor_bytes(t, FORMATS["int8"], "static") for t in quantizable)
        for k, name in enumerate(unit.formats):
            if not FORMATS[name].is_float or not quantizable:
                continue
            exact = costs.static_model_bytes(graph, {**all_int8, **{t.name: name for t in quantizable}},
                                             static_calibration)
            weights_delta = sum(costs.tensor_bytes(t, FORMATS[name], "static") for t in quantizable) - int8_bytes
            island = exact - reference - weights_delta
            unit.file_bytes[k] += island
            unit.memory_bytes[k] += island
    return reference


def _static_reference_export(graph: TFLiteGraph, all_int8: dict[str, str], static_calibration: dict | None) -> bytes:
    """AEQ's all-int8 static export of ``graph``, checked to load in LiteRT. Some graphs cannot be
    exported statically at all (AEQ 0.10 refuses litert-torch's FULLY_CONNECTED biases) or give a file
    XNNPACK cannot prepare (an unrolled Keras LSTM's SPLIT): say so before planning, not after the
    user has a plan the converter must refuse."""
    try:
        model = costs.static_export(graph, all_int8, static_calibration)
        load_interpreter(model, num_threads=1)
    except EdgeTQSError as exc:
        raise EdgeTQSError(f"static mode (int8 activations) is not available for this model: {exc.problem}",
                           f"plan it with --mode {Mode.DYNAMIC} (int8/int4 weights, activations quantized on "
                           f"the fly) or --mode {Mode.WEIGHT_ONLY}") from exc
    return model


def _share_groups(units: list) -> list[list]:
    """Score units grouped so that units sharing a weight tensor (tied or unrolled
    weights, e.g. a GRU cell per step) are planned as one: a tensor has one format."""
    parent = list(range(len(units)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, u in enumerate(units):
        for name in u.weight_tensors:
            if name in owner:
                parent[root(i)] = root(owner[name])
            else:
                owner[name] = i
    groups: dict[int, list] = {}
    for i, u in enumerate(units):
        groups.setdefault(root(i), []).append(u)
    return list(groups.values())


def check_scores_match(graph: TFLiteGraph, scores) -> None:
    check_made_for(scores.model, graph, "the score file", "this model",
                   "score this model (`edgetqs score MODEL -o scores.json`) and plan with those scores")


# -- budgets ------------------------------------------------------------------
def target_budget(target: Target) -> int:
    """The memory a model may take on ``target``: its RAM share minus the runtime's own footprint."""
    return target.memory_budget_bytes - target.runtime.overhead_bytes


def parse_size(text: str) -> int:
    """``384KiB``, ``1.5MB``, ``2GiB``, ``500000`` -> bytes."""
    units = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "k": 1024, "mb": 1000**2, "mib": 1024**2, "m": 1024**2,
             "gb": 1000**3, "gib": 1024**3, "g": 1024**3}
    stripped = text.strip().lower().replace(" ", "")
    number = stripped.rstrip("kmgib")
    suffix = stripped[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1
    if suffix not in units or value <= 0:
        raise EdgeTQSError(f"cannot read the size '{text}'", "write a byte count with an optional unit: 384KiB, 1.5MB, 2GiB")
    return int(value * units[suffix])


def format_size(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


# -- solving ------------------------------------------------------------------
def solve(problem: Problem, budget_bytes: int, allocator: str = "mckp", target: Target | None = None) -> Plan:
    """The plan of least predicted error whose memory fits ``budget_bytes``."""
    return solve_many(problem, [budget_bytes], allocator, target)[0]


def solve_many(problem: Problem, budgets: list[int], allocator: str = "mckp",
               target: Target | None = None) -> list[Plan]:
    """Plans for several budgets at once (the allocator shares its preparation)."""
    options = [u.options() for u in problem.units]
    capacities = [b - problem.fixed_memory_bytes for b in budgets]
    get_allocator(allocator)  # unknown names fail before any work
    feasible = [c >= 0 for c in capacities]
    choices = allocate_front(allocator, options, [c for c in capacities if c >= 0]) if any(feasible) else []
    plans, it = [], iter(choices)
    for budget, ok in zip(budgets, feasible):
        plans.append(_checked_plan(problem, next(it) if ok else None, budget, allocator, target))
    return plans


def _checked_plan(problem: Problem, choice: list[int] | None, budget_bytes: int, allocator: str,
                  target: Target | None) -> Plan:
    if choice is None:
        smallest = problem.smallest_memory()
        raise EdgeTQSError(
            f"the budget {format_size(budget_bytes)} ({budget_bytes} B) is below the smallest footprint this model "
            f"reaches on {problem.runtime} in {problem.mode} mode: {format_size(smallest)} ({smallest} B: "
            f"file without weights {problem.fixed_file_bytes} B + arena {problem.arena_bytes} B + weights at their "
            f"cheapest allowed formats, with the {problem.delegate} delegate's packed copy)",
            f"give a budget of at least {smallest} B, allow lower formats (--bottom), or pick a bigger board")
    plan = plan_from_choice(problem, choice, budget_bytes, allocator, target)
    if target is not None and plan.predicted["model_bytes"] > target.storage_bytes:
        raise EdgeTQSError(f"the plan's model file ({plan.predicted['model_bytes']} B) exceeds {target.name}'s storage",
                           "use a smaller budget")
    return plan


def plan_from_choice(problem: Problem, choice: list[int], budget_bytes: int, allocator: str,
                      target: Target | None) -> Plan:
    assignments = [Assignment(u.name, u.weight_tensors, u.formats[q], u.file_bytes[q], u.costs[q])
                   for u, q in zip(problem.units, choice)]
    weights = sum(a.bytes for a in assignments)
    packed = problem.fixed_packed_bytes + sum(u.packed_bytes[q] for u, q in zip(problem.units, choice))
    copies = sum(u.memory_bytes[q] - u.file_bytes[q] - u.packed_bytes[q] for u, q in zip(problem.units, choice))
    model_bytes = problem.fixed_file_bytes + weights
    if problem.mode == Mode.STATIC:  # float units add QUANTIZE/DEQUANTIZE islands: AEQ prices the plan itself
        model_bytes = costs.static_model_bytes(problem.graph, _formats_of(assignments),
                                               problem.static_calibration)
    memory = model_bytes + problem.arena_bytes + copies + packed
    overhead = runtimes.overhead_bytes(problem.runtime.partition("==")[0])
    graph = problem.graph
    return Plan(
        model={"name": problem.scores.model.get("name"), "tflite_sha256": graph.sha256},
        scores_sha256=problem.scores_sha256, target=target.name if target else None, runtime=problem.runtime,
        budget_bytes=int(budget_bytes), allocator=allocator, mode=problem.mode, assignments=assignments,
        predicted={"model_bytes": model_bytes, "weights_bytes": weights, "arena_bytes": problem.arena_bytes + copies,
                   "packed_weights_bytes": packed, "delegate": problem.delegate, "memory_bytes": memory, "runtime_overhead_bytes": overhead, "footprint_bytes": memory + overhead,
                   "total_cost": float(sum(a.cost for a in assignments))},
    )


def _formats_of(assignments: list[Assignment]) -> dict[str, str]:
    return {n: a.format for a in assignments for n in a.weight_tensors}


def marginal_error_per_byte(problem: Problem, plan: Plan) -> dict[str, float | None]:
    """Per unit: cost added per byte saved by its next smaller format (None: nothing smaller).

    A high value is why a unit kept its bits: dropping them would cost more
    error per byte than any other unit's drop.
    """
    result: dict[str, float | None] = {}
    for u, a in zip(problem.units, plan.assignments):
        q = u.formats.index(a.format)
        smaller = [i for i in range(len(u.formats)) if u.memory_bytes[i] < u.memory_bytes[q]]
        if not smaller:
            result[u.name] = None
            continue
        rates = [(u.costs[i] - u.costs[q]) / (u.memory_bytes[q] - u.memory_bytes[i]) for i in smaller]
        result[u.name] = float(max(min(rates), 0.0))
    return result


def make_plan(graph: TFLiteGraph, scores_path: ScoreFile | str | Path, target: Target | None = None,
              budget_bytes: int | None = None, allocator: str = "mckp", mode: Mode | str = Mode.DYNAMIC,
              bottom: str | None = None, keep_float: KeepFloat | None = None,
              matrix: CapabilityMatrix | None = None, runtime: str | None = None,
              model=None, calibration: str | None = None) -> tuple[Plan, Problem]:
    """The plan for ``graph`` from the score file (a path, or a ScoreFile), for a target and/or an explicit budget.

    ``model`` (the CanonicalModel) lets static plans be priced with the activation
    ranges the converter will calibrate: of the model's own free run by default, of the
    ``calibration`` series when given (pass the file ``convert --calibration`` gets).
    """
    if target is None and budget_bytes is None:
        raise EdgeTQSError("no budget: neither a target nor --budget was given", "pass --target NAME or --budget SIZE")
    runtime = runtime or (target.runtime_spec if target else DEFAULT_HOST_RUNTIME.spec)
    if isinstance(scores_path, ScoreFile):  # in memory (the Python API): hashed as it would be saved
        scores, scores_sha256 = scores_path, scores_path.sha256()
    else:
        scores, scores_sha256 = load_scores(scores_path), file_sha256(scores_path)
    ranges = static_calibration_for(model, calibration) if mode == Mode.STATIC and model is not None else None
    delegate = target.firmware.delegate if target is not None and target.firmware else DEFAULT_DELEGATE
    problem = build_problem(graph, scores, scores_sha256, runtime, mode, matrix, bottom, keep_float, ranges,
                            delegate)
    budget = budget_bytes if budget_bytes is not None else target_budget(target)
    return solve(problem, budget, allocator, target), problem


def static_calibration_for(model, calibration: str | None = None) -> dict:
    """AEQ activation ranges over the windows the converter calibrates on by default (or from ``calibration`` data)."""
    windows = model_contexts(model.graph, model.card, calibration, aeq.CALIBRATION_WINDOWS, aeq.CALIBRATION_HORIZON,
                             seed=0).windows
    return costs.static_calibration(model.graph, model.tflite_path, windows)


def uniform_costs(problem: Problem) -> dict[str, tuple[int, float]]:
    """For comparison: every unit in one format (where allowed) -> (memory bytes, total cost)."""
    result = {}
    for name in FORMATS:
        if all(name in u.formats for u in problem.units):
            idx = [u.formats.index(name) for u in problem.units]
            result[name] = (problem.fixed_memory_bytes + sum(u.memory_bytes[i] for u, i in zip(problem.units, idx)),
                            float(np.sum([u.costs[i] for u, i in zip(problem.units, idx)])))
    return result
