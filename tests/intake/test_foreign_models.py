"""Forecasters as their authors save them, built with the real exporters at test
time, each taken through inspect -> score -> plan -> convert (verification on).

Models are tiny (a few hundred to a few thousand weights, window 8) and the
rollouts short, so the whole trip takes seconds per model.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from edgetqs.cli.app import main
from edgetqs.errors import EdgeTQSError
from edgetqs.model import card as routes
from edgetqs.model.intake import load_model, run_tflite
from tests.intake.pipeline import assert_verified_smaller_bundle, through_pipeline

WINDOW, FEATURES = 8, 3


def _keras_forecaster(kind: str):
    import keras

    keras.utils.set_random_seed(3)
    layers = keras.layers
    inputs = keras.Input((WINDOW, FEATURES))
    if kind == "conv-gru":  # the first model, saved with GRU's default unroll=False
        h = layers.GRU(12)(layers.Conv1D(8, 3, padding="causal", activation="relu")(inputs))
    elif kind == "lstm":
        h = layers.LSTM(12)(inputs)
    elif kind == "stacked-simplernn":
        h = layers.SimpleRNN(8)(layers.SimpleRNN(8, return_sequences=True)(inputs))
    elif kind == "bidirectional-gru":
        h = layers.Bidirectional(layers.GRU(6))(inputs)
    elif kind == "lstm-sequence":  # return_sequences: the whole next window
        return keras.Model(inputs, layers.Dense(FEATURES)(layers.LSTM(8, return_sequences=True)(inputs)))
    else:
        raise ValueError(kind)
    return keras.Model(inputs, layers.Dense(FEATURES)(h))


KERAS_RECURRENT = ["conv-gru", "lstm", "stacked-simplernn", "bidirectional-gru", "lstm-sequence"]


@pytest.fixture(scope="module")
def keras_recurrent(tmp_path_factory):
    """kind -> (path of the .keras file saved with default settings, the Keras model)."""
    made = {}

    def make(kind):
        if kind not in made:
            model = _keras_forecaster(kind)
            path = tmp_path_factory.mktemp("keras-rnn") / f"{kind}.keras"
            model.save(path)
            made[kind] = path, model
        return made[kind]

    return make


def _weight_bytes(graph) -> int:
    return sum(t.data.nbytes for t in graph.tensors if t.is_constant)


@pytest.mark.parametrize("kind", KERAS_RECURRENT)
def test_keras_default_recurrent_layers_are_unrolled_and_match_keras(kind, keras_recurrent):
    path, keras_model = keras_recurrent(kind)
    model = load_model(path)
    graph = model.graph
    assert graph.num_subgraphs == 1  # no WHILE loop left
    assert model.card.intake_route == routes.KERAS_UNROLLED and "WHILE" in model.card.intake_note
    assert not {op.opcode for op in graph.operators} & {"WHILE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN"}
    window = np.random.default_rng(7).standard_normal((1, WINDOW, FEATURES)).astype(np.float32)
    expected = keras_model(window).numpy()
    np.testing.assert_allclose(run_tflite(model.tflite_path, window).reshape(expected.shape), expected,
                               rtol=1e-4, atol=1e-5)
    # Each kernel is one constant read by every step: the layer table holds each Keras matrix once.
    kernels = [w for w in keras_model.weights if len(w.shape) >= 2 and not w.path.endswith("bias")]
    assert len(model.card.layers) == len(kernels)
    assert sum(int(np.prod(layer.shapes[0])) for layer in model.card.layers) == sum(int(np.prod(w.shape)) for w in kernels)


def test_unrolled_steps_share_one_weight_tensor_and_names_stay_short(keras_recurrent):
    path, keras_model = keras_recurrent("conv-gru")
    model = load_model(path)
    graph = model.graph
    # Keras numbers default layer names per process (gru, gru_1, ...), so ask the model for its GRU's name.
    gru = next(layer.name for layer in keras_model.layers if type(layer).__name__ == "GRU")
    recurrent = next(layer for layer in model.card.layers if layer.name == f"{gru}/recurrent_kernel")
    kernel = graph.tensor_by_name(recurrent.main_weight)
    readers = [op for op in graph.operators if kernel.index in op.inputs]
    # One FULLY_CONNECTED per step, all on the same tensor (the first step's h0 = 0 is folded away).
    assert WINDOW - 1 <= len(readers) <= WINDOW
    names = sum(len(t.name) for t in graph.tensors)
    assert names < 0.1 * graph.size_bytes  # fused TF names were a third of the file before compacting


@pytest.mark.parametrize("kind", ["conv-gru", "lstm-sequence"])
def test_keras_recurrent_models_reach_a_verified_bundle(kind, keras_recurrent, tmp_path):
    model = load_model(keras_recurrent(kind)[0])
    trip = through_pipeline(model, tmp_path)
    assert_verified_smaller_bundle(trip)
    assert trip["result"].verification.size_bytes == trip["result"].model_bytes


def _fused_lstm_tflite(tmp_path):
    """What the plain TFLite converter makes of a default Keras 2 (tf_keras) LSTM: one fused op.
    (A Keras 3 LSTM converts to a WHILE loop, which intake flattens: tests/intake/test_while_loops.py.)"""
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((WINDOW, FEATURES), batch_size=1)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(FEATURES)(tf_keras.layers.LSTM(8)(inputs)))
    path = tmp_path / "fused-lstm.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def test_float_tflite_with_fused_lstm_is_refused_with_how_to_re_export(tmp_path):
    path = _fused_lstm_tflite(tmp_path)
    with pytest.raises(EdgeTQSError, match="UNIDIRECTIONAL_SEQUENCE_LSTM") as info:
        load_model(path)
    assert "unroll=True" in info.value.fix and ".keras" in info.value.fix


# -- PyTorch, directly through litert-torch -------------------------------------------

def _torch_forecaster(kind: str):
    import torch

    torch.manual_seed(5)

    class Recurrent(torch.nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.rnn = cell(FEATURES, 12, batch_first=True)
            self.head = torch.nn.Linear(12, FEATURES)

        def forward(self, window):
            out, _ = self.rnn(window)
            return self.head(out[:, -1])

    class PatchEncoder(torch.nn.Module):
        """PatchTST-style: patches of 4 steps embedded, a Transformer encoder, a linear head."""

        def __init__(self):
            super().__init__()
            self.patch = 4
            self.embed = torch.nn.Linear(self.patch * FEATURES, 16)
            layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            for p in self.encoder.layers[1].parameters():  # TransformerEncoder deep-copies one layer
                torch.nn.init.normal_(p, std=0.2)
            self.head = torch.nn.Linear(16 * (WINDOW // self.patch), FEATURES)

        def forward(self, window):
            patches = window.reshape(window.shape[0], WINDOW // self.patch, self.patch * FEATURES)
            return self.head(self.encoder(self.embed(patches)).flatten(1))

    if kind == "gru":
        return Recurrent(torch.nn.GRU).eval()
    if kind == "lstm":
        return Recurrent(torch.nn.LSTM).eval()
    return PatchEncoder().eval()


def _torch_window():
    return np.random.default_rng(11).standard_normal((1, WINDOW, FEATURES)).astype(np.float32)


def _check_against_torch(model, module):
    import torch

    window = _torch_window()
    expected = module(torch.from_numpy(window)).detach().numpy()
    got = run_tflite(model.tflite_path, window)
    assert np.max(np.abs(got - expected)) <= 1e-4 * (1 + np.max(np.abs(expected)))


def test_torch_module_intake_from_python_reaches_a_verified_bundle(tmp_path):
    """The Python entry: an nn.GRU forecaster and an example input, no file of the user's own."""
    from edgetqs.model.intake import load_torch_module

    module = _torch_forecaster("gru")
    model = load_torch_module(module, _torch_window(), name="torch-gru")
    assert model.card.source_format == "pytorch" and model.graph.num_subgraphs == 1
    assert model.card.intake_route == routes.LITERT_TORCH
    _check_against_torch(model, module)
    names = {layer.name for layer in model.card.layers}
    assert {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "head"} <= names  # torch's own parameter names
    # The recurrent kernel is one tensor read at every step, not a copy per step.
    hh = next(layer for layer in model.card.layers if layer.name == "rnn.weight_hh_l0")
    readers = [op for op in model.graph.operators if model.graph.tensor_by_name(hh.main_weight).index in op.inputs]
    assert WINDOW - 1 <= len(readers) <= WINDOW
    trip = through_pipeline(model, tmp_path)
    assert trip["result"].verification.simulation_rel_error <= trip["result"].verification.tolerance


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "patch-encoder"])
def test_torch_export_programs_reach_a_verified_bundle(kind, tmp_path):
    """The CLI's entry: a torch.export program saved as .pt2."""
    import torch

    module = _torch_forecaster(kind)
    path = tmp_path / f"{kind}.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(1, WINDOW, FEATURES),)), str(path))
    model = load_model(path)
    _check_against_torch(model, module)
    trip = through_pipeline(model, tmp_path / "trip")
    assert trip["result"].verification.simulation_rel_error <= trip["result"].verification.tolerance


def test_unreadable_pt2_names_how_to_save_one(tmp_path):
    path = tmp_path / "notes.pt2"
    path.write_text("not a program")
    with pytest.raises(EdgeTQSError, match="not a readable torch.export program") as info:
        load_model(path)
    assert "torch.export.save" in info.value.fix


# -- state-to-state: [batch, features] in, [batch, features] out ------------------------

def _state_to_state_onnx(path):
    """A hand-built ONNX MLP x_{t+1} = x_t + W2 tanh(W1 x_t + b1) + b2 over a [1, 3] state (window 1).
    Hidden 128: below ~3 KB of weights the planner's byte costs miss AEQ's fixed ~35 bytes by more than 1%."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    weights = {"fc1.weight": rng.normal(0, 0.3, (FEATURES, 128)), "fc1.bias": rng.normal(0, 0.1, 128),
               "fc2.weight": rng.normal(0, 0.1, (128, FEATURES)), "fc2.bias": rng.normal(0, 0.1, FEATURES)}
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    nodes = [helper.make_node("MatMul", ["state", "fc1.weight"], ["h0"]), helper.make_node("Add", ["h0", "fc1.bias"], ["h1"]),
             helper.make_node("Tanh", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "fc2.weight"], ["h3"]),
             helper.make_node("Add", ["h3", "fc2.bias"], ["h4"]), helper.make_node("Add", ["h4", "state"], ["next"])]
    graph = helper.make_graph(nodes, "state-to-state", [helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, FEATURES])],
                              [helper.make_tensor_value_info("next", TensorProto.FLOAT, [1, FEATURES])], initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return weights


def test_state_to_state_onnx_gets_a_one_step_window_and_reaches_a_verified_bundle(tmp_path):
    weights = _state_to_state_onnx(tmp_path / "state.onnx")
    model = load_model(tmp_path / "state.onnx")
    spec = model.card.rollout
    assert (spec.window, spec.features, spec.patch, spec.output_rank) == (1, FEATURES, 1, 2)
    assert model.graph.input_shapes() == [(1, 1, FEATURES)]
    state = np.random.default_rng(4).standard_normal((1, FEATURES)).astype(np.float32)
    expected = state + np.tanh(state @ weights["fc1.weight"] + weights["fc1.bias"]) @ weights["fc2.weight"] + weights["fc2.bias"]
    np.testing.assert_allclose(run_tflite(model.tflite_path, state[:, None, :]), expected, rtol=1e-4, atol=1e-5)
    trip = through_pipeline(model, tmp_path / "trip")
    assert trip["result"].verification.simulation_rel_error <= trip["result"].verification.tolerance


def test_state_to_state_model_refuses_a_longer_window(tmp_path):
    from edgetqs.model.card import RolloutSpec

    _state_to_state_onnx(tmp_path / "state.onnx")
    with pytest.raises(EdgeTQSError, match="one state") as info:
        load_model(tmp_path / "state.onnx", RolloutSpec.parse(f"window=4,features={FEATURES}"))
    assert "window=1" in info.value.fix


# -- ONNX exported by torch.onnx: recurrent and attention models go through PyTorch --------

def _torch_onnx(module, path, example=None):
    import torch

    example = torch.zeros(1, WINDOW, FEATURES) if example is None else example
    torch.onnx.export(module, (example,), str(path), input_names=["window"], output_names=["next"], dynamo=False,
                      opset_version=17)
    return path


def _check_against_onnxruntime(model, path):
    import onnxruntime

    window = np.random.default_rng(12).standard_normal((1, WINDOW, FEATURES)).astype(np.float32)
    expected = onnxruntime.InferenceSession(str(path)).run(None, {"window": window})[0]
    np.testing.assert_allclose(run_tflite(model.tflite_path, window).reshape(expected.shape), expected,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["gru", "lstm", "patch-encoder"])
def test_torch_onnx_recurrent_and_attention_models_reach_a_verified_bundle(kind, tmp_path):
    """What onnx2tf 1.28 fails on or gets 7-9% wrong (benchmarks/foreign_models.py), taken ONNX -> torch -> litert-torch."""
    module = _torch_forecaster(kind)
    path = _torch_onnx(module, tmp_path / f"{kind}.onnx")
    model = load_model(path)
    assert model.card.source_format == "onnx" and model.graph.num_subgraphs == 1
    assert model.card.intake_route == routes.ONNX2TORCH  # chosen by the ops, onnx2tf not tried
    assert {"gru": "GRU", "lstm": "LSTM", "patch-encoder": "Softmax"}[kind] in model.card.intake_note
    _check_against_onnxruntime(model, path)
    _check_against_torch(model, module)
    if kind != "patch-encoder":  # the recurrent kernels keep ONNX's roles as names, one tensor read at every step
        names = {layer.name for layer in model.card.layers}
        assert {"rnn/W", "rnn/R", "head"} <= names
        recurrent = next(layer for layer in model.card.layers if layer.name == "rnn/R")
        index = model.graph.tensor_by_name(recurrent.main_weight).index
        assert WINDOW - 1 <= len([op for op in model.graph.operators if index in op.inputs]) <= WINDOW
    trip = through_pipeline(model, tmp_path / "trip")
    assert trip["result"].verification.simulation_rel_error <= trip["result"].verification.tolerance


def _recurrent_variant(cell: str, bidirectional: bool, initial_state: bool):
    """A forecaster torch.onnx writes other recurrent nodes for: nn.RNN, bidirectional, a learned initial state."""
    import torch

    torch.manual_seed(6)

    class Variant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, cell)(FEATURES, 6, batch_first=True, bidirectional=bidirectional)
            self.h0 = torch.nn.Parameter(torch.randn(2 if bidirectional else 1, 1, 6))
            self.head = torch.nn.Linear(12 if bidirectional else 6, FEATURES)

        def forward(self, window):
            state = (self.h0, torch.tanh(self.h0)) if cell == "LSTM" else self.h0
            out, _ = self.rnn(window, state) if initial_state else self.rnn(window)
            return self.head(out[:, -1])

    return Variant().eval()


@pytest.mark.parametrize("cell,bidirectional,initial_state", [("RNN", False, True), ("LSTM", True, True),
                                                              ("GRU", True, False)])
def test_other_torch_onnx_recurrent_nodes_convert_faithfully(cell, bidirectional, initial_state, tmp_path):
    path = _torch_onnx(_recurrent_variant(cell, bidirectional, initial_state), tmp_path / "variant.onnx")
    model = load_model(path)
    _check_against_onnxruntime(model, path)


def test_onnx_without_recurrent_or_attention_ops_stays_on_onnx2tf(tmp_path, monkeypatch, capsys):
    from edgetqs.model.formats import onnx as onnx_format

    def no_torch_route(*args):
        raise AssertionError("a model onnx2tf converts faithfully took the PyTorch route")

    monkeypatch.setattr(onnx_format, "via_torch", no_torch_route)
    monkeypatch.setenv("EDGETQS_CACHE", str(tmp_path / "cache"))  # the same model may be cached by another test
    _state_to_state_onnx(tmp_path / "state.onnx")
    card = load_model(tmp_path / "state.onnx").card
    assert (card.source_format, card.intake_route, card.intake_note) == ("onnx", routes.ONNX2TF, "")
    assert main(["inspect", str(tmp_path / "state.onnx")]) == 0
    assert "intake route: onnx2tf (onnx2tf on the ONNX graph)\n" in capsys.readouterr().out


def _other_state_to_state_onnx(path, like):
    """``like`` with fc2 scaled: a model that converts fine but computes something else."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(like))
    for i, initializer in enumerate(proto.graph.initializer):
        if initializer.name == "fc2.weight":
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(2 * numpy_helper.to_array(initializer), "fc2.weight"))
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("onnx2tf_outcome", ["fails", "disagrees"])
def test_onnx2tf_failure_or_disagreement_falls_back_to_the_torch_route(onnx2tf_outcome, tmp_path, monkeypatch, capsys):
    """A model onnx2tf cannot convert, or converts wrongly, without ops _TORCH_ROUTE_OPS names: the PyTorch
    route is tried, and its result is still checked against onnxruntime."""
    from edgetqs.model.formats import onnx as onnx_format

    weights = _state_to_state_onnx(tmp_path / "state.onnx")
    other = _other_state_to_state_onnx(tmp_path / "other.onnx", tmp_path / "state.onnx")
    original_onnx2tf, original_via_torch, routed = onnx_format.run_onnx2tf, onnx_format.via_torch, []

    def onnx2tf(path, *args):
        if onnx2tf_outcome == "fails":
            raise EdgeTQSError(f"onnx2tf cannot convert {path}: unsupported op(s) Tanh", "replace it")
        return original_onnx2tf(other, *args)  # a real conversion, of the wrong model

    def spied_via_torch(*args):
        routed.append(args)
        return original_via_torch(*args)

    monkeypatch.setattr(onnx_format, "run_onnx2tf", onnx2tf)
    monkeypatch.setattr(onnx_format, "via_torch", spied_via_torch)
    monkeypatch.setenv("EDGETQS_CACHE", str(tmp_path / "cache"))  # the same model may be cached by another test
    model = load_model(tmp_path / "state.onnx")
    assert len(routed) == 1
    # The card says which route made the model and why onnx2tf's conversion was not kept; inspect shows both.
    why = "unsupported op(s) Tanh" if onnx2tf_outcome == "fails" else "disagrees with onnxruntime"
    assert model.card.intake_route == routes.ONNX2TORCH and why in model.card.intake_note
    assert main(["inspect", str(tmp_path / "state.onnx")]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "intake route: onnx2torch -> litert-torch (" in out and "why: " in out and why in out
    state = np.random.default_rng(4).standard_normal((1, FEATURES)).astype(np.float32)
    expected = state + np.tanh(state @ weights["fc1.weight"] + weights["fc1.bias"]) @ weights["fc2.weight"] + weights["fc2.bias"]
    np.testing.assert_allclose(run_tflite(model.tflite_path, state[:, None, :]), expected, rtol=1e-4, atol=1e-5)


def test_when_both_routes_fail_the_error_names_both(tmp_path, monkeypatch):
    from edgetqs.model.formats import onnx as onnx_format

    def failing(name):
        def fail(source, *args):
            raise EdgeTQSError(f"{name} cannot convert {source}: it broke", f"{name}'s fix")
        return fail

    monkeypatch.setattr(onnx_format, "run_onnx2tf", failing("onnx2tf"))
    monkeypatch.setattr(onnx_format, "run_litert_torch", failing("litert-torch"))
    monkeypatch.setenv("EDGETQS_CACHE", str(tmp_path / "cache"))
    _state_to_state_onnx(tmp_path / "state.onnx")
    with pytest.raises(EdgeTQSError, match="onnx2tf cannot convert.*through PyTorch: litert-torch cannot convert") as info:
        load_model(tmp_path / "state.onnx")
    assert info.value.fix == "litert-torch's fix"


# -- channel-first: [batch, features, window], declared in the rollout spec -------------

def test_channel_first_onnx_by_an_explicit_spec_gets_the_canonical_layout(tmp_path):
    """A torch Conv1d forecaster over [batch, channels, time], as torch users write it."""
    import onnxruntime
    import torch

    from edgetqs.model.card import RolloutSpec

    torch.manual_seed(8)

    class ChannelFirst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(FEATURES, 8, kernel_size=3, padding=1)
            self.head = torch.nn.Linear(8 * WINDOW, FEATURES)

        def forward(self, x):  # x: [batch, features, window]
            return x[:, :, -1] + self.head(torch.relu(self.conv(x)).flatten(1))

    path = tmp_path / "channel-first.onnx"
    torch.onnx.export(ChannelFirst().eval(), (torch.zeros(1, FEATURES, WINDOW),), str(path), input_names=["x"],
                      output_names=["next"], dynamo=False, opset_version=17)
    with pytest.raises(EdgeTQSError):  # [1, 3, 8] -> [1, 3] read as channels-last does not fit
        load_model(path)
    model = load_model(path, RolloutSpec.parse(f"window={WINDOW},features={FEATURES},input_layout=channels_first"))
    assert model.graph.input_shapes() == [(1, WINDOW, FEATURES)]
    # The spec is remembered for this file: score/plan/convert (which take no --rollout) find the same model.
    assert load_model(path).tflite_path == model.tflite_path
    window = np.random.default_rng(9).standard_normal((1, WINDOW, FEATURES)).astype(np.float32)
    expected = onnxruntime.InferenceSession(str(path)).run(None, {"x": window.transpose(0, 2, 1)})[0]
    np.testing.assert_allclose(run_tflite(model.tflite_path, window), expected, rtol=1e-4, atol=1e-5)
    trip = through_pipeline(model, tmp_path / "trip")
    assert trip["result"].verification.simulation_rel_error <= trip["result"].verification.tolerance


# -- SavedModel written from a tf.function -------------------------------------------

def _tf_function_savedmodel(path, recurrent: bool = False):
    import tensorflow as tf

    if recurrent:
        import keras

        keras.utils.set_random_seed(0)
        inputs = keras.Input((WINDOW, FEATURES))
        model = keras.Model(inputs, keras.layers.Dense(FEATURES)(keras.layers.LSTM(8)(inputs)))
        forward = model
    else:
        rng = np.random.default_rng(6)
        module_weights = [tf.Variable(rng.normal(0, 0.3, (WINDOW * FEATURES, 64)).astype(np.float32)),
                          tf.Variable(rng.normal(0, 0.1, 64).astype(np.float32)),
                          tf.Variable(rng.normal(0, 0.1, (64, FEATURES)).astype(np.float32))]
        w1, b1, w2 = module_weights

        def forward(x):
            flat = tf.reshape(x, [-1, WINDOW * FEATURES])
            return x[:, -1, :] + tf.matmul(tf.tanh(tf.matmul(flat, w1) + b1), w2)

    module = tf.Module()
    module.keep = forward if recurrent else module_weights
    module.serve = tf.function(lambda x: forward(x), input_signature=[tf.TensorSpec([None, WINDOW, FEATURES], tf.float32)])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return forward


def test_tf_function_savedmodel_reaches_a_verified_bundle(tmp_path):
    forward = _tf_function_savedmodel(tmp_path / "tf-function")
    model = load_model(tmp_path / "tf-function")
    assert model.card.source_format == "savedmodel" and model.graph.input_shapes() == [(1, WINDOW, FEATURES)]
    assert model.card.intake_route == routes.TFLITE_CONVERTER
    window = np.random.default_rng(10).standard_normal((1, WINDOW, FEATURES)).astype(np.float32)
    np.testing.assert_allclose(run_tflite(model.tflite_path, window), forward(window).numpy(), rtol=1e-4, atol=1e-5)
    trip = through_pipeline(model, tmp_path / "trip")
    assert trip["result"].verification.simulation_rel_error <= trip["result"].verification.tolerance


def test_savedmodel_with_a_rolled_recurrent_loop_is_flattened_and_reaches_a_verified_bundle(tmp_path):
    forward = _tf_function_savedmodel(tmp_path / "tf-lstm", recurrent=True)
    model = load_model(tmp_path / "tf-lstm")
    assert model.card.intake_route == routes.TFLITE_CONVERTER_LOOP_FLATTENED
    assert "1 WHILE loop(s) of 8 steps" in model.card.intake_note and model.graph.num_subgraphs == 1
    window = np.random.default_rng(11).standard_normal((1, WINDOW, FEATURES)).astype(np.float32)
    np.testing.assert_allclose(run_tflite(model.tflite_path, window), forward(window).numpy(), rtol=1e-4, atol=1e-5)
    kernel = np.asarray(forward.layers[1].cell.kernel).T  # one constant, read by every step's FULLY_CONNECTED
    (tensor,) = [t for t in model.graph.tensors if t.is_constant and np.array_equal(t.data, kernel)]
    assert len([op for op in model.graph.operators if tensor.index in op.inputs]) == WINDOW
    trip = through_pipeline(model, tmp_path / "trip")
    assert trip["result"].verification.simulation_rel_error <= trip["result"].verification.tolerance
