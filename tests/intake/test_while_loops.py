"""A float .tflite that holds WHILE loops, as the plain TFLite converter writes a rolled recurrent
layer: flattened step by step when the trip count is static, refused with how to re-export when not.

Models are tiny (window 8, a few hundred weights) so each trip takes seconds."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from edgetqs.cli.app import main
from edgetqs.errors import EdgeTQSError
from edgetqs.model import card as routes
from edgetqs.model.intake import load_model, run_tflite
from edgetqs.model.tflite_graph import TFLiteGraph
from tests.intake.pipeline import assert_verified_smaller_bundle, through_pipeline

WINDOW, FEATURES, UNITS = 8, 3, 8


@pytest.fixture(scope="module")
def rolled_tflite(tmp_path_factory):
    """kind -> (.tflite of a Keras GRU/LSTM forecaster with the default unroll=False made by the
    plain TFLiteConverter, the Keras model)."""
    import keras
    import tensorflow as tf

    made = {}

    def make(kind):
        if kind not in made:
            keras.utils.set_random_seed(5)
            inputs = keras.Input((WINDOW, FEATURES), batch_size=1)
            random_bias = dict(bias_initializer="random_normal")  # nonzero biases: the converter keeps them
            if kind == "stacked-gru":  # the lower layer writes every step into its sequence output
                lower = keras.layers.GRU(UNITS, return_sequences=True, **random_bias)(inputs)
                h = keras.layers.GRU(UNITS, **random_bias)(lower)
            else:
                h = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[kind](UNITS, **random_bias)(inputs)
            model = keras.Model(inputs, keras.layers.Dense(FEATURES)(h))
            path = tmp_path_factory.mktemp("while") / f"{kind}.tflite"
            path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
            made[kind] = path, model
        return made[kind]

    return make


def _readers(graph: TFLiteGraph, values: np.ndarray) -> list[list]:
    """For each constant tensor holding ``values``: the ops that read it."""
    return [[op for op in graph.operators if t.index in op.inputs] for t in graph.tensors
            if t.is_constant and t.shape == values.shape and np.array_equal(t.data, values)]


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_while_loop_of_a_rolled_recurrent_layer_is_flattened_and_matches_the_file(kind, rolled_tflite, capsys):
    path, keras_model = rolled_tflite(kind)
    original = TFLiteGraph.load(path)
    assert original.num_subgraphs == 3 and "WHILE" in {op.opcode for op in original.operators}
    assert main(["inspect", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert f"intake route: {routes.WHILE_FLATTENED} (" in out and "1 WHILE loop(s) of 8 steps" in out
    model = load_model(path)
    graph = model.graph
    assert graph.num_subgraphs == 1 and model.card.intake_route == routes.WHILE_FLATTENED
    opcodes = [op.opcode for op in graph.operators]
    assert not set(opcodes) & {"WHILE", "LESS", "LOGICAL_AND", "GATHER"}
    assert opcodes.count("UNPACK") == 1  # the steps' rows of the input: one op, not a GATHER per step
    window = np.random.default_rng(8).standard_normal((1, WINDOW, FEATURES)).astype(np.float32)
    flat_out = run_tflite(model.tflite_path, window)
    assert float(np.max(np.abs(flat_out - run_tflite(path, window)))) <= 1e-5
    np.testing.assert_allclose(flat_out, keras_model(window).numpy(), rtol=1e-4, atol=1e-5)
    # Each Keras matrix is ONE constant in the flat graph (FULLY_CONNECTED keeps it [out, in]),
    # read once per step; the recurrent one not at step 0, whose state is the constant zero (folded).
    cell = keras_model.layers[1].cell
    (kernel_readers,) = _readers(graph, np.asarray(cell.kernel).T)
    (recurrent_readers,) = _readers(graph, np.asarray(cell.recurrent_kernel).T)
    assert len(kernel_readers) == WINDOW and {op.opcode for op in kernel_readers} == {"FULLY_CONNECTED"}
    assert len(recurrent_readers) == WINDOW - 1
    assert sorted(int(np.prod(layer.shapes[0])) for layer in model.card.layers) == sorted(
        [int(np.prod(cell.recurrent_kernel.shape)), int(np.prod(cell.kernel.shape)), UNITS * FEATURES])


def test_stacked_loops_with_a_sequence_output_are_flattened_and_match_the_file(rolled_tflite):
    path, keras_model = rolled_tflite("stacked-gru")
    model = load_model(path)
    graph = model.graph
    assert "2 WHILE loop(s) of 8, 8 steps" in model.card.intake_note and graph.num_subgraphs == 1
    # Step t writes row t of the lower layer's sequence by slicing the list around it: at t = 0 the slice
    # before it is empty. Each step's shapes are written as they are, and no empty tensor is left.
    assert all(all(d > 0 for d in t.shape) for t in graph.tensors)
    # The chain of list writes is rebuilt as what it ends in: one CONCATENATION of the 8 steps' rows,
    # which the upper layer reads through one UNPACK.
    opcodes = [op.opcode for op in graph.operators]
    assert "SLICE" not in opcodes and opcodes.count("CONCATENATION") == 1 and opcodes.count("UNPACK") == 2
    (concatenation,) = [op for op in graph.operators if op.opcode == "CONCATENATION"]
    assert len(concatenation.inputs) == WINDOW
    window = np.random.default_rng(9).standard_normal((1, WINDOW, FEATURES)).astype(np.float32)
    flat_out = run_tflite(model.tflite_path, window)
    assert float(np.max(np.abs(flat_out - run_tflite(path, window)))) <= 1e-5
    np.testing.assert_allclose(flat_out, keras_model(window).numpy(), rtol=1e-4, atol=1e-5)
    for layer in keras_model.layers[1:3]:
        for matrix in (layer.cell.kernel, layer.cell.recurrent_kernel):
            (readers,) = _readers(graph, np.asarray(matrix).T)  # one constant per Keras matrix
            assert WINDOW - 1 <= len(readers) <= WINDOW


@pytest.mark.parametrize("kind", ["gru", "stacked-gru"])
def test_flattened_while_loop_reaches_a_verified_bundle(kind, rolled_tflite, tmp_path):
    model = load_model(rolled_tflite(kind)[0])
    assert_verified_smaller_bundle(through_pipeline(model, tmp_path))


def test_while_loop_whose_trip_count_depends_on_the_input_is_refused_with_how_to_re_export(tmp_path):
    import tensorflow as tf

    weight = tf.constant(np.random.default_rng(2).normal(0, 0.5, (FEATURES, FEATURES)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, WINDOW, FEATURES], tf.float32)])
    def forward(x):
        steps = tf.cast(tf.reduce_sum(tf.abs(x)), tf.int32) % WINDOW + 1  # as many steps as the data says
        _, h = tf.while_loop(lambda i, h: i < steps, lambda i, h: (i + 1, tf.tanh(h @ weight + x[:, 0, :])),
                             (tf.constant(0), tf.zeros([1, FEATURES])))
        return h

    path = tmp_path / "data-dependent-loop.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function()], forward)
                     .convert())
    assert "WHILE" in {op.opcode for op in TFLiteGraph.load(path).operators}
    with pytest.raises(EdgeTQSError, match="no static trip count") as info:
        load_model(path)
    assert "unroll=True" in info.value.fix and ".keras" in info.value.fix
