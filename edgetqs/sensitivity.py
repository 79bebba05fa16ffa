"""Sensitivity methods behind one registry: ``edgetqs score --method NAME`` and the planner's cost.

Every method scores the units of a model (tensor, layer or block; tqs/units.py)
and writes the same score file (tqs/scorefile.py) under its own name; each
unit's ``score`` is the method's number for it. What differs, besides how the
number is measured, is the **cost model**: how a score becomes the planner's
cost of storing unit ``l`` in format ``q``. For every method it has the form

    cost_l(q) = A_l * ||delta_l(q)||        (||delta_l(q)||: the reference quantizer's residual norm)

and the method says what the amplification ``A_l`` is (``log_amplification``
returns ``log A_l``, so large amplifications do not overflow):

| method | score per unit | A_l | needs |
|---|---|---|---|
| tqs-quant | gamma of the quant probe (METHOD.md §2) | exp(gamma * T) | rollouts |
| tqs-gauss | gamma of the Gaussian probe | exp(gamma * T) | rollouts |
| tqs-saturation | kick x mean growth before d_t saturates (tqs/saturation.py) | s | rollouts (a quant sweep) |
| single-step | one model call's output change per unit of kick | s | one model call |
| weight-error | 1 / ||W_l|| (cost = relative weight error) | s | weights only |
| hessian | mean Hessian trace per parameter (HAWQ) | s | Keras source + training data |
| random | exp(U(0, 10)), seeded | s | nothing |

A new method is one class with ``name``, ``summary``, ``score(...)`` and
``log_amplification(...)``, plus one ``register_method`` call; the CLI's
``--method`` choices and the planner follow the registry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Protocol

import edgetqs.ranges.executor  # noqa: F401  (registers the fake-quant rollout backend with engine/backends.py)
from edgetqs.baselines import BASELINES, SENSITIVITY_FLOOR, baseline_name, scores_from_sensitivities
from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import ModelCard
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.tqs.score import ScoreSettings, score_model
from edgetqs.tqs.scorefile import ScoreFile, UnitScore
from edgetqs.tqs.units import build_units

MAX_LOG_AMPLIFICATION = 700.0  # exp() of more overflows a float; such a unit is "keep it precise" anyway


class SensitivityMethod(Protocol):
    name: str  # what the user types: edgetqs score --method NAME
    summary: str  # one line for --help and docs

    def score(self, graph: TFLiteGraph, card: ModelCard, settings: ScoreSettings, *, progress: bool = False,
              notes: list[str] | None = None, **inputs) -> ScoreFile:
        """Score every unit of the model (``settings``: granularity, horizon, windows, seed, engine, data)."""

    def log_amplification(self, score: float, settings: dict) -> float:
        """The cost model: ``log A_l`` for a unit's ``score`` (``settings``: the score file's)."""


@dataclass(frozen=True)
class TQSMethod:
    """TQS with one probe driving the cost (both probes may be run and kept)."""

    name: str
    probe: str
    summary: str

    def score(self, graph, card, settings, *, progress=False, notes=None, **_) -> ScoreFile:
        if settings.probe not in (self.probe, "both"):
            raise EdgeTQSError(f"method {self.name} is scored by the {self.probe} probe, but --probe {settings.probe} "
                               "leaves it out", f"pass --probe {self.probe} or --probe both")
        return self.from_sweep(score_model(graph, card, settings, progress=progress, notes=notes))

    def from_sweep(self, sweep: ScoreFile) -> ScoreFile:
        """A TQS sweep's score file read as this method: its probe's gamma is each unit's score."""
        units = [replace(u, score=u.gamma(self.probe)) for u in sweep.units]
        return replace(sweep, units=units, method=self.name)

    def log_amplification(self, score: float, settings: dict) -> float:
        return score * float(settings.get("horizon") or 1)


@dataclass(frozen=True)
class SensitivityBaseline:
    """A baseline (edgetqs/baselines/): a sensitivity s_l per unit, cost ``s_l * ||delta_l(q)||``."""

    name: str
    summary: str
    needs_tqs_sweep: bool = False  # reads a TQS quant sweep's curves (tqs-saturation)

    def score(self, graph, card, settings, *, progress=False, notes=None, template: ScoreFile | None = None,
              **inputs) -> ScoreFile:
        if template is None:
            template = (score_model(graph, card, replace(settings, probe="quant"), progress=progress, notes=notes)
                        if self.needs_tqs_sweep else unit_template(graph, card, settings))
        inputs = {"card": card, "windows": settings.windows, "seed": settings.seed, "data": settings.data, **inputs}
        result = BASELINES[self.name](graph, template, **inputs)
        sensitivities, extra = result if isinstance(result, tuple) else (result, None)
        return scores_from_sensitivities(template, sensitivities, self.name, extra)

    def log_amplification(self, score: float, settings: dict) -> float:
        return math.log(max(score, SENSITIVITY_FLOOR))


def unit_template(graph: TFLiteGraph, card: ModelCard, settings: ScoreSettings) -> ScoreFile:
    """The model's units with nothing measured yet: what a method that does not roll out fills in."""
    units = build_units(card, graph, settings.granularity, settings.block_regex)
    return ScoreFile(
        model={"name": card.name, "tflite_sha256": graph.sha256, "source": card.source},
        settings={"granularity": settings.granularity, "block_regex": settings.block_regex, "seed": settings.seed,
                  "windows": settings.windows, "horizon": settings.horizon, "probe_bits": settings.probe_bits},
        reference={"windows_used": 0, "windows_blown_up": []},
        units=[UnitScore(u.name, list(u.weight_tensors), u.params) for u in units])


_METHODS: dict[str, SensitivityMethod] = {}


def register_method(method: SensitivityMethod) -> SensitivityMethod:
    _METHODS[method.name] = method
    return method


for _method in (
    TQSMethod("tqs-quant", "quant", "TQS, quantization-residual probe (the default)"),
    TQSMethod("tqs-gauss", "gauss", "TQS, Gaussian probe of the same size"),
    SensitivityBaseline("tqs-saturation", "TQS read saturation-aware: kick and growth before d_t saturates",
                        needs_tqs_sweep=True),
    SensitivityBaseline("single-step", "one model call's output change (TQS with T = 1)"),
    SensitivityBaseline("weight-error", "data-free relative weight error ||Q(W)-W|| / ||W||"),
    SensitivityBaseline("hessian", "HAWQ-style Hessian trace (needs the Keras source and training data)"),
    SensitivityBaseline("random", "a seeded random sensitivity (a sanity floor)"),
):
    register_method(_method)

DEFAULT_METHOD = "tqs-quant"


def method_names() -> list[str]:
    return list(_METHODS)


def get_method(name: str) -> SensitivityMethod:
    method = _METHODS.get(baseline_name(name))
    if method is None:
        raise EdgeTQSError(f"unknown sensitivity method '{name}'", f"use one of: {', '.join(_METHODS)}")
    return method


CostModel = Callable[[UnitScore], float]


def cost_model(scores: ScoreFile) -> CostModel:
    """``unit -> log A_l`` for this score file's method (-inf for a unit without a score: dead)."""
    method = get_method(scores.method)

    def log_amplification(unit: UnitScore) -> float:
        if unit.score is None or not math.isfinite(unit.score):
            if unit.dead:
                return -math.inf
            raise EdgeTQSError(f"unit '{unit.name}' has no finite {scores.method} score in the score file",
                               f"re-run `edgetqs score --method {scores.method}`; every live unit needs a score")
        return min(method.log_amplification(float(unit.score), scores.settings), MAX_LOG_AMPLIFICATION)

    return log_amplification
