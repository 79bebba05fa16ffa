"""Baseline sensitivity metrics, in the score-file format, so the SAME planner
and allocators consume them and only the sensitivity differs from TQS.

A baseline gives each unit a sensitivity ``s_l``; its score file carries it as
the unit's ``score`` under the baseline's own method name, and its cost model
(edgetqs/sensitivity.py) makes the planner's cost ``s_l * ||delta_l(q)||`` — the
"sensitivity x perturbation size" cost HAWQ and NNCF-style allocators use
(HAWQ squares the perturbation; with one cost form for every method we keep
the planner's linear one, see docs/EVALUATION.md).

Registered by the name the user types (``edgetqs score --method NAME``) in
:data:`BASELINES`; ``edgetqs.sensitivity`` makes each a first-class method:

- ``weight-error``: data-free, ``s_l = 1 / ||W_l||`` so the cost is the
  relative weight error ``||Q(W)-W|| / ||W||`` (NNCF's data-free criterion);
- ``single-step``: quantize one unit at the probe bits, measure one forward
  step's output change per unit of kick (TQS with T = 1: no rollout);
- ``hessian``: HAWQ-style mean Hessian trace of the training loss per unit,
  Hutchinson's estimator on the Keras source model (``baselines/hessian.py``);
- ``random``: ``log s_l ~ U(0, 10)`` seeded — a random allocation that still
  fills the budget;
- ``tqs-saturation``: TQS's own sweep read the saturation-aware way — the
  first-step kick and the growth before ``d_t`` saturates
  (``edgetqs/tqs/saturation.py``). It needs a TQS score file with curves as
  ``template``.

A function returns the sensitivities, or (sensitivities, extra settings) to
record how they were found.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.baselines.hessian import hessian_traces  # TensorFlow itself is imported when a trace is taken
from edgetqs.tqs.saturation import tqs_saturation as saturation_aware
from edgetqs.tqs.score import ScoreSettings, score_model
from edgetqs.tqs.scorefile import SENSITIVITY_FLOOR, ScoreFile, UnitScore



def scores_from_sensitivities(template: ScoreFile, sensitivities: dict[str, float], method: str,
                              settings: dict | None = None) -> ScoreFile:
    """A score file with ``template``'s units (names, tensors, params) whose cost is ``s_l * ||delta_l(q)||``."""
    missing = [u.name for u in template.units if u.name not in sensitivities]
    if missing:
        raise EdgeTQSError(f"baseline '{method}' has no sensitivity for unit(s) {', '.join(missing[:4])}",
                           "compute it for every unit of the score file's granularity")
    # only TQS knows which units never reach the output: a baseline's units are all live
    units = [UnitScore(u.name, list(u.weight_tensors), u.params, score=float(sensitivities[u.name]))
             for u in template.units]
    return ScoreFile(model=dict(template.model), method=method,
                     settings={**template.settings, **(settings or {})},
                     reference=dict(template.reference), units=units)


def weight_error(graph, template: ScoreFile, **_) -> dict[str, float]:
    """Data-free: 1 / ||W_l|| per unit, so the cost is the relative weight error."""
    result = {}
    for u in template.units:
        norm = math.sqrt(sum(float(np.sum(np.square(graph.float_constant(graph.tensor_by_name(t)), dtype=np.float64)))
                             for t in u.weight_tensors))
        result[u.name] = 1.0 / max(norm, SENSITIVITY_FLOOR)
    return result


def single_step(graph, template: ScoreFile, card=None, windows: int = 16, seed: int = 0, data: str | None = None,
                **_) -> tuple[dict, dict]:
    """One forward step's output change per unit of kick: TQS's own sweep with T = 1 (same contexts: data-free,
    or ``data``)."""
    scores = score_model(graph, card, ScoreSettings(probe="quant", horizon=1, windows=windows, seed=seed, data=data,
                                                    granularity=template.settings.get("granularity", "layer")),
                         progress=False)
    sensitivities = {u.name: math.exp(u.score) if u.score is not None and math.isfinite(u.score) else 0.0
                     for u in scores.units}
    return sensitivities, {"horizon": 1}  # what it measured with, recorded in the score file


def random_sensitivity(graph, template: ScoreFile, seed: int = 0, **_) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {u.name: math.exp(rng.uniform(0.0, 10.0)) for u in template.units}


def tqs_saturation(graph, template: ScoreFile, **kwargs):
    return saturation_aware(graph, template, **kwargs)


def hessian(graph, template: ScoreFile, keras_path=None, train_x=None, train_y=None, seed: int = 0, **_) -> dict[str, float]:
    return hessian_traces(keras_path, train_x, train_y, [u.name for u in template.units], seed=seed)


BASELINES: dict[str, Callable[..., dict[str, float]]] = {
    "weight-error": weight_error, "single-step": single_step, "hessian": hessian, "random": random_sensitivity,
    "tqs-saturation": tqs_saturation,
}


def baseline_name(name: str) -> str:
    """The registry name; the underscore spelling (weight_error) of older callers and v1 files is accepted."""
    return name.replace("_", "-")


def baseline_scores(name: str, graph, template: ScoreFile, **kwargs) -> ScoreFile:
    """The score file of baseline ``name`` (see :data:`BASELINES`) for the units of ``template``."""
    name = baseline_name(name)
    if name not in BASELINES:
        raise EdgeTQSError(f"unknown baseline '{name}'", f"use one of: {', '.join(BASELINES)}")
    result = BASELINES[name](graph, template, **kwargs)
    sensitivities, extra = result if isinstance(result, tuple) else (result, None)
    return scores_from_sensitivities(template, sensitivities, name, extra)
