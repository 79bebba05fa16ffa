"""Verification catches artifacts that disagree with the plan; lint catches
plans that cannot work; the activation-range hook reaches the exported model."""

from __future__ import annotations

import numpy as np
import pytest

from edgetqs.converter import convert
from edgetqs.converter.lint import lint_plan, raise_on_errors
from edgetqs.converter.pipeline import quantize
from edgetqs.converter.verify import verify_export
from edgetqs.errors import EdgeTQSError
from edgetqs.model.intake import load_model
from edgetqs.model.tflite_graph import TFLiteGraph, replace_constants
from edgetqs.planner.planfile import as_plan
from edgetqs.quant.aeq import build_recipe, calibration_from_ranges, op_scope, op_targets

from tests.converter.conftest import make_plan


@pytest.fixture(scope="module")
def mlp(canonical_stand_in):
    return canonical_stand_in("mlp")


@pytest.fixture(scope="module")
def probes(mlp):
    return np.random.default_rng(0).standard_normal((6, mlp.rollout.window, mlp.rollout.features)).astype(np.float32)


def export(canonical, plan, mode="dynamic"):
    recipe = build_recipe(canonical.graph, as_plan(plan).formats(), mode)
    return quantize(canonical.tflite_path, recipe, mode, None, None)


def test_recipe_addresses_exactly_the_planned_ops(mlp):
    plan = make_plan(mlp, ["int4", "fp32", "int8"])
    recipe = build_recipe(mlp.graph, as_plan(plan).formats(), "dynamic")
    assert len(recipe) == len(mlp.card.layers)
    kinds = [entry["algorithm_key"] for entry in recipe]
    assert kinds == ["min_max_uniform_quantize", "no_quantize", "min_max_uniform_quantize"]
    assert recipe[0]["op_config"]["weight_tensor_config"]["num_bits"] == 4
    # Each regex matches its own op's AEQ scope and no other op's.
    import re

    scopes = [op_scope(mlp.graph, op) for op in mlp.graph.operators]
    for entry in recipe:
        assert sum(bool(re.search(entry["regex"], s)) for s in scopes) == 1


def test_verification_catches_a_type_mismatch(mlp, probes):
    """An artifact quantized at int8 where the plan says int4 is refused."""
    plan_int4 = make_plan(mlp, ["int4"])
    exported_int8 = export(mlp, make_plan(mlp, ["int8"]))
    targets = op_targets(mlp.graph, as_plan(plan_int4).formats())
    with pytest.raises(EdgeTQSError, match=r"is INT8 per-channel .*planned int4 \(INT4\)"):
        verify_export(mlp.graph, exported_int8, targets, as_plan(plan_int4), "dynamic", mlp.rollout, probes)


def test_verification_catches_a_size_mismatch(mlp, probes):
    plan = make_plan(mlp, ["int8"])
    plan["predicted"]["model_bytes"] = int(plan["predicted"]["model_bytes"] * 0.9)
    exported = export(mlp, plan)
    with pytest.raises(EdgeTQSError, match=r"the plan predicted .*more than 1%"):
        verify_export(mlp.graph, exported, op_targets(mlp.graph, as_plan(plan).formats()), as_plan(plan), "dynamic",
                      mlp.rollout, probes)


def test_verification_catches_outputs_that_disagree_with_the_simulation(canonical_stand_in, probes):
    """A float model whose conv bias differs from the exported file's: the outputs disagree, refused."""
    conv = canonical_stand_in("conv1d")
    plan = make_plan(conv, ["int8"], "weight_only")
    exported = export(conv, plan, "weight_only")
    targets = op_targets(conv.graph, as_plan(plan).formats())
    verification = verify_export(conv.graph, exported, targets, as_plan(plan), "weight_only", conv.rollout, probes)
    assert verification.simulation_rel_error < 1e-5
    # The bias is not quantized, so the simulation takes it from the float model: shift it there.
    bias = conv.graph.tensor_by_name(conv.card.layers[0].weight_tensors[1])
    assert len(bias.shape) == 1
    shifted = TFLiteGraph.from_bytes(replace_constants(conv.graph, {bias.name: conv.graph.float_constant(bias) + 0.5}))
    with pytest.raises(EdgeTQSError, match="differ from the simulation"):
        verify_export(shifted, exported, targets, as_plan(plan), "weight_only", conv.rollout, probes)


def test_lint_flags_fp16_underflow(mlp, tmp_path):
    """Weights far below fp16's smallest subnormal would become zeros: an error before export."""
    layer = mlp.card.layers[1]
    kernel = mlp.graph.tensor_by_name(layer.weight_tensors[0])
    tiny = replace_constants(mlp.graph, {kernel.name: mlp.graph.float_constant(kernel) * 1e-9})
    (tmp_path / "tiny.tflite").write_bytes(tiny)
    tiny_model = load_model(tmp_path / "tiny.tflite")
    findings = lint_plan(tiny_model.graph, as_plan(make_plan(tiny_model, ["fp16"])), "dynamic")
    errors = [f for f in findings if f.level == "error"]
    assert [f.tensor for f in errors] == [kernel.name] and "underflow to 0 in fp16" in errors[0].message
    with pytest.raises(EdgeTQSError, match="underflow"):
        raise_on_errors(findings)


def first_hidden_layer_output(graph) -> str:
    """The first FULLY_CONNECTED's output (its name depends on how many Keras layers the session built)."""
    op = next(o for o in graph.operators if o.opcode == "FULLY_CONNECTED")
    return graph.tensors[op.outputs[0]].name


def test_activation_range_hook_reaches_the_export(mlp, tmp_path):
    """Ranges handed to convert() (the probabilistic estimator's hook) set the int8 activation scales."""
    hidden = first_hidden_layer_output(mlp.graph)
    result = convert(mlp, make_plan(mlp, ["int8"], "static", predicted=False), tmp_path / "m.tflite",
                     mode="static", horizon=4, windows=3, activation_ranges={hidden: (-2.0, 6.0)})
    graph = TFLiteGraph.load(result.out)
    tensor = next(t for t in graph.tensors if t.name == hidden)
    assert tensor.type_name == "INT8"
    assert tensor.quantization.scales[0] == pytest.approx(8.0 / 255, rel=1e-3)


def test_calibration_from_ranges_keeps_the_base_and_checks_ranges():
    base = {"a": {"min": np.array(-1.0), "max": np.array(1.0)}, "b": {"min": np.array(0.0), "max": np.array(2.0)}}
    merged = calibration_from_ranges({"b": (0.5, 3.0)}, base)
    assert merged["a"] == base["a"]
    assert float(merged["b"]["min"]) == 0.0 and float(merged["b"]["max"]) == 3.0  # ranges include 0
    with pytest.raises(EdgeTQSError, match="low <= high"):
        calibration_from_ranges({"b": (3.0, 1.0)}, base)


def test_cli_reads_an_activation_range_file(mlp, tmp_path):
    import json

    from edgetqs.cli.app import main
    from edgetqs.ranges.export import write_ranges_json

    hidden = first_hidden_layer_output(mlp.graph)
    ranges = write_ranges_json({hidden: (-1.0, 3.0)}, tmp_path / "ranges.json", mlp.graph.sha256)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(make_plan(mlp, ["int8"], "static", predicted=False)))
    out = tmp_path / "m.tflite"
    assert main(["convert", str(mlp.tflite_path), "--plan", str(plan), "-o", str(out), "--ranges", str(ranges),
                 "--horizon", "4", "--windows", "3"]) == 0
    tensor = next(t for t in TFLiteGraph.load(out).tensors if t.name == hidden)
    assert tensor.quantization.scales[0] == pytest.approx(4.0 / 255, rel=1e-3)
