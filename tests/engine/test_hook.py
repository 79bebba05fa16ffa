"""The engine's public per-op hook (on_output / run_op / transform_input) and its
public view of the graph (nodes, ops(), constants, set_constant), on a real zoo
model, checked against the plain engine and the LiteRT interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from edgetqs.engine import Engine, OpView
from edgetqs.engine.litert import LiteRTRunner
from edgetqs.errors import EdgeTQSError
from tests.engine.conftest import zoo_model


@pytest.fixture(scope="module")
def mlp():
    return zoo_model("mlp-lorenz96", count=4)


def test_identity_hook_sees_every_op_in_order_and_changes_nothing(mlp):
    seen = []

    def record(node, outputs):
        seen.append((node.index, [o.shape for o in outputs]))
        return outputs

    plain = Engine(mlp.graph, mlp.spec).forward(mlp.contexts)
    hooked_engine = Engine(mlp.graph, mlp.spec, on_output=record)
    hooked = hooked_engine.forward(mlp.contexts)
    np.testing.assert_array_equal(hooked, plain)  # bit for bit
    assert [index for index, _ in seen] == [node.index for node in hooked_engine.nodes]
    for (_, shapes), node in zip(seen, hooked_engine.nodes):  # batched: [B, *graph shape]
        assert shapes == [(len(mlp.contexts), *shape) for shape in node.output_shapes]


def test_hook_output_is_what_the_graph_reads_on(mlp):
    engine = Engine(mlp.graph, mlp.spec)
    last = engine.nodes[-1].index
    negate_last = Engine(mlp.graph, mlp.spec,
                         on_output=lambda node, outputs: [-o for o in outputs] if node.index == last else outputs)
    np.testing.assert_array_equal(negate_last.forward(mlp.contexts), -engine.forward(mlp.contexts))

    first = engine.nodes[0].index
    zero_first = Engine(mlp.graph, mlp.spec,
                        on_output=lambda node, outputs: [np.zeros_like(o) for o in outputs] if node.index == first
                        else outputs)
    assert not np.allclose(zero_first.forward(mlp.contexts), engine.forward(mlp.contexts))


def test_hook_runs_on_every_rollout_step(mlp):
    calls = []
    engine = Engine(mlp.graph, mlp.spec, on_output=lambda node, outputs: calls.append(node.index) or outputs)
    horizon = 5
    trajectory = engine.rollout(mlp.contexts, horizon)
    assert len(calls) == horizon * len(engine.nodes)
    np.testing.assert_array_equal(trajectory, Engine(mlp.graph, mlp.spec).rollout(mlp.contexts, horizon))


class RoundingEngine(Engine):
    """A subclass on the hook points only: rounds the input and every op's output to fp16."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def transform_input(self, x):
        return x.astype(np.float16).astype(np.float32)

    def run_op(self, node, inputs):
        self.calls += 1
        return [o.astype(np.float16).astype(np.float32) for o in self.kernel(node, inputs)]


def test_subclass_overrides_the_hook_points(mlp):
    engine = RoundingEngine(mlp.graph, mlp.spec)
    y = engine.forward(mlp.contexts)
    assert engine.calls == len(engine.nodes)
    assert np.array_equal(y, y.astype(np.float16).astype(np.float32)), "the last op's output was rounded"
    reference = LiteRTRunner(mlp.path, mlp.spec).forward(mlp.contexts)
    error = np.abs(y - reference).max() / np.abs(reference).max()
    assert 0 < error < 1e-2, f"fp16 rounding should move the forecast a little, not {error}"


def test_ops_name_tensors_and_weights(mlp):
    engine = Engine(mlp.graph, mlp.spec)
    ops = list(engine.ops())
    assert all(isinstance(op, OpView) for op in ops)
    assert [op.opcode for op in ops] == [node.opcode for node in engine.nodes]
    names = {t.name for t in mlp.graph.tensors}
    for op in ops:
        assert set(op.inputs) - {""} <= names and set(op.outputs) <= names
        assert set(op.weights) <= set(op.inputs)
    assert ops[-1].outputs == [mlp.graph.tensors[mlp.graph.outputs[0]].name]
    fc_weights = [name for op in ops if op.opcode == "FULLY_CONNECTED" for name in op.weights
                  if name in engine.weight_names()]
    assert fc_weights, "the MLP's dense kernels are weights of its FULLY_CONNECTED ops"
    for op in ops:
        for name, value in op.weights.items():
            if name in engine.weight_names():
                np.testing.assert_array_equal(value, engine.weight(name))


def test_set_constant_changes_later_calls(mlp):
    engine = Engine(mlp.graph, mlp.spec)
    before = engine.forward(mlp.contexts)
    fc = next(node for node in engine.nodes if node.opcode == "FULLY_CONNECTED")
    index = fc.inputs[1]
    weight = engine.constants[index][0]
    with pytest.raises(TypeError):
        engine.constants[index] = weight  # the view is read-only
    engine.set_constant(index, np.zeros_like(weight))
    assert not np.allclose(engine.forward(mlp.contexts), before)
    engine.set_constant(index, weight)
    np.testing.assert_array_equal(engine.forward(mlp.contexts), before)
    with pytest.raises(EdgeTQSError, match="shape"):
        engine.set_constant(index, weight[:1])
