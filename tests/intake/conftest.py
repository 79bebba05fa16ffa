"""Small source models in every intake format, built once per session.

They are untrained (seeded random weights): intake only has to preserve what
the source computes. Everything is written under a session temp dir, and intake
caches into a temp EDGETQS_CACHE so tests leave nothing behind.
"""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

WINDOW, FEATURES = 16, 3


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EDGETQS_CACHE", str(tmp_path_factory.getbasetemp() / "intake-cache"))


def _keras_forecaster():
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((WINDOW, FEATURES), name="window")
    h = keras.layers.Flatten()(inputs)
    # Random biases: the converter drops all-zero ones, and real models have them.
    dense = dict(bias_initializer="random_normal")
    h = keras.layers.Dense(24, activation="tanh", name="input_proj", **dense)(h)
    h = keras.layers.Dense(24, activation="relu", name="block_1_fc1", **dense)(h)
    outputs = keras.layers.Dense(FEATURES, name="output_proj", **dense)(h)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="session")
def keras_model():
    return _keras_forecaster()


@pytest.fixture(scope="session")
def keras_path(tmp_path_factory, keras_model):
    path = tmp_path_factory.mktemp("keras") / "forecaster.keras"
    keras_model.save(path)
    return path


@pytest.fixture(scope="session")
def savedmodel_path(tmp_path_factory, keras_model):
    path = tmp_path_factory.mktemp("savedmodel") / "forecaster"
    keras_model.export(str(path), format="tf_saved_model", verbose=False)
    return path


@pytest.fixture(scope="session")
def torch_onnx_path(tmp_path_factory):
    """A torch model over [batch, window, features] with a Conv1d inside (which wants NCW),
    exported by torch.onnx: the layout case onnx2tf gets wrong by default."""
    import torch

    torch.manual_seed(0)

    class Forecaster(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(FEATURES, 8, kernel_size=3, padding=1)
            self.head = torch.nn.Linear(8 * WINDOW, FEATURES)

        def forward(self, window):
            h = torch.relu(self.conv(window.transpose(1, 2)))
            return window[:, -1, :] + self.head(h.flatten(1))

    path = tmp_path_factory.mktemp("onnx") / "forecaster.onnx"
    torch.onnx.export(Forecaster().eval(), (torch.zeros(1, WINDOW, FEATURES),), str(path),
                      input_names=["window"], output_names=["next"], dynamo=False, opset_version=17)
    return path


@pytest.fixture(scope="session")
def float_tflite_path(tmp_path_factory, keras_model):
    """A float .tflite made by the plain TFLite converter (not by edgetqs)."""
    import tensorflow as tf

    directory = tmp_path_factory.mktemp("tflite")
    keras_model.export(str(directory / "sm"), format="tf_saved_model", verbose=False,
                       input_signature=[tf.TensorSpec([1, WINDOW, FEATURES], tf.float32)])
    path = directory / "forecaster.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(directory / "sm")).convert())
    return path


@pytest.fixture
def window():
    return np.random.default_rng(42).standard_normal((1, WINDOW, FEATURES)).astype(np.float32)
