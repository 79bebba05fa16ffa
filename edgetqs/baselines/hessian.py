"""HAWQ-style sensitivity: the mean Hessian trace of the training loss per unit.

Hutchinson's estimator, ``tr(H_l) = E[z^T H_l z]`` with Rademacher ``z``, the
Hessian-vector product by forward-over-backward TensorFlow gradients on the
Keras source model the zoo trained (kept beside the canonical model). The
trace is divided by the unit's parameter count, as HAWQ-v2 does.

A unit ``a/b`` (the card's name) owns the trainable variables of Keras layer
``a`` whose path contains ``b`` (``gru/kernel``, ``block_1_attention/key``);
a plain ``a`` owns all of layer ``a``'s variables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError

DEFAULT_SAMPLES = 8  # Rademacher draws; HAWQ uses a few tens, a ranking settles with fewer
DEFAULT_BATCH = 256  # training windows per Hessian-vector product


def unit_variables(model, unit: str) -> list:
    layer, _, part = unit.partition("/")
    found = []
    for v in model.trainable_variables:
        segments = v.path.split("/")
        if segments[0] == layer and (not part or part in segments[1:] or any(part in s for s in segments[1:])):
            found.append(v)
    return found


def hessian_traces(keras_path: str | Path | None, x: np.ndarray, y: np.ndarray, units: list[str],
                   samples: int = DEFAULT_SAMPLES, batch: int = DEFAULT_BATCH, seed: int = 0) -> dict[str, float]:
    """Unit -> mean Hessian trace per parameter of the MSE training loss at ``x -> y``."""
    if keras_path is None or not Path(keras_path).exists():
        raise EdgeTQSError(f"no Keras source model at {keras_path}: the Hessian baseline needs TF gradients",
                           "only Keras-trained zoo models carry one; skip this baseline for ONNX/torch models")
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(str(keras_path), compile=False, safe_mode=False)
    owned = {u: unit_variables(model, u) for u in units}
    empty = [u for u, vs in owned.items() if not vs]
    if empty:
        raise EdgeTQSError(f"no Keras variables match unit(s) {', '.join(empty)}",
                           "the card's layer names must be Keras layer names")
    variables = [v for u in units for v in owned[u]]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x), size=min(batch, len(x)), replace=False)
    xb, yb = tf.constant(x[pick]), tf.constant(y[pick].reshape((len(pick),) + tuple(model.output_shape[1:])))
    totals = {id(v): 0.0 for v in variables}
    for _ in range(samples):
        zs = [tf.constant(rng.choice([-1.0, 1.0], size=v.shape).astype(np.float32)) for v in variables]
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = tf.reduce_mean(tf.square(model(xb, training=False) - yb))
            grads = inner.gradient(loss, variables)
            projection = tf.add_n([tf.reduce_sum(g * z) for g, z in zip(grads, zs)])
        hz = outer.gradient(projection, variables)
        for v, z, h in zip(variables, zs, hz):
            totals[id(v)] += float(tf.reduce_sum(z * h)) / samples if h is not None else 0.0
    result = {}
    for u, vs in owned.items():
        params = sum(int(np.prod(v.shape)) for v in vs)
        # a negative estimate (noise at a near-flat direction) means "insensitive", not "negative"
        result[u] = max(sum(totals[id(v)] for v in vs) / max(params, 1), 0.0)
    return result
