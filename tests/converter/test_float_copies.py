"""Conversion shares the canonical model's bytes instead of copying them, with the same numbers:
AEQ and LiteRT read the graph's bytes in place, and the simulation's deltas need no transposed copy.
(What each copy costs is measured in benchmarks/convert_phases.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from edgetqs.converter.pipeline import quantize
from edgetqs.converter.verify import simulate
from edgetqs.engine import Engine
from edgetqs.engine.ops.linear import gemm_layout_weights
from edgetqs.engine.registry import Perturbation
from edgetqs.model.tflite_graph import TFLiteGraph, replace_constants
from edgetqs.planner.planfile import as_plan
from edgetqs.quant.aeq import build_recipe

from tests.converter.conftest import make_plan


@pytest.fixture(scope="module")
def mlp(canonical_stand_in):
    return canonical_stand_in("mlp")


def test_a_loaded_graph_is_one_immutable_copy_of_the_file(mlp):
    graph = TFLiteGraph.load(mlp.tflite_path)
    assert isinstance(graph.content, bytes) and graph.content == mlp.tflite_path.read_bytes()
    whole = np.frombuffer(graph.content, np.uint8)
    assert all(np.shares_memory(t.data, whole) for t in graph.tensors if t.is_constant)


@pytest.mark.parametrize("kind, formats", [("mlp", ["int4", "fp32", "int8"]), ("conv1d", ["int8", "fp16"])])
def test_aeq_exports_the_same_model_from_the_graphs_bytes(canonical_stand_in, kind, formats):
    model = canonical_stand_in(kind)
    recipe = build_recipe(model.graph, as_plan(make_plan(model, formats)).formats(), "dynamic")
    from_bytes = quantize(model.graph.content, recipe, "dynamic", None, None)
    assert from_bytes == quantize(model.tflite_path, recipe, "dynamic", None, None)
    assert model.graph.content == model.tflite_path.read_bytes()


def test_simulation_deltas_in_gemm_layout_give_the_same_outputs(mlp):
    graph = mlp.graph
    fc_weights = {graph.tensors[op.inputs[1]].name for op in graph.operators if op.opcode == "FULLY_CONNECTED"}
    assert gemm_layout_weights(graph) == fc_weights
    rng = np.random.default_rng(0)
    probes = rng.standard_normal((5, mlp.rollout.window, mlp.rollout.features)).astype(np.float32)
    engine = Engine(graph, mlp.rollout)
    deltas = {name: (1e-2 * rng.standard_normal(engine.weight(name).shape)).astype(np.float32) for name in fc_weights}
    # The exported model simulate reads: the float graph with W + delta as its weights.
    patched = TFLiteGraph.from_bytes(replace_constants(graph, {n: engine.weight(n) + d for n, d in deltas.items()}))
    expected = engine.rollout_probes(probes, 1, [{n: patched.float_constant(patched.tensor_by_name(n))
                                                  - engine.weight(n) for n in deltas}])[0]
    np.testing.assert_array_equal(simulate(graph, patched, list(deltas), mlp.rollout, probes), expected)
    # An F-ordered delta is the GEMM's [fan_in, out] operand itself: no transposed copy is made of it.
    name = next(iter(fc_weights))
    delta = np.asfortranarray(deltas[name])
    assert np.shares_memory(Perturbation(slice(None), 1, delta).transposed(delta.shape[0]), delta)

