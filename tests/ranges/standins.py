"""Small Keras forecasters converted to float TFLite, standing in for the zoo.

Each takes ``[batch, window, features]`` and returns ``[batch, features]``
(one step), so rollouts append the output and drop the oldest step. They are
trained for a few epochs on a noisy sine system so that weights are not the
random initialisation (the estimator's Gaussian assumption is easy there).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

WINDOW = 16
FEATURES = 3


def system_trajectory(steps: int, seed: int = 0) -> np.ndarray:
    """A damped-free 3-feature oscillator with slowly drifting phases: [steps, 3]."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps) * 0.2
    phase = rng.uniform(0, 2 * np.pi, 3)
    x = np.stack([np.sin(t + phase[0]), np.cos(0.7 * t + phase[1]), 0.5 * np.sin(1.3 * t + phase[2])], axis=1)
    return (x + 0.02 * rng.standard_normal(x.shape)).astype(np.float32)


def training_windows(count: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    traj = system_trajectory(count + WINDOW + 1, seed)
    x = np.stack([traj[i : i + WINDOW] for i in range(count)])
    y = traj[WINDOW : WINDOW + count]
    return x, y


def _mlp(keras):
    inp = keras.Input((WINDOW, FEATURES), batch_size=1)
    h = keras.layers.Flatten()(inp)
    h = keras.layers.Dense(32, activation="relu")(h)
    h = keras.layers.Dense(32, activation="tanh")(h)
    return keras.Model(inp, keras.layers.Dense(FEATURES)(h))


def _tcn(keras):
    inp = keras.Input((WINDOW, FEATURES), batch_size=1)
    h = keras.layers.Conv1D(16, 3, padding="causal", activation="relu")(inp)
    h = keras.layers.Conv1D(16, 3, padding="causal", dilation_rate=2, activation="relu")(h)
    h = keras.layers.Flatten()(h[:, -4:, :])
    return keras.Model(inp, keras.layers.Dense(FEATURES)(h))


def _gru(keras):
    inp = keras.Input((WINDOW, FEATURES), batch_size=1)
    h = keras.layers.GRU(16, unroll=True)(inp)
    return keras.Model(inp, keras.layers.Dense(FEATURES)(h))


def _attention(keras):
    inp = keras.Input((WINDOW, FEATURES), batch_size=1)
    h = keras.layers.Dense(16)(inp)
    a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(h, h)
    h = keras.layers.LayerNormalization()(h + a)
    f = keras.layers.Dense(32, activation="gelu")(h)
    h = keras.layers.LayerNormalization()(h + keras.layers.Dense(16)(f))
    return keras.Model(inp, keras.layers.Dense(FEATURES)(h[:, -1, :]))


BUILDERS = {"mlp": _mlp, "tcn": _tcn, "gru": _gru, "attention": _attention}


def build_tflite(name: str, out_dir: Path, epochs: int = 3) -> Path:
    """Train the stand-in briefly and write its float .tflite; cached by path."""
    path = Path(out_dir) / f"{name}.tflite"
    if path.exists():
        return path
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(0)
    model = BUILDERS[name](keras)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    x, y = training_windows()
    model.fit(x, y, batch_size=1, epochs=epochs, verbose=0, shuffle=False)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    raw = converter.convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(raw)
    tmp.rename(path)
    return path


def build_gaussian_dense(out_dir: Path, positions: int = 256, features: int = 16, hidden: int = 32) -> Path:
    """Two Dense layers with i.i.d. Gaussian weights applied at every position: the
    surrogate's own assumption, for checking nominal coverage. [1, P, F] -> [1, P, F]."""
    path = Path(out_dir) / "gaussian_dense.tflite"
    if path.exists():
        return path
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(1)
    inp = keras.Input((positions, features), batch_size=1)
    init = keras.initializers.RandomNormal(mean=0.05, stddev=0.2)
    h = keras.layers.Dense(hidden, kernel_initializer=init, bias_initializer="zeros")(inp)
    out = keras.layers.Dense(features, kernel_initializer=init, bias_initializer="zeros")(h)
    raw = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, out)).convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path
