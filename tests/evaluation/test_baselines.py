"""Baseline sensitivities (edgetqs.baselines) become score files the planner uses as is."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgetqs import zoo
from edgetqs.baselines import baseline_scores, scores_from_sensitivities
from edgetqs.errors import EdgeTQSError
from edgetqs.quant.formats import FORMATS
from edgetqs.planner.plan import build_problem, solve
from edgetqs.quant.quantizer import residual_norm
from edgetqs.tqs.score import ScoreSettings, score_model
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME

RUNTIME = DEFAULT_HOST_RUNTIME.spec


@pytest.fixture(scope="module")
def model_and_scores():
    model = zoo.build("mlp-sunspots")
    scores = score_model(model.graph, model.card, ScoreSettings(horizon=8, windows=4), progress=False)
    return model, scores


def _weights(graph, name):
    return graph.float_constant(graph.tensor_by_name(name))


def test_weight_error_cost_is_the_relative_residual(model_and_scores):
    model, scores = model_and_scores
    graph = model.graph
    problem = build_problem(graph, baseline_scores("weight_error", graph, scores), "x", RUNTIME)
    tensors = {u.name: u.weight_tensors for u in scores.units}
    for unit in problem.units:
        kernel = tensors[unit.name][0]  # the bias is not quantizable: its residual is zero
        axis = 0
        relative = residual_norm(_weights(graph, kernel), FORMATS["int8"], axis) / math.sqrt(
            sum(float(np.sum(_weights(graph, t).astype(np.float64) ** 2)) for t in tensors[unit.name]))
        assert unit.costs[unit.formats.index("int8")] == pytest.approx(relative, rel=1e-4)


def test_sensitivity_scales_every_cost_and_the_planner_follows(model_and_scores):
    model, scores = model_and_scores

    def bits_when_precious(precious: str) -> dict[str, int]:
        # one unit a million times more sensitive than the rest, at a budget with room for one upgrade
        sens = {u.name: (1e6 if u.name == precious else 1.0) for u in scores.units}
        problem = build_problem(model.graph, scores_from_sensitivities(scores, sens, "random"), "x", RUNTIME)
        upgrade = {u.name: u.memory_bytes[u.formats.index("int8")] - min(u.memory_bytes) for u in problem.units}
        budget = problem.smallest_memory() + max(upgrade["block_1_fc1"], upgrade["block_1_fc2"])
        plan = solve(problem, budget)
        assert plan.predicted["memory_bytes"] <= budget
        return {a.unit: FORMATS[a.format].bits for a in plan.assignments}

    assert bits_when_precious("block_1_fc1")["block_1_fc1"] > bits_when_precious("block_1_fc2")["block_1_fc1"]
    assert bits_when_precious("block_1_fc2")["block_1_fc2"] > bits_when_precious("block_1_fc1")["block_1_fc2"]


def test_single_step_is_tqs_with_one_step(model_and_scores):
    model, scores = model_and_scores
    single = baseline_scores("single_step", model.graph, scores, card=model.card, windows=4)
    one = score_model(model.graph, model.card, ScoreSettings(probe="quant", horizon=1, windows=4), progress=False)
    assert single.settings["horizon"] == 1
    for a, b in zip(single.units, one.units):
        assert math.log(max(a.score, 1e-30)) == pytest.approx(b.gamma_quant if math.isfinite(b.gamma_quant)
                                                               else math.log(1e-30))


def test_random_baselines_differ_by_seed_and_repeat(model_and_scores):
    model, scores = model_and_scores
    a, b, a2 = (baseline_scores("random", model.graph, scores, seed=s) for s in (0, 1, 0))
    assert [u.score for u in a.units] == [u.score for u in a2.units]
    assert [u.score for u in a.units] != [u.score for u in b.units]


def test_unknown_baseline_and_missing_keras_source_fail_clearly(model_and_scores):
    model, scores = model_and_scores
    with pytest.raises(EdgeTQSError, match="unknown baseline"):
        baseline_scores("oracle", model.graph, scores)
    with pytest.raises(EdgeTQSError, match="no Keras source model"):
        baseline_scores("hessian", model.graph, scores, keras_path=None)


@pytest.mark.timeout(300)
def test_hessian_trace_from_the_keras_source(model_and_scores):
    from edgetqs.zoo.training import entry_training_pairs

    model, scores = model_and_scores
    x, y = entry_training_pairs(zoo.entry("mlp-sunspots"))
    hessian = baseline_scores("hessian", model.graph, scores, seed=0, train_x=x, train_y=y,
                              keras_path=zoo.model_dir("mlp-sunspots") / "mlp-sunspots.keras")
    gammas = [math.log(u.score) for u in hessian.units]
    assert all(math.isfinite(g) for g in gammas)
    assert len(set(gammas)) == len(gammas)  # a trace per unit, not one shared value
