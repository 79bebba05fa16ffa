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
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME

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


# -- canonical models and plans ----------------------------------------------------

@pytest.fixture(scope="session")
def zoo_model():
    """name -> the zoo's CanonicalModel (built once, cached in $EDGETQS_CACHE)."""
    from edgetqs import zoo

    built = {}

    def get(name: str):
        if name not in built:
            built[name] = zoo.build(name)
        return built[name]

    return get


@pytest.fixture(scope="session")
def canonical_stand_in(stand_in_tflite):
    """kind -> CanonicalModel of a stand-in float .tflite, through model intake (the float TFLite input path)."""
    from edgetqs.model.intake import load_model

    return lambda kind: load_model(stand_in_tflite(kind))


def make_plan(canonical, formats, mode: str = "dynamic", predicted: bool = True) -> dict:
    """A plan giving layer i the format ``formats[i % len(formats)]``, priced by the planner's byte costs.

    ``predicted`` adds the planner's predicted model size, which verification
    checks the artifact against (within 1%).
    """
    from edgetqs.planner import costs
    from edgetqs.quant.formats import FORMATS
    from edgetqs.planner.planfile import Assignment, Plan

    graph = canonical.graph
    tensors = costs.weight_tensors(graph)
    assignments = []
    for i, layer in enumerate(canonical.card.layers):
        fmt = formats[i % len(formats)]
        size = sum(costs.tensor_bytes(tensors[n], FORMATS[fmt], mode) for n in layer.weight_tensors)
        assignments.append(Assignment(layer.name, list(layer.weight_tensors), fmt, size, 0.0))
    planned = {n for a in assignments for n in a.weight_tensors}
    outside = sum(costs.tensor_bytes(t, FORMATS["fp32"], mode) for n, t in tensors.items() if n not in planned)
    model_bytes = costs.base_bytes(graph, tensors) + outside + sum(a.bytes for a in assignments)
    if mode == "static" and predicted:  # what the planner predicts for static plans (AEQ prices the plan)
        from edgetqs.planner.plan import static_calibration_for

        model_bytes = costs.static_model_bytes(graph, {n: a.format for a in assignments for n in a.weight_tensors},
                                               static_calibration_for(canonical))
    plan = Plan(model={"name": canonical.card.name, "tflite_sha256": graph.sha256}, scores_sha256="",
                target=None, runtime=DEFAULT_HOST_RUNTIME.spec, budget_bytes=0, allocator="test", mode=mode,
                assignments=assignments, predicted={"model_bytes": model_bytes} if predicted else {})
    return plan.to_dict()


@pytest.fixture(scope="session")
def plan_for():
    return make_plan
