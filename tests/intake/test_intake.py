"""Intake of all four formats: one canonical float .tflite that computes what
the source computes, with an inferred rollout spec and a layer table."""

import json

import numpy as np
import pytest

from edgetqs.files import read_json
from edgetqs.model.card import AS_GIVEN, CARD, TFLITE_CONVERTER, ModelCard
from edgetqs.model.intake import load_model, run_tflite
from edgetqs.model.tflite_graph import TFLiteGraph

# The source models' input shape (tests/intake/conftest.py builds them).
WINDOW, FEATURES = 16, 3


def _check_canonical(model, source_format):
    assert model.card.source_format == source_format
    assert model.graph.input_shapes() == [(1, WINDOW, FEATURES)]
    spec = model.card.rollout
    assert (spec.window, spec.features, spec.patch) == (WINDOW, FEATURES, 1)
    assert model.tflite_path.exists() and model.tflite_path.with_name("model.card.json").exists()
    tensor_names = {t.name for t in model.graph.tensors}
    for layer in model.card.layers:
        assert layer.weight_tensors[0] == layer.main_weight
        assert set(layer.weight_tensors) <= tensor_names  # names exactly as in the .tflite
        assert layer.params == sum(int(np.prod(s)) for s in layer.shapes)
        assert layer.float_bytes == 4 * layer.params


def test_keras_intake_matches_keras(keras_path, keras_model, window):
    model = load_model(keras_path)
    _check_canonical(model, "keras")
    assert model.card.intake_route == TFLITE_CONVERTER  # nothing recurrent to unroll
    np.testing.assert_allclose(run_tflite(model.tflite_path, window), keras_model(window).numpy(), rtol=1e-4, atol=1e-5)
    layers = {layer.name: layer for layer in model.card.layers}
    assert list(layers) == ["input_proj", "block_1_fc1", "output_proj"]
    assert layers["block_1_fc1"].block == "block_1"
    assert layers["input_proj"].block == "input_proj" and layers["output_proj"].block == "output_proj"
    assert layers["input_proj"].shapes == [[24, WINDOW * FEATURES], [24]]  # kernel, then its bias
    assert model.card.total_params == 24 * 48 + 24 + 24 * 24 + 24 + 3 * 24 + 3


def test_version_2_card_reads_with_its_route_where_the_format_has_one(keras_path, float_tflite_path, tmp_path):
    """Cards written before intake recorded its route stay readable; the route is filled in only where the
    source format allows one route (a .tflite), and left empty where it had a choice (Keras: unrolled or not)."""
    for source, route in ((keras_path, ""), (float_tflite_path, AS_GIVEN)):
        document = read_json(load_model(source).tflite_path.with_name("model.card.json"), CARD)
        assert document["version"] == 3
        for key in ("intake_route", "intake_note"):
            del document[key]
        path = tmp_path / "model.card.json"
        path.write_text(json.dumps({**document, "version": 2}))
        card = ModelCard.load(path)
        assert (card.version, card.intake_route, card.intake_note) == (3, route, "")


def test_intake_is_cached_by_content(keras_path):
    first = load_model(keras_path)
    again = load_model(keras_path)
    assert again.tflite_path == first.tflite_path and again.card.tflite_sha256 == first.card.tflite_sha256


def test_savedmodel_intake_matches_tensorflow(savedmodel_path, keras_model, window):
    model = load_model(savedmodel_path)
    _check_canonical(model, "savedmodel")
    np.testing.assert_allclose(run_tflite(model.tflite_path, window), keras_model(window).numpy(), rtol=1e-4, atol=1e-5)
    assert len(model.card.layers) == 3


def test_onnx_intake_keeps_layout_and_matches_onnxruntime(torch_onnx_path, window):
    import onnxruntime

    model = load_model(torch_onnx_path)
    _check_canonical(model, "onnx")  # [1, 16, 3] stays [1, 16, 3], not NCW [1, 3, 16]
    expected = onnxruntime.InferenceSession(str(torch_onnx_path)).run(None, {"window": window})[0]
    np.testing.assert_allclose(run_tflite(model.tflite_path, window), expected, rtol=1e-4, atol=1e-5)
    ops = {layer.op_type for layer in model.card.layers}
    assert [layer.name for layer in model.card.layers] == ["conv", "head"]  # torch module names survive onnx2tf
    assert model.card.total_params == FEATURES * 8 * 3 + 8 + 8 * WINDOW * FEATURES + FEATURES
    assert ops <= {"CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "DEPTHWISE_CONV_2D"}


def test_float_tflite_intake_is_the_same_model(float_tflite_path, keras_model, window):
    model = load_model(float_tflite_path)
    _check_canonical(model, "tflite")
    assert model.tflite_path.read_bytes() == float_tflite_path.read_bytes()
    np.testing.assert_allclose(run_tflite(model.tflite_path, window), keras_model(window).numpy(), rtol=1e-4, atol=1e-5)
    assert [layer.op_type for layer in model.card.layers] == ["FULLY_CONNECTED"] * 3


def test_graph_of_canonical_model_has_no_control_flow(keras_path):
    graph = TFLiteGraph.load(load_model(keras_path).tflite_path)
    assert graph.num_subgraphs == 1
    assert not any(op.opcode.startswith("CUSTOM") for op in graph.operators)
