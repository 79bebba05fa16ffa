"""Whole-plan rollouts on the fake-quant backend: {tensor: format} weights (and int8
activations when the mode says), many plans side by side from the same contexts."""

from __future__ import annotations

import numpy as np
import pytest

from edgetqs.engine import Engine
from edgetqs.errors import EdgeTQSError
from edgetqs.ranges.executor import FakeQuantEngine, QuantConfig


def _linear_weights(engine) -> list[str]:
    return [op.inputs[1] for op in engine.ops() if op.opcode == "FULLY_CONNECTED" and op.inputs[1] in op.weights]


def test_plans_roll_out_side_by_side_as_their_formats_say(standin_graphs, spec, test_contexts):
    graph, horizon = standin_graphs["mlp"], 3
    fq = FakeQuantEngine(graph, spec, QuantConfig("float", weight_bits=None))
    weights = _linear_weights(fq)
    plans = [{}, {w: "int8" for w in weights}, {w: "int4" for w in weights}, {w: "fp32" for w in weights}]
    runs = fq.rollout_plans(test_contexts, horizon, plans)
    assert runs.shape == (len(plans), len(test_contexts), horizon, spec.features)
    float_run = Engine(graph, spec).rollout(test_contexts, horizon)
    np.testing.assert_array_equal(runs[0], float_run)
    np.testing.assert_allclose(runs[3], float_run, rtol=1e-6, atol=1e-6)
    # an all-int8 plan is the model whose weights the reference quantizer put at 8 bits
    int8_model = FakeQuantEngine(graph, spec, QuantConfig("float", weight_bits=8)).rollout(test_contexts, horizon)
    np.testing.assert_allclose(runs[1], int8_model, rtol=1e-4, atol=1e-5)
    error = [np.abs(run - float_run).max() for run in runs[1:3]]
    assert 0 < error[0] < error[1], f"int4 should move the forecast more than int8: {error}"


def test_plans_with_int8_activations_match_the_activation_quantized_model(standin_graphs, spec, test_contexts):
    graph, horizon = standin_graphs["mlp"], 2
    fq = FakeQuantEngine(graph, spec, QuantConfig("dynamic", weight_bits=None))
    runs = fq.rollout_plans(test_contexts, horizon, [{}, {w: "int8" for w in _linear_weights(fq)}])
    weights_only = FakeQuantEngine(graph, spec, QuantConfig("float", weight_bits=8)).rollout(test_contexts, horizon)
    both = FakeQuantEngine(graph, spec, QuantConfig("dynamic", weight_bits=8)).rollout(test_contexts, horizon)
    np.testing.assert_allclose(runs[0], fq.rollout(test_contexts, horizon), rtol=1e-6, atol=1e-6)
    # activation quantization runs on the perturbed ops too: closer to int8 weights+activations than to weights only
    assert np.abs(runs[1] - both).max() < np.abs(runs[1] - weights_only).max()


def test_a_plan_naming_a_tensor_that_is_no_weight_fails_clearly(standin_graphs, spec, test_contexts):
    fq = FakeQuantEngine(standin_graphs["mlp"], spec, QuantConfig("float", weight_bits=None))
    with pytest.raises(EdgeTQSError, match="weight_names"):
        fq.rollout_plans(test_contexts, 1, [{"no/such/tensor": "int8"}])
    with pytest.raises(EdgeTQSError):
        fq.rollout_plans(test_contexts, 1, [{_linear_weights(fq)[0]: "int3_nonsense"}])
