"""Byte-exact costs: predicted .tflite size vs the file AI Edge Quantizer really writes
(through the converter's recipe builder), for uniform and mixed plans in both modes."""

import numpy as np
import pytest
from ai_edge_quantizer import quantizer

from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.planner import costs
from edgetqs.planner.conformance import CapabilityMatrix
from edgetqs.planner.plan import plan_from_choice, build_problem
from edgetqs.planner.planfile import plan_from_dict
from edgetqs.quant.aeq import build_recipe, calibrate_windows
from edgetqs.quant.formats import FORMATS
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME


def _aeq_file_size(model_path, plan) -> int:
    recipe = build_recipe(TFLiteGraph.load(model_path), plan.formats(), plan.mode)
    return len(quantizer.Quantizer(str(model_path), recipe).quantize().quantized_model)


def _problem(scores_for, model_path, mode):
    graph, scores_path = scores_for(model_path)
    from edgetqs.tqs.scorefile import load_scores

    return build_problem(graph, load_scores(scores_path), "x", DEFAULT_HOST_RUNTIME.spec, mode, CapabilityMatrix.load())


def _plans(problem, rng, n_mixed=2):
    """Uniform plans for every format all units allow, plus random mixed plans."""
    plans = []
    for name in FORMATS:
        if all(name in u.formats for u in problem.units):
            plans.append([u.formats.index(name) for u in problem.units])
    for _ in range(n_mixed):
        plans.append([int(rng.integers(len(u.formats))) for u in problem.units])
    return plans


@pytest.mark.parametrize("model", ["mlp64", "mlp_odd", "conv", "mlp_big", "tied"])
@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_predicted_size_within_one_percent_of_aeq(models, scores_for, model, mode):
    problem = _problem(scores_for, models[model], mode)
    rng = np.random.default_rng(0)
    checked = 0
    for choice in _plans(problem, rng):
        plan = plan_from_choice(problem, choice, 10**9, "test", None)
        actual = _aeq_file_size(models[model], plan)
        predicted = plan.predicted["model_bytes"]
        assert abs(predicted - actual) / actual < 0.01, (model, mode, [a.format for a in plan.assignments],
                                                         predicted, actual)
        checked += 1
    assert checked >= 3


def test_sub_byte_packing_and_int64_zero_points():
    # a [96, 64] FULLY_CONNECTED weight: 6144 values, 96 output channels
    t = costs.WeightTensor("w", (96, 64), "FULLY_CONNECTED", 0, True)
    per_channel = 96 * (4 + 8) + costs.QUANT_TABLE_OVERHEAD  # fp32 scale + int64 zero point per channel
    assert costs.tensor_bytes(t, FORMATS["int8"], "dynamic") == 6144 + per_channel
    assert costs.tensor_bytes(t, FORMATS["int4"], "dynamic") == 3072 + per_channel
    assert costs.tensor_bytes(t, FORMATS["int2"], "dynamic") == 1536 + per_channel
    assert costs.tensor_bytes(t, FORMATS["fp32"], "dynamic") == 4 * 6144
    # blockwise: fp16 scales per 32 values, no zero points
    assert 0 < costs.tensor_bytes(t, FORMATS["int4_b32"], "dynamic") - 3072 - 2 * 96 * 2 < 150
    bias = costs.WeightTensor("b", (96,), "FULLY_CONNECTED", 0, False)
    assert costs.tensor_bytes(bias, FORMATS["int4"], "dynamic") == 4 * 96  # biases stay float


def test_blockwise_needs_a_divisible_fan_in():
    assert costs.applicable(costs.WeightTensor("w", (8, 64), "FULLY_CONNECTED", 0, True), FORMATS["int4_b32"])
    assert not costs.applicable(costs.WeightTensor("w", (8, 40), "FULLY_CONNECTED", 0, True), FORMATS["int4_b32"])


def test_weight_only_counts_the_float_copy_in_memory():
    t = costs.WeightTensor("w", (32, 32), "FULLY_CONNECTED", 0, True)
    assert costs.dequantized_copy_bytes(t, FORMATS["int4"], "weight_only") == 4 * 1024
    assert costs.dequantized_copy_bytes(t, FORMATS["int4"], "dynamic") == 0
    assert costs.dequantized_copy_bytes(t, FORMATS["fp16"], "dynamic") == 4 * 1024


def test_arena_covers_the_largest_activation_pair(models):
    graph = TFLiteGraph.load(models["mlp_big"])
    arena = costs.arena_bytes(graph)
    # the two 256-wide hidden activations are alive together inside a layer
    assert arena >= 2 * 256 * 4
    total_activations = sum(4 * t.num_elements for t in graph.tensors if not t.is_constant)
    assert arena <= total_activations + 64 * len(graph.tensors)


def test_plan_round_trip(models, scores_for, tmp_path):
    problem = _problem(scores_for, models["mlp64"], "dynamic")
    plan = plan_from_choice(problem, [0] * len(problem.units), 10**6, "mckp", None)
    path = plan.save(tmp_path / "plan.json")
    from edgetqs.planner.planfile import load_plan

    again = load_plan(path)
    assert again == plan
    assert plan_from_dict(plan.to_dict()).formats() == plan.formats()


def test_units_sharing_a_weight_are_planned_as_one(models, scores_for):
    problem = _problem(scores_for, models["tied"], "dynamic")
    names = [n for u in problem.units for n in u.weight_tensors]
    assert len(names) == len(set(names))  # every tensor in exactly one planned unit
    merged = [u for u in problem.units if "sharing its weights" in u.name]
    assert len(merged) == 1


def _aeq_static_file_size(model_path, plan, rng) -> int:
    """The static export as the converter makes it: real min/max calibration on random windows."""
    graph = TFLiteGraph.load(model_path)
    recipe = build_recipe(graph, plan.formats(), "static")
    q = quantizer.Quantizer(str(model_path), recipe)
    shape = graph.input_shapes()[0][1:]
    windows = rng.standard_normal((3, *shape)).astype(np.float32)
    return len(q.quantize(calibrate_windows(model_path, recipe, windows)).quantized_model)


@pytest.mark.parametrize("model", ["mlp64", "mlp_odd", "conv", "tied"])
def test_static_predicted_size_within_one_percent_of_aeq(models, scores_for, model):
    """Static plans (int8 activations): QUANTIZE/DEQUANTIZE, activation tables and int32
    biases included. The allocator's additive costs (float islands measured per unit) agree too."""
    problem = _problem(scores_for, models[model], "static")
    rng = np.random.default_rng(0)
    plans = _plans(problem, rng, n_mixed=3)
    assert len(plans) >= 3
    for choice in plans:
        plan = plan_from_choice(problem, choice, 10**9, "test", None)
        actual = _aeq_static_file_size(models[model], plan, rng)
        predicted = plan.predicted["model_bytes"]
        formats = [a.format for a in plan.assignments]
        assert abs(predicted - actual) / actual < 0.01, (model, formats, predicted, actual)
        additive = problem.fixed_file_bytes + sum(a.bytes for a in plan.assignments)
        assert abs(additive - actual) / actual < 0.01, (model, formats, additive, actual)


def test_static_costs_more_than_dynamic_for_the_same_plan(models, scores_for):
    """The gap the static model closes: activation tables, boundary QUANTIZE/DEQUANTIZE."""
    static, dynamic = (_problem(scores_for, models["mlp64"], mode) for mode in ("static", "dynamic"))
    int8 = [u.formats.index("int8") for u in static.units]
    sizes = {p.mode: plan_from_choice(p, int8, 10**9, "t", None).predicted["model_bytes"] for p in (static, dynamic)}
    assert sizes["static"] > sizes["dynamic"]
