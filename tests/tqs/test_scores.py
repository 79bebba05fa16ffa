"""TQS scores on models whose answers are known: linear growth, dead units, blow-ups, units."""

import numpy as np
import pytest

from edgetqs.engine.blackbox import LiteRTRollout
from edgetqs.quant.formats import get_format
from edgetqs.tqs.contexts import Contexts
from edgetqs.quant.quantizer import residual
from edgetqs.tqs.score import ScoreSettings, score_model
from edgetqs.tqs.units import build_units


def _windows(features, count=3, seed=7):
    return np.random.default_rng(seed).standard_normal((count, 1, features)).astype(np.float32)


def _score(graph, card, contexts, **kw):
    settings = ScoreSettings(engine="litert", **kw)
    return score_model(graph, card, settings, backend=LiteRTRollout(graph, card.rollout),
                       contexts=Contexts(contexts, "test"), progress=False)


def test_gamma_matches_a_float64_rollout_of_the_linear_system(make_linear):
    graph, card, matrix = make_linear(1.05)
    windows, horizon = _windows(4), 12
    scores = _score(graph, card, windows, probe="quant", horizon=horizon, windows=len(windows), probe_bits=8)
    delta = residual(matrix.astype(np.float32), get_format("int8")).astype(np.float64)
    expected = []
    for x0 in windows[:, 0].astype(np.float64):
        x, xp = x0.copy(), x0.copy()
        for _ in range(horizon):
            x, xp = matrix @ x, (matrix + delta) @ xp
        expected.append(np.log(np.linalg.norm(xp - x) / np.linalg.norm(delta)) / horizon)
    unit = scores.units[0]
    assert unit.gamma_quant == pytest.approx(np.mean(expected), abs=2e-3)
    assert unit.delta_norm_quant == pytest.approx(np.linalg.norm(delta), rel=1e-4)
    assert len(unit.curve_quant) == horizon and unit.gamma_gauss is None


def test_gamma_tracks_the_lyapunov_growth_rate(make_linear):
    """A = lam * R with R a rotation: d_T / ||delta|| = lam^(T-1) * c, so gamma moves by (T-1)/T log(lam2/lam1)."""
    horizon = 20
    gammas = {}
    for lam in (0.9, 1.1):
        graph, card, _ = make_linear(lam)
        gammas[lam] = _score(graph, card, _windows(4), probe="quant", horizon=horizon, windows=3).units[0].gamma_quant
    expected = (horizon - 1) / horizon * np.log(1.1 / 0.9)
    assert gammas[1.1] - gammas[0.9] == pytest.approx(expected, abs=2e-3)


def test_curves_grow_like_the_systems(make_linear):
    """Same rotation, same seeded Gaussian kick (it scales with the weights): d_t ratio is (lam2/lam1)^t."""
    curves = {}
    for lam in (0.9, 1.1):
        graph, card, _ = make_linear(lam)
        curves[lam] = np.array(_score(graph, card, _windows(4), probe="gauss", horizon=20, windows=3).units[0].curve_gauss)
    slope = np.polyfit(np.arange(1, 21), np.log(curves[1.1] / curves[0.9]), 1)[0]
    assert slope == pytest.approx(np.log(1.1 / 0.9), abs=2e-3)
    assert curves[1.1][-1] > 10 * curves[1.1][0]


def test_a_unit_multiplied_by_zero_is_dead(dead_unit_model):
    graph, card = dead_unit_model
    scores = _score(graph, card, _windows(3, count=4), probe="both", horizon=6, windows=4)
    by_layer = {layer.name: layer for layer in card.layers}
    dead = {u.name for u in scores.units if u.dead}
    assert len(scores.units) == 2 and len(dead) == 1
    side = next(u for u in scores.units if u.dead)
    live = next(u for u in scores.units if not u.dead)
    assert "side" in side.name or "side" in " ".join(by_layer[side.name].weight_tensors) or side.curve_quant[-1] == 0
    assert max(side.curve_quant) == 0.0 and max(side.curve_gauss) == 0.0
    assert live.curve_quant[-1] > 0 and live.gamma_quant > side.gamma_quant + 10


def test_blown_up_reference_windows_are_reported_and_left_out(blowup_model):
    graph, card = blowup_model
    windows = np.array([[-0.3, -0.3], [2.0, 3.0], [0.2, -0.2], [1.5, 2.5]], np.float32)[..., None]
    scores = _score(graph, card, windows, probe="both", horizon=12, windows=4)
    assert scores.reference == {"windows_used": 2, "windows_blown_up": [1, 3]}
    unit = scores.units[0]
    assert np.isfinite(unit.gamma_quant) and np.isfinite(unit.gamma_gauss)
    assert all(np.isfinite(unit.curve_gauss)) and not unit.dead and unit.delta_norm_quant > 0
    # The score equals the score from the bounded windows alone: nothing from the blown ones was averaged in.
    alone = _score(graph, card, windows[[0, 2]], probe="both", horizon=12, windows=2).units[0]
    assert unit.gamma_gauss == pytest.approx(alone.gamma_gauss, rel=1e-6)


def test_gaussian_probe_is_seeded_and_sized_like_the_residual(make_linear):
    graph, card, matrix = make_linear(1.0, features=6)
    a = _score(graph, card, _windows(6), probe="gauss", horizon=5, windows=3, seed=1).units[0]
    b = _score(graph, card, _windows(6), probe="gauss", horizon=5, windows=3, seed=1).units[0]
    c = _score(graph, card, _windows(6), probe="gauss", horizon=5, windows=3, seed=2).units[0]
    assert a.gamma_gauss == b.gamma_gauss and a.gamma_gauss != c.gamma_gauss
    quant_norm = np.linalg.norm(residual(matrix.astype(np.float32), get_format("int4")))
    assert a.delta_norm_gauss == pytest.approx(quant_norm, rel=0.5)


def test_units_at_every_granularity(mlp_model):
    graph, card = mlp_model
    layers = build_units(card, graph, "layer")
    tensors = build_units(card, graph, "tensor")
    blocks = build_units(card, graph, "block")
    assert len(layers) == 6
    assert len(tensors) == sum(len(u.weight_tensors) for u in layers)  # weights and biases
    assert all(u.name == f"{layer.name}/{u.weight_tensors[0]}" for u in tensors for layer in layers
               if u.weight_tensors[0] in layer.weight_tensors)
    assert [u.name for u in blocks] == ["in_proj", "block0", "block1", "out_proj"]
    assert sum(u.params for u in blocks) == sum(u.params for u in layers) == sum(u.params for u in tensors)
    by_regex = build_units(card, graph, "block", block_regex=r"(block\d)_")
    assert {"block0", "block1"} <= {u.name for u in by_regex} and len(by_regex) == 4


def test_free_run_scores_the_mlp_with_both_probes(mlp_model):
    graph, card = mlp_model
    scores = score_model(graph, card, ScoreSettings(engine="litert", horizon=8, windows=4, granularity="block"),
                         progress=False)
    assert scores.settings["contexts"] == "free-run" and scores.reference["windows_used"] == 4
    for unit in scores.units:
        assert np.isfinite(unit.gamma_quant) and np.isfinite(unit.gamma_gauss) and not unit.dead
        assert len(unit.curve_quant) == 8


def test_a_perturbed_run_that_overflows_scores_high_but_finite(blowup_model):
    """At 2 bits the -0.37 weight rounds to 0 and the perturbed model explodes where the float one decays."""
    from edgetqs.tqs.probes import DIVERGED_DISTANCE

    graph, card = blowup_model
    windows = np.array([[0.5, 0.3]], np.float32)[..., None]
    unit = _score(graph, card, windows, probe="quant", horizon=20, windows=1, probe_bits=2).units[0]
    assert unit.curve_quant[-1] == DIVERGED_DISTANCE and np.isfinite(unit.gamma_quant)
    assert unit.gamma_quant > 3 and not unit.dead
