"""Saturation-aware TQS (METHOD.md §2b): what the rollout adds, measured where it is informative.

The fixed-T score ``gamma = (1/T) log(d_T / ||delta||)`` mixes two things and
loses a third:

* the *kick* ``kappa = d_1 / ||delta||``: how much one call moves the output
  (this alone is single-step sensitivity);
* the *growth* that follows: the log-slope ``lambda`` of ``d_t``. A quantized
  weight acts at every call, so ``d_t`` grows by the model's own error
  amplification and by the unit's repeated forcing;
* and once ``d_t`` reaches the spread of the reference trajectories (two
  decorrelated points of the attractor), it stops growing: past that time
  ``gamma`` measures ``log(spread / ||delta||) / T``, not the unit.

So this score takes the TQS sweep's mean curve ``d_t`` and, per unit:

1. the saturation level ``S``: the mean distance between the float reference
   trajectories of two different context windows at the same call (the
   attractor's size as the rollout sees it);
2. the informative calls: ``t = 1..t_s``, those with ``d_t <= SATURATION_SHARE * S``;
3. ``lambda``: the least-squares slope of ``log d_t`` over them (a unit with
   fewer than ``MIN_GROWTH_POINTS`` informative calls takes the median
   ``lambda`` of the units that have them: the model's common rate);
4. the sensitivity, the mean divergence over the horizon the linear regime
   predicts per unit of perturbation:

       s = kappa * (1/T) * sum_{t=1..T} exp(lambda * (t - 1))

The planner's cost is then ``s * ||delta(q)||`` (a baseline-style score file,
horizon 1). Every part (``kappa``, ``lambda``, ``t_s``, ``S``) is kept in the
score file's settings under ``"saturation"`` for reports and ablations.
"""

from __future__ import annotations

import math

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.tqs.contexts import data_file_named
from edgetqs.tqs.score import ScoreSettings, backend_for, make_contexts
from edgetqs.tqs.scorefile import ScoreFile

SATURATION_SHARE = 0.1  # d_t beyond this share of the reference spread is past the linear regime
MIN_GROWTH_POINTS = 2  # a slope needs two calls


def reference_spread(reference: np.ndarray, patch: int = 1) -> float:
    """Mean over calls of the mean distance between two windows' reference trajectories [K, T*patch, F]."""
    count = reference.shape[0]
    if count < 2:
        raise EdgeTQSError("the saturation level needs at least two context windows",
                           "score with --windows 2 or more")
    steps = reference.shape[1] // patch
    calls = reference.reshape(count, steps, -1).astype(np.float64)
    distances = [np.linalg.norm(calls[i] - calls[j], axis=-1) for i in range(count) for j in range(i + 1, count)]
    return float(np.mean(distances))


def kick_and_growth(curve: list[float], delta_norm: float, spread: float) -> tuple[float, float | None, int]:
    """(kappa, lambda or None when too few informative calls, t_s) of one unit's mean curve d_t."""
    d = np.maximum(np.asarray(curve, np.float64), 1e-30)
    kick = float(d[0] / max(delta_norm, 1e-30))
    informative = int(np.argmax(d > SATURATION_SHARE * spread)) if np.any(d > SATURATION_SHARE * spread) else len(d)
    if informative < MIN_GROWTH_POINTS:
        return kick, None, informative
    t = np.arange(informative, dtype=np.float64)
    slope = float(np.polyfit(t, np.log(d[:informative]), 1)[0])
    return kick, slope, informative


def mean_amplification(growth: float, horizon: int) -> float:
    """(1/T) sum_{t=1..T} exp(growth * (t-1)), computed without overflow."""
    exponents = np.minimum(growth * np.arange(horizon, dtype=np.float64), 700.0)
    return float(np.mean(np.exp(exponents)))


def saturation_parts(scores: ScoreFile, spread: float) -> dict[str, dict]:
    """Per unit: kappa, lambda (own or the model's median), t_s and whether lambda was borrowed."""
    parts = {}
    for u in scores.units:
        if u.curve_quant is None or u.delta_norm_quant is None:
            raise EdgeTQSError(f"unit '{u.name}' has no quant-probe curve in the score file",
                               "score with --probe quant or both (the saturation-aware score reads the d_t curve)")
        kick, growth, informative = kick_and_growth(u.curve_quant, u.delta_norm_quant, spread)
        parts[u.name] = {"kick": kick, "growth": growth, "informative_calls": informative, "borrowed": growth is None}
    own = [p["growth"] for p in parts.values() if p["growth"] is not None]
    common = float(np.median(own)) if own else 0.0
    for p in parts.values():
        if p["growth"] is None:
            p["growth"] = common
    return parts


def saturation_sensitivities(scores: ScoreFile, spread: float) -> tuple[dict[str, float], dict]:
    """Unit -> s (module doc), and the parts behind it."""
    horizon = int(scores.settings.get("horizon") or len(scores.units[0].curve_quant or [1]))
    parts = saturation_parts(scores, spread)
    sensitivities = {}
    for u in scores.units:
        p = parts[u.name]
        s = 0.0 if u.dead else p["kick"] * mean_amplification(p["growth"], horizon)
        sensitivities[u.name] = s if math.isfinite(s) else float(np.finfo(np.float64).max)
    return sensitivities, {"spread": spread, "share": SATURATION_SHARE, "horizon": horizon, "units": parts}


def scored_reference(graph, card, scores: ScoreFile, data: str | None = None) -> np.ndarray:
    """The float reference rollout from the same contexts the TQS sweep used (data-free or ``data``).

    A sweep on data records only the file's name: the path must be given again (``data``)."""
    s = scores.settings
    scored_on = data_file_named(str(s.get("contexts", "")))
    if data is None and scored_on:
        raise EdgeTQSError(f"the TQS sweep read its contexts from {scored_on}, "
                           "and the saturation level needs the same windows",
                           "pass the same --data file to the saturation-aware score")
    settings = ScoreSettings(horizon=int(s["horizon"]), windows=int(s["windows"]), seed=int(s.get("seed", 0)), data=data)
    backend = backend_for(graph, card, s.get("engine", "numba"))
    contexts = make_contexts(backend, card, settings)
    given = contexts.covariates_for(settings.horizon, card.rollout.patch)
    return backend.rollout_probes(contexts.windows, settings.horizon, [{}], given)[0]


def tqs_saturation(graph, template: ScoreFile, card=None, data: str | None = None, **_) -> tuple[dict[str, float], dict]:
    """The sensitivity-registry entry: saturation-aware sensitivities from a fixed-T TQS score file,
    and the parts behind them (kept in the score file's settings under "saturation")."""
    if card is None:
        raise EdgeTQSError("the saturation-aware score needs the model card", "pass card= (the model's rollout spec)")
    reference = scored_reference(graph, card, template, data)
    finite = np.all(np.isfinite(reference), axis=(1, 2))
    spread = reference_spread(reference[finite], card.rollout.patch)
    sensitivities, parts = saturation_sensitivities(template, spread)
    return sensitivities, {"saturation": parts}
