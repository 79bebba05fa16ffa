"""Every expected bad input gets one EdgeTQSError naming the problem and the fix,
and the CLI exits non-zero without a traceback."""

import subprocess
import sys

import numpy as np
import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.intake import load_model, run_tflite


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edgetqs", *args], capture_output=True, text=True, timeout=300)


def test_missing_file(tmp_path):
    with pytest.raises(EdgeTQSError, match="no such model") as info:
        load_model(tmp_path / "nope.keras")
    assert "zoo:NAME" in info.value.fix


@pytest.mark.parametrize("suffix, problem", [
    (".tflite", "not a TFLite flatbuffer"),
    (".onnx", "not a readable ONNX model"),
    (".keras", "not a readable Keras model"),
    (".txt", "unknown extension"),
])
def test_file_that_is_not_a_model(tmp_path, suffix, problem):
    path = tmp_path / f"notes{suffix}"
    path.write_text("these are my notes, not a model\n" * 20)
    with pytest.raises(EdgeTQSError, match=problem):
        load_model(path)


def test_directory_that_is_not_a_savedmodel(tmp_path):
    with pytest.raises(EdgeTQSError, match="not a SavedModel"):
        load_model(tmp_path)


def test_truncated_tflite(tmp_path, float_tflite_path):
    raw = float_tflite_path.read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(EdgeTQSError, match="damaged|truncated") as info:
        load_model(truncated)
    assert "re-export" in info.value.fix


def _onnx_with_unconvertible_op(path):
    """LpPool is valid ONNX (onnxruntime runs it) but onnx2tf has no converter for it."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("window", TensorProto.FLOAT, [1, 8, 2])
    y = helper.make_tensor_value_info("next", TensorProto.FLOAT, [1, 8, 1])
    node = helper.make_node("LpPool", ["window"], ["next"], kernel_shape=[2], p=2)
    model = helper.make_model(helper.make_graph([node], "lp", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_onnx_op_onnx2tf_cannot_convert(tmp_path):
    path = tmp_path / "lppool.onnx"
    _onnx_with_unconvertible_op(path)
    with pytest.raises(EdgeTQSError, match="onnx2tf cannot convert.*LpPool") as info:
        load_model(path)
    assert "re-export" in info.value.fix


def _keras_open_window(path):
    """A forecaster whose window length is not fixed: intake cannot guess it."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 3))
    h = keras.layers.GlobalAveragePooling1D()(inputs)
    keras.Model(inputs, keras.layers.Dense(3, bias_initializer="random_normal")(h)).save(path)


def test_rollout_spec_cannot_be_inferred_then_given(tmp_path):
    path = tmp_path / "open_window.keras"
    _keras_open_window(path)
    with pytest.raises(EdgeTQSError, match="cannot infer a rollout spec") as info:
        load_model(path)
    assert "--rollout window=W,features=F" in info.value.fix
    model = load_model(path, RolloutSpec.parse("window=12,features=3"))
    assert model.graph.input_shapes() == [(1, 12, 3)]
    assert (model.card.rollout.window, model.card.rollout.patch) == (12, 1)
    window = np.ones((1, 12, 3), np.float32)
    assert run_tflite(model.tflite_path, window).shape == (1, 3)


def test_output_that_is_not_a_state_cannot_be_inferred(tmp_path):
    import keras
    import tensorflow as tf

    inputs = keras.Input((6, 3))
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(inputs)))
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False,
                 input_signature=[tf.TensorSpec([1, 6, 3], tf.float32)])
    path = tmp_path / "classifier.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm")).convert())
    with pytest.raises(EdgeTQSError, match="cannot infer a rollout spec") as info:
        load_model(path)
    assert "--rollout" in info.value.fix
    with pytest.raises(EdgeTQSError, match="does not match"):
        load_model(path, RolloutSpec.parse("window=6,features=3"))


def test_cli_bad_inputs_exit_nonzero_without_traceback(tmp_path, float_tflite_path):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(float_tflite_path.read_bytes()[:300])
    notes = tmp_path / "notes.tflite"
    notes.write_text("not a model")
    keras_notes = tmp_path / "notes.keras"  # converted in a child process (the CLI has no TensorFlow loaded)
    keras_notes.write_text("not a model")
    for args in ([str(tmp_path / "missing.onnx")], [str(truncated)], [str(notes)], [str(keras_notes)],
                 ["zoo:no-such-model"]):
        result = _cli("inspect", *args)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr
        assert "error:" in result.stderr and "fix:" in result.stderr
        if args == [str(keras_notes)]:
            assert "not a readable Keras model" in result.stderr


def test_model_needing_select_tf_ops_names_the_op(tmp_path):
    """Erf has no TFLite builtin (it would need the Flex delegate, which boards lack)."""
    import keras

    inputs = keras.Input((8, 2))
    h = keras.layers.Dense(2)(keras.layers.Flatten()(inputs))
    outputs = keras.layers.Lambda(lambda t: keras.ops.erf(t))(h)
    keras.Model(inputs, outputs).export(str(tmp_path / "erf"), format="tf_saved_model", verbose=False)
    with pytest.raises(EdgeTQSError, match="not TFLite builtins: Erf") as info:
        load_model(tmp_path / "erf")
    assert "builtin-only" in info.value.fix


def test_cli_error_messages_keep_their_square_brackets(tmp_path):
    """rich would read '[batch, window, features]' as a style tag and drop it."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 2, 3, 4])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 3, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["out"])], "rank4", [image], [out])
    path = tmp_path / "rank4.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = _cli("inspect", str(path))
    assert result.returncode != 0
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert "[1, 2, 3, 4]" in message and "not [batch, window, features]" in message
