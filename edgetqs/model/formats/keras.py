"""Keras ``.keras`` files (model.save()).

Recurrent layers saved with Keras' default ``unroll=False`` convert to WHILE
loops, which the engine, the quantizer and builtin-only boards cannot take.
The window is fixed at intake, so such layers (GRU, LSTM, SimpleRNN, stacked,
inside Bidirectional, with return_sequences) are cloned with ``unroll=True``
and the source's weights; the conversion is still checked against the
*original* model. Each step reads the same kernel constant, so the quantizer
sees one weight tensor per kernel.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import KERAS_UNROLLED, TFLITE_CONVERTER, RolloutSpec
from edgetqs.model.compact import compact_tensor_names
from edgetqs.model.formats.base import Converted, fixed_input_shape, one_input_one_output, random_window
from edgetqs.model.formats.savedmodel import tflite_from_savedmodel_dir
from edgetqs.model.layers import SourceNames
from edgetqs.model.memory import release_freed_memory
from edgetqs.model.quiet import import_tensorflow_quietly, quiet_tensorflow

_KERNEL_NAMES = ("kernel", "embeddings", "depthwise_kernel")


def source_names(model) -> SourceNames:
    """Layer names, and each weight matrix with a readable unit name ('block_1_fc1',
    'block_1_attention/query'; a layer with several matrices names each: 'gru/kernel',
    'gru/recurrent_kernel'). The values are read one variable at a time (SourceNames keeps a
    signature of each, not a copy)."""
    layers = {layer.name for layer in model._flatten_layers(include_self=False, recursive=True)}
    paths = []
    for variable in model.weights:
        if len(variable.shape) < 2:
            continue  # biases and norms: they join their layer's main weight
        parts = variable.path.split("/")
        while len(parts) > 1 and parts[0] not in layers:
            parts = parts[1:]  # the model's own name scope
        parts = [p for p in parts if not p.endswith("_cell")]  # gru/gru_cell/kernel -> gru/kernel
        paths.append((parts, variable))
    matrices_per_layer = Counter("/".join(parts[:-1]) for parts, _ in paths if "bias" not in parts[-1])

    def weights():
        for parts, variable in paths:
            alone = matrices_per_layer["/".join(parts[:-1])] == 1
            if alone and len(parts) > 1 and parts[-1] in _KERNEL_NAMES:
                parts = parts[:-1]
            yield "/".join(parts), np.asarray(variable)

    return SourceNames(layers, weights())


def load_keras(path: Path):
    import_tensorflow_quietly()
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise EdgeTQSError(f"{path} is not a readable Keras model ({type(exc).__name__}: {str(exc)[:200]})",
                           "pass a .keras file saved with model.save(), or another supported format") from exc


def _set_unroll(config):
    """Every ``unroll: False`` in a layer config (nested: Bidirectional's forward and backward layers) -> True.
    Returns whether anything changed."""
    changed = False
    if isinstance(config, dict):
        if config.get("unroll") is False:
            config["unroll"], changed = True, True
        for value in config.values():
            changed |= _set_unroll(value)
    elif isinstance(config, list):
        for value in config:
            changed |= _set_unroll(value)
    return changed


def unrolled(model, shape: list[int]):
    """``model`` with every recurrent layer unrolled over the fixed ``shape`` [1, window, features],
    or None when it has no rolled recurrent layer."""
    import keras

    if not any(_set_unroll(layer.get_config()) for layer in model._flatten_layers(include_self=False, recursive=True)):
        return None
    found = []

    def clone(layer):
        if isinstance(layer, keras.Model):
            inner = unrolled(layer, [1, *layer.inputs[0].shape[1:]])
            found.append(inner is not None)
            return inner if inner is not None else layer
        config = layer.get_config()
        if not _set_unroll(config):
            return layer.__class__.from_config(layer.get_config())
        found.append(True)
        return layer.__class__.from_config(config)

    inputs = keras.Input(batch_shape=tuple(shape))
    try:
        copy = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone)
    except Exception as exc:  # subclassed models cannot be cloned layer by layer
        raise EdgeTQSError(f"cannot rebuild {model.name} with its recurrent layers unrolled ({type(exc).__name__}: "
                           f"{str(exc)[:200]})", "save the model with unroll=True on its recurrent layers, "
                           "or build it as a functional/Sequential model") from exc
    if not any(found):
        return None
    copy.set_weights(model.get_weights())
    return copy


def convert(path: Path, rollout: RolloutSpec | None) -> Converted:
    tf = import_tensorflow_quietly()
    model = load_keras(path)
    one_input_one_output(path, len(model.inputs), len(model.outputs),
                         "an autoregressive forecaster needs exactly one input window and one output")
    shape = fixed_input_shape(model.inputs[0].shape, rollout, path)
    window = random_window(shape)
    expected = np.asarray(model(window, training=False))
    names = source_names(model)
    flat = unrolled(model, shape)
    with tempfile.TemporaryDirectory() as tmp:
        with quiet_tensorflow():
            (flat or model).export(tmp, format="tf_saved_model", input_signature=[tf.TensorSpec(shape, tf.float32)],
                                   verbose=False)
        float_bytes = 4 * model.count_params()
        del model  # the converter reads the SavedModel: the Keras model's weights need not be alive beside its copies
        rebuilt, flat = flat is not None, None
        release_freed_memory(float_bytes)
        tflite = tflite_from_savedmodel_dir(Path(tmp), path, float_bytes)
    release_freed_memory(float_bytes)  # the converter's intermediates, before intake reads and verifies the result
    if not rebuilt:
        return Converted(tflite, names, (window, expected), TFLITE_CONVERTER)
    return Converted(compact_tensor_names(tflite), names, (window, expected), KERAS_UNROLLED,
                     f"rolled recurrent layers (unroll=False) convert to WHILE loops; the window is fixed at "
                     f"{shape[1]} steps")
