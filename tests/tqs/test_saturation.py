"""Saturation-aware TQS: kick and growth recovered from curves with a known
shape, and the registry entry on a real zoo model's sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.tqs import saturation as sat
from edgetqs.tqs.scorefile import ProbeResult, ScoreFile, UnitScore


def _curve(kick: float, growth: float, norm: float, spread: float, horizon: int) -> list[float]:
    """kick*norm*exp(growth*(t-1)), capped at the spread: linear growth, then saturation."""
    t = np.arange(horizon)
    return list(np.minimum(kick * norm * np.exp(growth * t), spread))


def test_kick_growth_and_informative_calls_come_back_from_a_saturating_curve():
    curve = _curve(kick=2.0, growth=0.5, norm=0.01, spread=10.0, horizon=32)
    kick, growth, informative = sat.kick_and_growth(curve, 0.01, 10.0)
    assert kick == pytest.approx(2.0)
    assert growth == pytest.approx(0.5, rel=1e-6)  # the saturated tail did not flatten the slope
    assert curve[informative - 1] <= sat.SATURATION_SHARE * 10.0 < curve[informative]


def test_fixed_T_gamma_is_blind_where_the_saturation_score_is_not():
    """Two units with different kicks both saturate before T: fixed-T gamma calls them equal,
    the saturation-aware sensitivity keeps the kick ratio."""
    horizon, spread = 32, 10.0
    units = []
    for name, kick in (("weak", 1.0), ("strong", 8.0)):
        curve = _curve(kick, 0.6, 0.01, spread, horizon)
        gamma_T = math.log(curve[-1] / 0.01) / horizon
        units.append(UnitScore(name, [name], 10, gamma_T, {"quant": ProbeResult(gamma_T, 0.01, curve)}))
    scores = ScoreFile(model={"name": "m"}, settings={"horizon": horizon}, reference={}, units=units)
    assert units[0].gamma_quant == pytest.approx(units[1].gamma_quant)
    s, parts = sat.saturation_sensitivities(scores, spread)
    assert s["strong"] / s["weak"] == pytest.approx(8.0, rel=1e-6)
    assert parts["units"]["strong"]["informative_calls"] < parts["units"]["weak"]["informative_calls"]


def test_a_unit_saturating_at_once_borrows_the_models_median_growth():
    horizon, spread = 16, 1.0
    fast = UnitScore("fast", ["a"], 1, probes={"quant": ProbeResult(0.0, 0.01, [1.0] * horizon)})
    slow = UnitScore("slow", ["b"], 1, probes={"quant": ProbeResult(0.0, 0.01, _curve(0.1, 0.2, 0.01, spread, horizon))})
    parts = sat.saturation_parts(ScoreFile({}, {"horizon": horizon}, {}, [fast, slow]), spread)
    assert parts["fast"]["borrowed"] and parts["fast"]["growth"] == pytest.approx(parts["slow"]["growth"])


def test_reference_spread_is_the_mean_pairwise_distance():
    ref = np.zeros((2, 3, 2), np.float32)
    ref[1] = 3.0  # every call: the two windows differ by (3, 3)
    assert sat.reference_spread(ref) == pytest.approx(math.sqrt(18))
    with pytest.raises(EdgeTQSError, match="two context windows"):
        sat.reference_spread(ref[:1])


def test_registry_entry_on_a_zoo_sweep(sunspots_scores):
    from edgetqs.baselines import baseline_scores

    model, scores = sunspots_scores
    result = baseline_scores("tqs_saturation", model.graph, scores, card=model.card)
    parts = result.settings["saturation"]
    assert result.method == "tqs-saturation" and parts["spread"] > 0
    for u in result.units:
        p = parts["units"][u.name]
        assert math.isfinite(u.score) and p["kick"] > 0 and 1 <= p["informative_calls"] <= scores.settings["horizon"]
        assert u.score == pytest.approx(p["kick"] * sat.mean_amplification(p["growth"], 8))


def test_registry_entry_needs_curves(sunspots_scores):
    from edgetqs.baselines import baseline_scores

    model, scores = sunspots_scores
    stripped = ScoreFile(scores.model, scores.settings, scores.reference,
                         [UnitScore(u.name, u.weight_tensors, u.params, 0.1) for u in scores.units])
    with pytest.raises(EdgeTQSError, match="curve"):
        baseline_scores("tqs_saturation", model.graph, stripped, card=model.card)


@pytest.fixture(scope="module")
def sunspots_scores():
    from edgetqs import zoo
    from edgetqs.tqs.score import ScoreSettings, score_model

    model = zoo.build("mlp-sunspots")
    return model, score_model(model.graph, model.card, ScoreSettings(probe="quant", horizon=8, windows=4), progress=False)


def test_a_sweep_on_user_data_needs_the_same_data_for_its_saturation_level(tmp_path):
    """The score file records only the data file's name: the saturation level is measured on the
    same windows when the path is given again, and asking without it says so."""
    from edgetqs import zoo
    from edgetqs.sensitivity import get_method
    from edgetqs.tqs.score import ScoreSettings, score_model

    model = zoo.build("mlp-sunspots")
    data = zoo.system_data("sunspots")
    path = tmp_path / "series.npy"
    np.save(path, data.denormalise(data.train))
    settings = ScoreSettings(probe="quant", horizon=8, windows=4, data=str(path))
    sweep = score_model(model.graph, model.card, settings, progress=False)
    scored = get_method("tqs-saturation").score(model.graph, model.card, settings, template=sweep)
    assert scored.settings["saturation"]["spread"] > 0
    with pytest.raises(EdgeTQSError, match="same --data"):
        sat.tqs_saturation(model.graph, sweep, card=model.card)
