"""Clear errors for what the engine cannot or should not run, and the LiteRT runner's inputs."""

from __future__ import annotations

import numpy as np
import pytest

from edgetqs.engine import Engine, UnsupportedOpError, supported_ops
from edgetqs.engine.litert import LiteRTRunner
from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.tflite_graph import TFLiteGraph


@pytest.fixture(scope="module")
def cumsum_model(tmp_path_factory):
    """A real converted model with an op the engine has no kernel for (CUMSUM)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 2], tf.float32)])
    def forecaster(window):
        return tf.math.cumsum(window, axis=1)[:, -1:, :]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([forecaster.get_concrete_function()], forecaster)
    path = tmp_path_factory.mktemp("cumsum") / "cumsum.tflite"
    path.write_bytes(converter.convert())
    return path


def test_unsupported_op_names_the_op(cumsum_model):
    graph = TFLiteGraph.load(cumsum_model)
    with pytest.raises(UnsupportedOpError) as info:
        Engine(graph, RolloutSpec(window=4, features=2))
    assert info.value.ops == ["CUMSUM"]
    assert "CUMSUM" in str(info.value) and "litert" in str(info.value).lower()
    assert isinstance(info.value, EdgeTQSError)
    # the black-box path still runs it
    y = LiteRTRunner(cumsum_model, RolloutSpec(window=4, features=2)).forward(np.ones((3, 4, 2), np.float32))
    np.testing.assert_allclose(y, np.full((3, 1, 2), 4.0))


def test_supported_ops_cover_the_zoo_families():
    ops = set(supported_ops())
    assert {"FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX", "GELU",
            "SPACE_TO_BATCH_ND", "STRIDED_SLICE", "DEQUANTIZE"} <= ops


def test_spec_that_does_not_match_the_model(standin_dir):
    from tests.engine.conftest import standin_model

    model = standin_model("mlp", standin_dir)
    with pytest.raises(EdgeTQSError, match="rollout spec"):
        Engine(model.graph, RolloutSpec(window=model.spec.window + 1, features=model.spec.features))


def test_bad_inputs_are_clear_errors(standin_dir):
    from tests.engine.conftest import standin_model

    model = standin_model("mlp", standin_dir)
    engine = Engine(model.graph, model.spec)
    with pytest.raises(EdgeTQSError, match="shape"):
        engine.forward(np.zeros((2, model.spec.window + 1, model.spec.features), np.float32))
    with pytest.raises(EdgeTQSError, match="horizon"):
        engine.rollout(model.contexts, 0)
    with pytest.raises(EdgeTQSError, match="no probe groups"):
        engine.rollout_probes(model.contexts, 2, [])
    with pytest.raises(EdgeTQSError, match="weight_names"):
        engine.rollout_probes(model.contexts, 2, [{"no such tensor": np.zeros(3)}])
    name = engine.weight_names()[0]
    with pytest.raises(EdgeTQSError, match="shape"):
        engine.rollout_probes(model.contexts, 2, [{name: np.zeros(engine.weight(name).size + 1)}])


def test_fp16_weights_are_perturbable_by_their_own_names(standin_dir):
    from tests.engine.conftest import standin_model

    model = standin_model("depthwise_fp16", standin_dir)
    engine = Engine(model.graph, model.spec)
    fp16 = {t.name for t in model.graph.tensors if t.is_constant and t.type_name == "FLOAT16"}
    assert fp16 and fp16 <= set(engine.weight_names())


def test_litert_runner_takes_bytes_or_a_path(standin_dir):
    from tests.engine.conftest import standin_model

    model = standin_model("gru", standin_dir)
    from_path = LiteRTRunner(model.path, model.spec).rollout(model.contexts, 3)
    from_bytes = LiteRTRunner(model.path.read_bytes(), model.spec).rollout(model.contexts, 3)
    np.testing.assert_array_equal(from_path, from_bytes)
