"""Every zoo model converts under three plans made by the planner itself, each
artifact verified by the converter (size within 1% of the planner's
prediction, planned tensor types, LiteRT runs, outputs vs the engine's
simulation of the same quantization):

- uniform int8;
- uniform int4 where the capability matrix allows int4 for the unit's ops
  (the units it does not fall back to int8, and the test says which);
- TQS mixed: the model scored with a short horizon, planned at a budget halfway
  between its smallest and largest footprint.
"""

from __future__ import annotations

import pytest

from edgetqs import zoo
from edgetqs.converter import convert
from edgetqs.errors import EdgeTQSError
from edgetqs.planner.conformance import CapabilityMatrix
from edgetqs.planner.plan import plan_from_choice, build_problem, solve, static_calibration_for
from edgetqs.tqs.score import ScoreSettings, score_model
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME

RUNTIME = DEFAULT_HOST_RUNTIME.spec
MODE = "dynamic"
# Units whose op the matrix does not allow int4 for, per model (the rest of the model is int4).
INT4_FALLBACK_OPS = {"EMBEDDING_LOOKUP"}
# onnx2tf's .tflite has no serving signature, which AEQ's static calibration needs.
NO_SIGNATURE = {"mlp-sunspots-onnx"}
# AEQ 0.10's static export fails for these (weight-only and dynamic work): lstm-sunspots (the
# unrolled Keras LSTM) holds a SPLIT that LiteRT 2.3's XNNPACK delegate cannot prepare; on
# litert-torch graphs AEQ refuses a FULLY_CONNECTED bias ("Ranks of scales (3) and zps (3) must be
# the same as the tensor rank (2)"). The planner refuses static mode for them up front.
STATIC_EXPORT_DOES_NOT_LOAD = {"lstm-sunspots", "gru-sunspots-torch", "patchtst-sunspots-torch"}


def uniform_choice(problem, fmt: str, fallback: str = "int8") -> tuple[list[int], list[str]]:
    """Every unit at ``fmt`` where allowed, else at ``fallback`` (else its first format); the live units
    that fell back. Dead units (perturbations never reach the output) keep the one format the planner
    gives them, its cheapest."""
    choice, fell_back = [], []
    for unit in problem.units:
        if unit.dead:
            choice.append(0)
            continue
        for name in (fmt, fallback, unit.formats[0]):
            if name in unit.formats:
                choice.append(unit.formats.index(name))
                break
        if name != fmt:
            fell_back.append(unit.name)
    return choice, fell_back


def convert_and_check(canonical, plan, out):
    # a covariate model (mlp-duffing) calibrates on its own series: data-free contexts cannot feed it
    data = zoo.data_for(canonical.card.name)
    result = convert(canonical, plan.to_dict(), out, mode=plan.mode, horizon=6, windows=3, calibration=data)
    predicted = plan.predicted["model_bytes"]
    assert result.verification.predicted_bytes == predicted
    assert abs(result.model_bytes - predicted) <= 0.01 * predicted
    assert result.verification.simulation_rel_error <= result.verification.tolerance
    return result


@pytest.mark.slow
@pytest.mark.parametrize("name", [entry.name for entry in zoo.list_models()])
def test_every_zoo_model_converts_under_three_plans(tmp_path, name):
    canonical = zoo.build(name)
    scores = score_model(canonical.graph, canonical.card, ScoreSettings(horizon=8, windows=2, data=zoo.data_for(name)),
                         progress=False)
    problem = build_problem(canonical.graph, scores, "test", RUNTIME, MODE, CapabilityMatrix.load())

    int8, int8_fell_back = uniform_choice(problem, "int8")
    assert not int8_fell_back, f"{name}: units without int8 {int8_fell_back}"
    plan = plan_from_choice(problem, int8, 10**12, "uniform", None)
    result = convert_and_check(canonical, plan, tmp_path / "int8.tflite")
    planned = {n: a.format for a in plan.assignments for n in a.weight_tensors}
    for tensor, described in result.verification.tensors.items():
        assert described.startswith({"int8": "INT8", "fp32": "FLOAT32"}[planned[tensor]]), (tensor, described)

    int4, int4_fell_back = uniform_choice(problem, "int4")
    fallback_ops = {t.op for u in problem.units if u.name in int4_fell_back for t in _unit_tensors(problem, u)}
    assert fallback_ops <= INT4_FALLBACK_OPS, f"{name}: int4 not allowed for {int4_fell_back} ({fallback_ops})"
    convert_and_check(canonical, plan_from_choice(problem, int4, 10**12, "uniform", None), tmp_path / "int4.tflite")

    middle = (problem.smallest_memory() + problem.largest_memory()) // 2
    mixed = solve(problem, middle)
    assert mixed.predicted["memory_bytes"] <= middle
    convert_and_check(canonical, mixed, tmp_path / "mixed.tflite")


@pytest.mark.slow
@pytest.mark.parametrize("name", [e.name for e in zoo.list_models() if e.name not in NO_SIGNATURE | STATIC_EXPORT_DOES_NOT_LOAD])
def test_every_zoo_model_converts_under_a_static_tqs_plan(tmp_path, name):
    """Static mode (int8 activations): the planner's static byte prediction holds to 1% on the real export."""
    canonical = zoo.build(name)
    scores = score_model(canonical.graph, canonical.card, ScoreSettings(horizon=8, windows=2, data=zoo.data_for(name)),
                         progress=False)
    problem = build_problem(canonical.graph, scores, "test", RUNTIME, "static", CapabilityMatrix.load(),
                            static_calibration=static_calibration_for(canonical, zoo.data_for(name)))
    plan = solve(problem, (problem.smallest_memory() + problem.largest_memory()) // 2)
    assert plan.mode == "static"
    convert_and_check(canonical, plan, tmp_path / "static.tflite")
    # uniform int4 weights with int8 activations (dead units at their own format): the additive
    # costs, float islands included, price it
    int4, fell_back = uniform_choice(problem, "int4")
    assert not fell_back, f"{name}: static int4 not allowed for {fell_back}"
    plan = plan_from_choice(problem, int4, 10**12, "uniform", None)
    convert_and_check(canonical, plan, tmp_path / "static-int4.tflite")
    additive = problem.fixed_file_bytes + sum(a.bytes for a in plan.assignments)
    assert abs(additive - plan.predicted["model_bytes"]) <= 0.01 * additive


@pytest.mark.parametrize("name", ["lstm-sunspots", "gru-sunspots-torch"])  # one per cause (XNNPACK, AEQ)
def test_static_mode_is_refused_at_plan_time_where_the_static_export_cannot_run(name):
    """The planner tries AEQ's all-int8 static export before it plans: a user asking for static
    mode on such a graph learns it (and the mode that works) from `edgetqs plan`, not from the
    converter after the plan is made."""
    canonical = zoo.build(name)
    scores = score_model(canonical.graph, canonical.card, ScoreSettings(horizon=2, windows=1), progress=False)
    with pytest.raises(EdgeTQSError) as caught:
        build_problem(canonical.graph, scores, "test", RUNTIME, "static", CapabilityMatrix.load())
    assert "static mode (int8 activations) is not available for this model" in caught.value.problem
    assert "--mode dynamic" in caught.value.fix
    build_problem(canonical.graph, scores, "test", RUNTIME, MODE, CapabilityMatrix.load())  # dynamic plans


def _unit_tensors(problem, unit):
    from edgetqs.planner import costs

    tensors = costs.weight_tensors(problem.graph)
    return [tensors[n] for n in unit.weight_tensors if tensors[n].quantizable]
