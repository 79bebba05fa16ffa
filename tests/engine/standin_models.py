"""Small Keras forecasters standing in for the zoo's four architectures.

Each is converted with tf.lite.TFLiteConverter to a float .tflite with input
[1, window, features] and output [1, patch, features] (or [1, features]), so
engine tests exercise the same op mix the zoo produces: residual MLP (Dense),
GRU (unroll=True, flat ops), small Transformer (MultiHeadAttention +
LayerNormalization), TCN (dilated causal Conv1D).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgetqs.model.card import RolloutSpec

STANDINS = {
    # name: (window, features, patch, output_rank)
    "mlp": (8, 6, 1, 2),
    "gru": (8, 3, 1, 3),
    "transformer": (12, 4, 2, 3),
    "tcn": (16, 3, 1, 3),
    # ops no zoo model uses yet: depthwise conv (multiplier 2), softmax gate, fp16 weights
    "depthwise_fp16": (10, 4, 1, 3),
}


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tf_keras as keras

    return keras


def _mlp(keras, window, features, patch):
    inp = keras.Input((window, features), batch_size=1)
    h = keras.layers.Flatten()(inp)
    h = keras.layers.Dense(32, activation="tanh")(h)
    r = keras.layers.Dense(32, activation="gelu")(h)
    h = keras.layers.Add()([h, r])
    r = keras.layers.Dense(32, activation="relu")(h)
    h = keras.layers.Add()([h, r])
    out = keras.layers.Dense(features)(h)
    last = keras.layers.Lambda(lambda x: x[:, -1, :])(inp)
    return keras.Model(inp, keras.layers.Add()([last, out]))


def _gru(keras, window, features, patch):
    inp = keras.Input((window, features), batch_size=1)
    h = keras.layers.GRU(24, unroll=True)(inp)
    out = keras.layers.Dense(patch * features)(h)
    return keras.Model(inp, keras.layers.Reshape((patch, features))(out))


def _transformer(keras, window, features, patch):
    inp = keras.Input((window, features), batch_size=1)
    h = keras.layers.Dense(16)(inp)
    a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(h, h, use_causal_mask=True)
    h = keras.layers.LayerNormalization()(h + a)
    f = keras.layers.Dense(32, activation="gelu")(h)
    f = keras.layers.Dense(16)(f)
    h = keras.layers.LayerNormalization()(h + f)
    h = keras.layers.Lambda(lambda x: x[:, -1, :])(h)
    h = keras.layers.Concatenate()([h, keras.layers.Flatten()(inp[:, -2:, :])])
    out = keras.layers.Dense(patch * features)(h)
    return keras.Model(inp, keras.layers.Reshape((patch, features))(out))


def _tcn(keras, window, features, patch):
    inp = keras.Input((window, features), batch_size=1)
    h = keras.layers.Conv1D(12, 2, padding="causal", dilation_rate=1, activation="relu")(inp)
    h = keras.layers.Conv1D(12, 2, padding="causal", dilation_rate=2, activation="relu")(h)
    h = keras.layers.Conv1D(12, 2, padding="causal", dilation_rate=4, activation="relu")(h)
    h = keras.layers.Lambda(lambda x: x[:, -1:, :])(h)
    out = keras.layers.Dense(features)(h)
    return keras.Model(inp, out)


def _depthwise(keras, window, features, patch):
    inp = keras.Input((window, features), batch_size=1)
    h = keras.layers.DepthwiseConv1D(3, depth_multiplier=2, padding="same", activation="relu6")(inp)
    h = keras.layers.Conv1D(8, 1)(h)
    gate = keras.layers.Softmax(axis=-1)(h)
    h = keras.layers.Multiply()([h, gate])
    h = keras.layers.GlobalAveragePooling1D()(h)
    out = keras.layers.Dense(features, activation="tanh")(h)
    return keras.Model(inp, keras.layers.Reshape((1, features))(out))


_BUILDERS = {"mlp": _mlp, "gru": _gru, "transformer": _transformer, "tcn": _tcn, "depthwise_fp16": _depthwise}


def build_standin(name: str, out_dir: Path, seed: int = 0) -> tuple[Path, RolloutSpec]:
    """Convert stand-in ``name`` to ``out_dir/name.tflite`` (cached) and return its path and spec."""
    window, features, patch, rank = STANDINS[name]
    spec = RolloutSpec(window=window, features=features, patch=patch, output_rank=rank)
    path = Path(out_dir) / f"{name}.tflite"
    if path.exists():
        return path, spec
    keras = _keras()
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = _BUILDERS[name](keras, window, features, patch)
    # Scale weights down so rollouts stay bounded but nontrivial.
    scale = 0.5 if name == "mlp" else 0.9
    for layer in model.layers:
        layer.set_weights([w * scale for w in layer.get_weights()])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if name.endswith("_fp16"):  # weights stored as fp16, widened by DEQUANTIZE ops in the graph
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(converter.convert())
    tmp.rename(path)
    return path, spec


if __name__ == "__main__":  # inspect the op mix: python tests/engine/standin_models.py DIR
    import sys

    from edgetqs.model.tflite_graph import TFLiteGraph

    for name in STANDINS:
        p, _ = build_standin(name, Path(sys.argv[1]))
        g = TFLiteGraph.load(p)
        print(name, g.input_shapes(), g.output_shapes(), sorted({op.opcode for op in g.operators}))
