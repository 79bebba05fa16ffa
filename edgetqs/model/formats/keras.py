"""Keras ``.keras`` files (model.save())."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.formats.base import Converted, fixed_input_shape, one_input_one_output, random_window
from edgetqs.model.formats.savedmodel import tflite_from_savedmodel_dir
from edgetqs.model.layers import SourceNames
from edgetqs.model.quiet import import_tensorflow_quietly, quiet_tensorflow

_KERNEL_NAMES = ("kernel", "embeddings", "depthwise_kernel")


def source_names(model) -> SourceNames:
    """Layer names, and each weight matrix with a readable unit name ('block_1_fc1',
    'block_1_attention/query'; a layer with several matrices names each: 'gru/kernel',
    'gru/recurrent_kernel')."""
    layers = {layer.name for layer in model._flatten_layers(include_self=False, recursive=True)}
    paths = []
    for variable in model.weights:
        if len(variable.shape) < 2:
            continue  # biases and norms: they join their layer's main weight
        parts = variable.path.split("/")
        while len(parts) > 1 and parts[0] not in layers:
            parts = parts[1:]  # the model's own name scope
        parts = [p for p in parts if not p.endswith("_cell")]  # gru/gru_cell/kernel -> gru/kernel
        paths.append((parts, np.asarray(variable)))
    matrices_per_layer = Counter("/".join(parts[:-1]) for parts, _ in paths if "bias" not in parts[-1])
    weights = []
    for parts, values in paths:
        alone = matrices_per_layer["/".join(parts[:-1])] == 1
        if alone and len(parts) > 1 and parts[-1] in _KERNEL_NAMES:
            parts = parts[:-1]
        weights.append(("/".join(parts), values))
    return SourceNames(layers, weights)


def load_keras(path: Path):
    import_tensorflow_quietly()
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise EdgeTQSError(f"{path} is not a readable Keras model ({type(exc).__name__}: {str(exc)[:200]})",
                           "pass a .keras file saved with model.save(), or another supported format") from exc


def convert(path: Path, rollout: RolloutSpec | None) -> Converted:
    tf = import_tensorflow_quietly()
    model = load_keras(path)
    one_input_one_output(path, len(model.inputs), len(model.outputs),
                         "an autoregressive forecaster needs exactly one input window and one output")
    shape = fixed_input_shape(model.inputs[0].shape, rollout, path)
    window = random_window(shape)
    expected = np.asarray(model(window, training=False))
    with tempfile.TemporaryDirectory() as tmp:
        with quiet_tensorflow():
            model.export(tmp, format="tf_saved_model", input_signature=[tf.TensorSpec(shape, tf.float32)], verbose=False)
        tflite = tflite_from_savedmodel_dir(Path(tmp), path)
    return Converted(tflite, source_names(model), (window, expected))
