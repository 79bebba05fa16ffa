"""Tiny real forecasters for the TQS tests: Keras models converted to float
.tflite by the real TFLite converter, each with a model card listing its
weighted ops, and helpers to roll them out in float64 numpy for known answers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgetqs.model.card import LayerInfo, ModelCard, RolloutSpec  # noqa: E402
from edgetqs.model.tflite_graph import TFLiteGraph  # noqa: E402

WEIGHTED_OPS = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL"}


def convert_keras(model, path: Path) -> Path:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    path.write_bytes(converter.convert())
    return path


def card_for(path: Path, name: str, spec: RolloutSpec, blocks: dict[str, str] | None = None) -> ModelCard:
    """A card whose layers are the model's weighted ops (what intake produces), named by output tensor."""
    graph = TFLiteGraph.load(path)
    layers = []
    for op in graph.operators:
        if op.opcode not in WEIGHTED_OPS:
            continue
        weights = [graph.tensors[i] for i in op.inputs if i >= 0 and graph.tensors[i].is_constant]
        if not weights:
            continue
        layer_name = graph.tensors[op.outputs[0]].name
        block = next((b for key, b in (blocks or {}).items() if key in layer_name), "")
        layers.append(LayerInfo(layer_name, op.opcode, op.index, [t.name for t in weights],
                                [list(t.shape) for t in weights], sum(t.num_elements for t in weights),
                                sum(t.num_elements * 4 for t in weights), block))
    card = ModelCard(name, str(path), "keras", str(path), graph.sha256, spec.validate(), layers)
    card.save(path.with_suffix(".card.json"))
    return card


def linear_model(matrix: np.ndarray):
    """x_{t+1} = A x_t as a Keras model on [batch, 1, F] -> [batch, F]."""
    import tf_keras as keras

    features = matrix.shape[0]
    inputs = keras.Input((1, features), batch_size=None)
    flat = keras.layers.Flatten()(inputs)
    layer = keras.layers.Dense(features, use_bias=False, name="transition")
    out = layer(flat)
    model = keras.Model(inputs, out)
    layer.set_weights([matrix.T.astype(np.float32)])  # Keras computes x @ kernel
    return model


def rotation(features: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((features, features)))
    return q


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tqs_models")


@pytest.fixture(scope="session")
def make_linear(model_dir):
    """Build (and cache) a linear model lambda * R for a rotation R."""
    built = {}

    def make(lam: float, features: int = 4, seed: int = 0):
        key = (lam, features, seed)
        if key not in built:
            matrix = lam * rotation(features, seed)
            path = convert_keras(linear_model(matrix), model_dir / f"linear_{lam}_{features}_{seed}.tflite")
            card = card_for(path, f"linear-{lam}", RolloutSpec(window=1, features=features, output_rank=2))
            built[key] = (TFLiteGraph.load(path), card, matrix)
        return built[key]

    return make


@pytest.fixture(scope="session")
def mlp_model(model_dir):
    """A small nonlinear forecaster: window 8, 3 features, in-projection, two tanh blocks, out-projection."""
    import tf_keras as keras

    window, features = 8, 3
    keras.utils.set_random_seed(3)
    inputs = keras.Input((window, features))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(16, activation="tanh", name="in_proj")(x)
    for i in range(2):
        h = keras.layers.Dense(16, activation="tanh", name=f"block{i}_a")(x)
        h = keras.layers.Dense(16, name=f"block{i}_b")(h)
        x = keras.layers.Add()([x, h])
    x = keras.layers.Dense(features, name="out_proj")(x)
    out = keras.layers.Reshape((1, features))(x)
    # A small step on top of the last state keeps the free run bounded and moving.
    last = keras.layers.Lambda(lambda t: t[:, -1:, :])(inputs)
    out = keras.layers.Add()([last, keras.layers.Lambda(lambda t: 0.3 * t)(out)])
    model = keras.Model(inputs, out)
    path = convert_keras(model, model_dir / "mlp.tflite")
    blocks = {"in_proj": "in_proj", "block0": "block0", "block1": "block1", "out_proj": "out_proj"}
    card = card_for(path, "mlp-test", RolloutSpec(window=window, features=features, patch=1), blocks)
    return TFLiteGraph.load(path), card


@pytest.fixture(scope="session")
def dead_unit_model(model_dir):
    """A live path plus a side Dense whose output is multiplied by relu(-|x|) == 0 (not constant-foldable)."""
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(5)
    features = 3
    inputs = keras.Input((1, features))
    x = keras.layers.Flatten()(inputs)
    live = keras.layers.Dense(features, activation="tanh", name="live")(x)
    side = keras.layers.Dense(features, name="side")(x)
    zero = keras.layers.Lambda(lambda t: tf.nn.relu(-tf.abs(t)))(x)
    out = keras.layers.Add()([live, keras.layers.Multiply()([side, zero])])
    path = convert_keras(keras.Model(inputs, out), model_dir / "dead.tflite")
    card = card_for(path, "dead-test", RolloutSpec(window=1, features=features, output_rank=2))
    return TFLiteGraph.load(path), card


@pytest.fixture(scope="session")
def blowup_model(model_dir):
    """y = -0.37 x_{t-1} + x_t, x_{t+1} = y + y^2 / 2 (window 2, one feature): small states decay
    (the linear part has |roots| 0.61), large positive ones explode through the square."""
    import tf_keras as keras

    inputs = keras.Input((2, 1))
    x = keras.layers.Flatten()(inputs)
    layer = keras.layers.Dense(1, use_bias=False, name="gain")
    y = layer(x)
    out = keras.layers.Lambda(lambda t: t + 0.5 * t * t)(y)
    model = keras.Model(inputs, out)
    layer.set_weights([np.array([[-0.37], [1.0]], np.float32)])
    path = convert_keras(model, model_dir / "blowup.tflite")
    card = card_for(path, "blowup-test", RolloutSpec(window=2, features=1, output_rank=2))
    return TFLiteGraph.load(path), card
