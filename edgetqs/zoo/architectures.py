"""Keras builders for the zoo's forecasters. Each maps a window [batch, W, F]
to the next state [batch, F] (or, with ``patch`` > 1, the next states
[batch, patch, F]) and adds the last state back (it learns the increment),
which makes short training give stable rollouts.

Layer names carry the block structure (input_proj, block_1_..., output_proj):
the model card's block detection reads them.
"""

from __future__ import annotations


def _last_state(keras, inputs, window: int, features: int, covariates: int = 0):
    """x[:, -1, :F-C] with Keras layers only (no Lambda: .keras files must load safely):
    the last state of the predicted features (covariates, the last C, are inputs only)."""
    cropped = keras.layers.Cropping1D((window - 1, 0), name="last_state_crop")(inputs)
    if not covariates:
        return keras.layers.Reshape((features,), name="last_state")(cropped)
    columns = keras.layers.Reshape((features, 1), name="last_state_columns")(cropped)
    predicted = keras.layers.Cropping1D((0, covariates), name="last_state_predicted")(columns)
    return keras.layers.Reshape((features - covariates,), name="last_state")(predicted)


def _finish(keras, inputs, features_out, window: int, features: int, name: str, increment_scale: float = 1.0,
            patch: int = 1, covariates: int = 0):
    if covariates and patch != 1:
        raise ValueError("zoo covariate models emit one step per call")
    update = keras.layers.Dense((features - covariates) * patch, name="output_proj")(features_out)
    if increment_scale != 1.0:
        # One step changes the state by far less than its spread: scaling the
        # learned increment to unit size lets Adam train the output layer well.
        update = keras.layers.Rescaling(increment_scale, name="increment_scale")(update)
    if patch == 1:
        last = _last_state(keras, inputs, window, features, covariates)
    else:  # [batch, patch, F] increments, each from the last state (ADD broadcasts [batch, 1, F])
        update = keras.layers.Reshape((patch, features), name="patch")(update)
        last = keras.layers.Cropping1D((window - 1, 0), name="last_state_crop")(inputs)
    outputs = keras.layers.Add(name="next_state")([last, update])
    return keras.Model(inputs, outputs, name=name)


def residual_mlp(window: int, features: int, width: int = 128, blocks: int = 2, increment_scale: float = 1.0,
                 name: str = "mlp", patch: int = 1, covariates: int = 0):
    import keras

    inputs = keras.Input((window, features), name="window")
    h = keras.layers.Flatten(name="flatten")(inputs)
    h = keras.layers.Dense(width, activation="relu", name="input_proj")(h)
    for b in range(1, blocks + 1):
        a = keras.layers.Dense(width, activation="relu", name=f"block_{b}_fc1")(h)
        a = keras.layers.Dense(width, name=f"block_{b}_fc2")(a)
        h = keras.layers.Add(name=f"block_{b}_add")([h, a])
        h = keras.layers.Activation("relu", name=f"block_{b}_relu")(h)
    return _finish(keras, inputs, h, window, features, name, increment_scale, patch, covariates)


def gru(window: int, features: int, units: int = 64, increment_scale: float = 1.0, name: str = "gru"):
    import keras

    inputs = keras.Input((window, features), name="window")
    # unroll=True: the TFLite graph stays flat ops (no WHILE loop) for the numba engine.
    h = keras.layers.GRU(units, unroll=True, name="gru")(inputs)
    return _finish(keras, inputs, h, window, features, name, increment_scale)


def lstm(window: int, features: int, units: int = 32, increment_scale: float = 1.0, name: str = "lstm"):
    """Saved with Keras' defaults (unroll=False, a WHILE loop): intake unrolls it, as it would a user's."""
    import keras

    inputs = keras.Input((window, features), name="window")
    h = keras.layers.LSTM(units, name="lstm")(inputs)
    return _finish(keras, inputs, h, window, features, name, increment_scale)


def transformer(window: int, features: int, dim: int = 32, heads: int = 2, blocks: int = 1, increment_scale: float = 1.0, name: str = "transformer"):
    import keras

    inputs = keras.Input((window, features), name="window")
    # A causal convolution as the input projection gives each token its local
    # order, so attention needs no separate position embedding.
    h = keras.layers.Conv1D(dim, 3, padding="causal", name="input_proj")(inputs)
    for b in range(1, blocks + 1):
        a = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"block_{b}_attention")(h, h)
        h = keras.layers.LayerNormalization(name=f"block_{b}_norm1")(keras.layers.Add(name=f"block_{b}_add1")([h, a]))
        f = keras.layers.Dense(2 * dim, activation="relu", name=f"block_{b}_ffn1")(h)
        f = keras.layers.Dense(dim, name=f"block_{b}_ffn2")(f)
        h = keras.layers.LayerNormalization(name=f"block_{b}_norm2")(keras.layers.Add(name=f"block_{b}_add2")([h, f]))
    h = keras.layers.Cropping1D((window - 1, 0), name="last_token_crop")(h)
    h = keras.layers.Reshape((dim,), name="last_token")(h)
    return _finish(keras, inputs, h, window, features, name, increment_scale)


def tcn(window: int, features: int, channels: int = 32, dilations=(1, 2, 4), increment_scale: float = 1.0, name: str = "tcn"):
    import keras

    inputs = keras.Input((window, features), name="window")
    h = keras.layers.Conv1D(channels, 1, name="input_proj")(inputs)
    for b, dilation in enumerate(dilations, start=1):
        a = keras.layers.Conv1D(channels, 3, dilation_rate=dilation, padding="causal", activation="relu",
                                name=f"block_{b}_conv1")(h)
        a = keras.layers.Conv1D(channels, 3, dilation_rate=dilation, padding="causal", name=f"block_{b}_conv2")(a)
        h = keras.layers.Activation("relu", name=f"block_{b}_relu")(keras.layers.Add(name=f"block_{b}_add")([h, a]))
    h = keras.layers.Cropping1D((window - 1, 0), name="last_step_crop")(h)
    h = keras.layers.Reshape((channels,), name="last_step")(h)
    return _finish(keras, inputs, h, window, features, name, increment_scale)


BUILDERS = {"mlp": residual_mlp, "gru": gru, "lstm": lstm, "transformer": transformer, "tcn": tcn}
