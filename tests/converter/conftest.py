"""Fixtures for the converter and bundle tests: tiny forecasters as float TFLite.

Each stand-in model has the canonical shape (one input [1, window, features],
one output [1, features]) so it can be rolled out. They are built once per
session with Keras and converted by the TFLite converter; that is the same
path the zoo and intake take for Keras models.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

WINDOW, FEATURES = 8, 4


def _keras_model(kind: str):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    inputs = tf.keras.Input((WINDOW, FEATURES), batch_size=1)
    if kind == "mlp":
        x = layers.Flatten()(inputs)
        x = layers.Dense(64, activation="tanh")(x)
        x = layers.Dense(64, activation="tanh")(x)
    elif kind == "conv1d":
        x = layers.Conv1D(32, 3, activation="relu")(inputs)
        x = layers.Flatten()(x)
        x = layers.Dense(32, activation="tanh")(x)
    elif kind == "gru":
        x = layers.GRU(32, unroll=True)(inputs)
    elif kind == "attention":
        x = layers.Dense(32)(inputs)
        x = layers.MultiHeadAttention(num_heads=2, key_dim=16)(x, x)
        x = layers.Flatten()(x)
    else:
        raise ValueError(kind)
    outputs = layers.Dense(FEATURES)(x)
    return tf.keras.Model(inputs, outputs, name=kind)


def float_tflite_bytes(kind: str) -> bytes:
    import tensorflow as tf

    model = _keras_model(kind)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return converter.convert()


@pytest.fixture(scope="session")
def stand_in_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stand_ins")


@pytest.fixture(scope="session")
def mlp_tflite(stand_in_dir) -> Path:
    path = stand_in_dir / "mlp.tflite"
    if not path.exists():
        path.write_bytes(float_tflite_bytes("mlp"))
    return path


@pytest.fixture(scope="session")
def stand_in_tflite(stand_in_dir):
    """kind -> path of a float stand-in .tflite, built on first use."""

    def make(kind: str) -> Path:
        path = stand_in_dir / f"{kind}.tflite"
        if not path.exists():
            path.write_bytes(float_tflite_bytes(kind))
        return path

    return make


@pytest.fixture
def rng():
    return np.random.default_rng(0)
