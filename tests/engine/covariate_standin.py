"""A small Keras forecaster with a covariate: it reads 3 features per step and predicts 2.

The third input column (or whichever the spec names) is given, not predicted:
a control signal the rollout feeds in from data. Converted with
tf.lite.TFLiteConverter to input [1, 8, 3], output [1, 1, 2].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

WINDOW, FEATURES, OUTPUTS = 8, 3, 2
SPEC = f"window={WINDOW},features={FEATURES},covariates=1"


def write_covariate_series(path: Path, steps: int = 200) -> str:
    """A CSV of two smooth states and, in the last column, a square-wave forcing of its own period."""
    t = np.arange(steps, dtype=np.float32)
    series = np.stack([np.sin(0.11 * t), np.cos(0.07 * t), 2.0 * np.sign(np.sin(0.3 * t))], axis=1)
    np.savetxt(path, series, delimiter=",", header="x,y,forcing", comments="")
    return str(path)


def build_covariate_standin(out_dir: Path, seed: int = 0) -> Path:
    path = Path(out_dir) / "covariate_mlp.tflite"
    if path.exists():
        return path
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((WINDOW, FEATURES), batch_size=1)
    h = keras.layers.Dense(16, activation="tanh")(keras.layers.Flatten()(inp))
    h = keras.layers.Dense(16, activation="tanh")(h)
    out = keras.layers.Dense(OUTPUTS)(h)
    model = keras.Model(inp, keras.layers.Reshape((1, OUTPUTS))(out))
    for layer in model.layers:
        layer.set_weights([0.8 * w for w in layer.get_weights()])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    tmp.rename(path)
    return path
