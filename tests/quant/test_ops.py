"""The op descriptions are the one source of per-op facts, and they agree with AI Edge Quantizer."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from ai_edge_quantizer import qtyping
from ai_edge_quantizer.algorithms.utils import common_utils

from edgetqs.errors import EdgeTQSError
from edgetqs.quant.modes import Mode
from edgetqs.quant.ops import OPS, WEIGHTED_OPS, Role, channel_axis, op_spec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def test_aeq_names_are_ops_aeq_quantizes_and_the_rest_stay_float():
    aeq_ops = {op.value for op in qtyping.TFLOperationName}
    weight_ops = {op.value for op in common_utils.DRQ_OR_WEIGHT_ONLY_OPS}
    for spec in OPS.values():
        if spec.aeq_name is not None:
            assert spec.aeq_name in weight_ops and spec.is_weighted, spec.name
    # weighted ops AEQ has no name for are units TQS scores but stay float in every plan
    assert "CONV_3D" in WEIGHTED_OPS and "CONV_3D" not in aeq_ops
    assert not op_spec("CONV_3D").aeq_quantizes(1, (3, 3, 3, 4, 8))
    assert not op_spec("UNIDIRECTIONAL_SEQUENCE_LSTM").aeq_quantizes(1, (16, 8))


def test_a_constant_is_a_weight_wherever_it_sits():
    bmm = op_spec("BATCH_MATMUL")
    assert bmm.aeq_quantizes(0, (2, 16, 64)) and bmm.aeq_quantizes(1, (2, 64, 16))
    assert channel_axis("BATCH_MATMUL", (2, 64, 16)) == 2
    assert channel_axis("BATCH_MATMUL", (2, 16, 64), adj_y=True) == 1
    assert channel_axis("DEPTHWISE_CONV_2D", (1, 3, 3, 8)) == 3
    assert channel_axis("FULLY_CONNECTED", (16,)) == 0  # biases: axis 0
    assert op_spec("ADD") == op_spec("ADD") and not op_spec("ADD").is_weighted
    assert op_spec("RESHAPE").role is Role.LAYOUT and op_spec("CONV_2D").role is Role.LINEAR


def test_mode_parses_once_and_is_stored_as_its_string():
    assert Mode.parse("static") is Mode.STATIC and Mode.STATIC.quantizes_activations
    assert json.dumps({"mode": Mode.WEIGHT_ONLY}) == '{"mode": "weight_only"}'
    with pytest.raises(EdgeTQSError, match="unknown mode 'int8' in plan.json") as info:
        Mode.parse("int8", "plan.json")
    assert "weight_only, dynamic, static" in info.value.fix


@pytest.fixture(scope="module")
def left_constant_matmul(tmp_path_factory):
    """x -> W @ x with W constant: TF keeps the constant as BATCH_MATMUL's *left* operand."""
    import tensorflow as tf

    from edgetqs.planner.conformance import _concrete_tflite

    w = np.random.default_rng(0).standard_normal((2, 16, 64)).astype(np.float32)
    raw = _concrete_tflite(lambda x: tf.linalg.matmul(tf.constant(w), x), [((2, 64, 3), tf.float32)])
    path = tmp_path_factory.mktemp("bmm") / "left_constant.tflite"
    path.write_bytes(raw)
    return path


def test_left_constant_batch_matmul_is_priced_quantized_and_exported_quantized(left_constant_matmul):
    """The planner prices the left operand as int8; the recipe must then really quantize it."""
    from edgetqs.model.tflite_graph import TFLiteGraph
    from edgetqs.planner import costs
    from edgetqs.quant.aeq import build_recipe, export, op_targets

    graph = TFLiteGraph.load(left_constant_matmul)
    op = next(o for o in graph.operators if o.opcode == "BATCH_MATMUL")
    weight = graph.tensors[op.inputs[0]]
    assert weight.is_constant and costs.weight_tensors(graph)[weight.name].quantizable
    assert [t.weight_tensor for t in op_targets(graph, {weight.name: "int8"})] == [weight.name]
    exported = export(left_constant_matmul, build_recipe(graph, {weight.name: "int8"}, "dynamic"), "dynamic")
    assert TFLiteGraph.from_bytes(exported).tensor_by_name(weight.name).type_name == "INT8"
