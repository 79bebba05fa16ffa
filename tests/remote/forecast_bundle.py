"""A small real forecaster bundle for the runner/validate/report tests.

A Keras MLP (window 8, 3 features, tanh output so rollouts stay bounded) is
converted to a float32 TFLite (the float reference), then quantized by AI
Edge Quantizer to int8 per-channel weights in dynamic mode, the way the
converter does for an int8 plan (the bundle's model). tflite-runtime 2.14.0
runs that model but computes it wrongly (capability matrix), which is what the
wrong-numbers tests rely on. Context windows come
from the float model's own free-running trajectory after a burn-in from noise
(the data-free path of METHOD.md §2); every reference is a rollout on this
host's LiteRT with the runner's own rollout code.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

WINDOW, FEATURES, HORIZON, CONTEXTS, PROBES = 8, 3, 12, 3, 4  # HORIZON: steps (model calls x patch)


@dataclass
class ForecasterFiles:
    float_tflite: bytes
    int8_tflite: bytes
    output_bias: np.ndarray  # float32 bytes of this vector sit in both files: the tamper target
    patch: int = 1  # steps per model call: output [1, features] for 1, else [1, patch, features]


@functools.lru_cache(maxsize=None)  # one TensorFlow conversion per model and test session
def build_forecaster(patch: int = 1) -> ForecasterFiles:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(7)
    inputs = tf.keras.Input((WINDOW, FEATURES), batch_size=1)
    x = tf.keras.layers.Flatten()(inputs)
    x = tf.keras.layers.Dense(64, activation="tanh")(x)
    output_layer = tf.keras.layers.Dense(FEATURES * patch, activation="tanh")
    outputs = output_layer(x)
    if patch > 1:
        outputs = tf.keras.layers.Reshape((patch, FEATURES))(outputs)
    model = tf.keras.Model(inputs, outputs)
    kernel, _ = output_layer.get_weights()
    bias = np.tile(np.array([0.31, -0.27, 0.19], np.float32), patch)
    output_layer.set_weights([kernel * 2.0, bias])  # stronger feedback: rollouts move, not settle

    float_tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    return ForecasterFiles(float_tflite, aeq_int8_dynamic(float_tflite), bias, patch)


@functools.lru_cache(maxsize=None)
def wide_float_forecaster(width: int, seed: int = 11) -> bytes:
    """Flatten -> Dense(width) -> Dense(width) -> Dense(3), tanh, random weights:
    a float32 .tflite of ~4 x width^2 bytes, for memory and large-bundle tests
    (its rollouts stay bounded; it is not trained, so it forecasts nothing)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((WINDOW, FEATURES), batch_size=1)
    x = tf.keras.layers.Flatten()(inputs)
    x = tf.keras.layers.Dense(width, activation="tanh")(x)
    x = tf.keras.layers.Dense(width, activation="tanh")(x)
    outputs = tf.keras.layers.Dense(FEATURES, activation="tanh")(x)
    return tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inputs, outputs)).convert()


def aeq_int8_dynamic(float_tflite: bytes) -> bytes:
    from ai_edge_quantizer import quantizer

    from edgetqs.quant.aeq import op_config
    from edgetqs.quant.formats import get_format

    config, algorithm = op_config(get_format("int8"), "dynamic")
    q = quantizer.Quantizer(bytearray(float_tflite))
    q.update_quantization_recipe(regex=".*", operation_name="FULLY_CONNECTED", op_config=config,
                                 algorithm_key=algorithm)
    return bytes(q.quantize().quantized_model)


def _rollouts(model_bytes: bytes, contexts: np.ndarray, steps: int, patch: int) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    from edgetqs.remote import runner

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    model = runner.Model(interpreter)
    return np.stack([runner.rollout(model, c, steps, patch)[0] for c in contexts]).astype(np.float32)


def write_forecast_bundle(out: Path, files: ForecasterFiles, *, model_bytes: bytes | None = None,
                          thresholds: dict | None = None, seed: int = 0) -> Path:
    from ai_edge_litert.interpreter import Interpreter

    from edgetqs.bundle import write_bundle
    from edgetqs.remote import runner

    model_bytes = files.int8_tflite if model_bytes is None else model_bytes
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-1, 1, (CONTEXTS, WINDOW, FEATURES)).astype(np.float32)
    burn_in = _rollouts(files.float_tflite, noise, 40, files.patch)
    contexts = burn_in[:, -WINDOW:]
    probes_x = (contexts[rng.integers(0, CONTEXTS, PROBES)]
                + 0.05 * rng.standard_normal((PROBES, WINDOW, FEATURES))).astype(np.float32)
    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    model = runner.Model(interpreter)
    probes_y = np.stack([model(x) for x in probes_x])
    return write_bundle(
        out, model=model_bytes,
        rollout={"window": WINDOW, "features": FEATURES, "patch": files.patch, "output_rank": 2 if files.patch == 1 else 3},
        probes_x=probes_x, probes_y=probes_y, contexts=contexts, horizon=HORIZON // files.patch,  # model calls
        reference_float=_rollouts(files.float_tflite, contexts, HORIZON, files.patch),
        reference_host=_rollouts(model_bytes, contexts, HORIZON, files.patch),
        thresholds=thresholds, extra={"made_by": "tests/remote/forecast_bundle.py"},
    )


def tamper_output_bias(model_file: Path, files: ForecasterFiles, shift: float = 0.5) -> None:
    """Change the model's output bias in place, as a bad copy or a bad runtime port would."""
    data = model_file.read_bytes()
    needle = files.output_bias.astype("<f4").tobytes()  # patch 1: the 3-vector is unique in the file
    assert data.count(needle) == 1, "the output bias must sit exactly once in the model file"
    model_file.write_bytes(data.replace(needle, (files.output_bias + shift).astype("<f4").tobytes()))
