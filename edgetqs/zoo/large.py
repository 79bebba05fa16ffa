"""The zoo's large-model tier: forecasters at the size users put on boards, built on demand.

    from edgetqs.zoo import large
    model = large.build("patchtf-118m")      # CanonicalModel, cached like the zoo

Two architectures, each in a full size and a tiny size (same builder, seconds
to build, for tests):

- ``patch_transformer``: the shape of a decoder-style time-series foundation
  model (TimesFM, Chronos-Bolt): the window is cut into patches, each patch
  is one token (a causal convolution over tokens embeds it with its local
  order), pre-LN blocks of multi-head attention + GELU feed-forward, a final
  norm, and the last token's head emits the next ``patch`` steps.
- ``deep_mlp``: a deep residual MLP on the flattened window.

The weights are NOT trained (a 100 M-parameter forecaster does not train in
minutes on two cores). They are *structured random* weights: Glorot kernels,
every residual branch's output projection scaled by ``gain_b / sqrt(2·blocks)``
with a per-block gain drawn log-uniformly from [1/4, 2] (seeded), so the blocks
differ in how much they matter, as a trained model's do; and the head is
bounded, ``x_next = 0.95·x_last + 0.1·tanh(head(body(window)))``, so a rollout
stays within max(|x_0|, 2) at every horizon. No forecast quality is ever
reported for these models (the card says ``trained: false``).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.files import move_into_place
from edgetqs.model.card import RolloutSpec

LARGE_VERSION = 1
HEAD_DECAY, HEAD_SCALE = 0.95, 0.1
GAIN_RANGE = (0.25, 2.0)


@dataclass(frozen=True)
class LargeEntry:
    name: str
    arch: str  # patch_transformer | deep_mlp
    window: int
    features: int
    patch: int  # output steps per model call
    options: dict = field(default_factory=dict, hash=False)
    seed: int = 0
    description: str = ""


ENTRIES = [
    LargeEntry("patchtf-118m", "patch_transformer", window=128, features=8, patch=16,
               options={"input_patch": 16, "dim": 640, "heads": 10, "blocks": 24, "ffn": 2560},
               description="patch Transformer, 24 pre-LN blocks, 8 tokens of 16 steps x 8 features (146 weighted units)"),
    LargeEntry("resmlp-23m", "deep_mlp", window=16, features=64, patch=1,
               options={"width": 1024, "blocks": 10},
               description="deep residual MLP, 10 blocks of width 1024 (22 weighted units)"),
    LargeEntry("patchtf-tiny", "patch_transformer", window=32, features=2, patch=4,
               options={"input_patch": 4, "dim": 32, "heads": 2, "blocks": 3, "ffn": 64},
               description="the patch Transformer's builder at test size (20 units)"),
    LargeEntry("resmlp-tiny", "deep_mlp", window=8, features=4, patch=1, options={"width": 48, "blocks": 4},
               description="the deep residual MLP's builder at test size (10 units)"),
]
BY_NAME = {e.name: e for e in ENTRIES}


def entry(name: str) -> LargeEntry:
    name = name.removeprefix("zoo:")
    if name not in BY_NAME:
        raise EdgeTQSError(f"there is no large-tier zoo model '{name}'", f"pick one of: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def model_dir(name: str) -> Path:
    from edgetqs.model.intake import cache_dir

    return cache_dir() / "zoo" / f"large-v{LARGE_VERSION}" / entry(name).name


def is_built(name: str) -> bool:
    directory = model_dir(name)
    return (directory / "model.tflite").exists() and (directory / "model.card.json").exists()


def build(name: str):
    """The large-tier model ``name`` as a CanonicalModel: built, converted by intake and cached once."""
    from edgetqs.zoo import build_once

    item = entry(name)
    return build_once(model_dir(item.name), lambda directory: _build_and_intake(item, directory))


def save_keras(item: LargeEntry, path: Path) -> None:
    """Build ``item``'s Keras model with its structured random weights and save it as .keras."""
    from edgetqs.model.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    keras.utils.set_random_seed(item.seed)
    builder = {"patch_transformer": patch_transformer, "deep_mlp": deep_mlp}[item.arch]
    model = builder(item.window, item.features, item.patch, name=item.name.replace("-", "_"), seed=item.seed,
                    **item.options)
    model.save(path)


def _build_and_intake(item: LargeEntry, directory: Path):
    from edgetqs.model.intake import canonicalize, open_canonical

    spec = RolloutSpec(window=item.window, features=item.features, patch=item.patch,
                       output_rank=2 if item.patch == 1 else 3)
    with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
        source = Path(tmp) / f"{item.name}.keras"
        save_keras(item, source)
        extra = {"arch": item.arch, "tier": "large", "large_version": LARGE_VERSION, "seed": item.seed,
                 "trained": False, "weights": "structured random (see edgetqs/zoo/large.py)", **item.options}
        staged = Path(tmp) / "canonical"
        canonicalize(source, "keras", staged, spec, name=item.name, source_label=f"zoo:{item.name}", extra=extra)
        move_into_place(staged, directory)
    return open_canonical(directory)


# -- builders -------------------------------------------------------------------
def block_gains(blocks: int, seed: int) -> np.ndarray:
    """Per-block residual gains, log-uniform in GAIN_RANGE, over sqrt(2·blocks) (GPT-2's depth scaling)."""
    rng = np.random.default_rng([seed, blocks])
    low, high = np.log(GAIN_RANGE[0]), np.log(GAIN_RANGE[1])
    return np.exp(rng.uniform(low, high, blocks)) / np.sqrt(2 * blocks)


def _scale_kernel(layer, gain: float) -> None:
    kernel, *rest = layer.get_weights()
    layer.set_weights([kernel * np.float32(gain), *rest])


def _bounded_head(keras, inputs, features_out, window: int, features: int, patch: int, name: str):
    """x_next = HEAD_DECAY * x_last + HEAD_SCALE * tanh(output_proj(features_out)), [B, patch, F] or [B, F]."""
    update = keras.layers.Dense(features * patch, activation="tanh", name="output_proj")(features_out)
    update = keras.layers.Rescaling(HEAD_SCALE, name="increment_scale")(update)
    last = keras.layers.Cropping1D((window - 1, 0), name="last_state_crop")(inputs)  # [B, 1, F]
    if patch == 1:
        update = keras.layers.Reshape((1, features), name="patch")(update)
    else:
        update = keras.layers.Reshape((patch, features), name="patch")(update)
    last = keras.layers.Rescaling(HEAD_DECAY, name="decay")(last)
    outputs = keras.layers.Add(name="next_state")([last, update])  # broadcasts [B, 1, F] over the patch
    if patch == 1:
        outputs = keras.layers.Reshape((features,), name="next_state_flat")(outputs)
    return keras.Model(inputs, outputs, name=name)


def patch_transformer(window: int, features: int, patch: int, input_patch: int = 16, dim: int = 640,
                      heads: int = 10, blocks: int = 24, ffn: int = 2560, name: str = "patch_transformer",
                      seed: int = 0):
    import keras

    if window % input_patch:
        raise EdgeTQSError(f"window {window} is not a multiple of the input patch {input_patch}",
                           "pick a window that the input patch divides")
    tokens = window // input_patch
    inputs = keras.Input((window, features), name="window")
    h = keras.layers.Reshape((tokens, input_patch * features), name="tokens")(inputs)
    h = keras.layers.Conv1D(dim, 3, padding="causal", name="input_proj")(h)
    residual_outputs = []
    for b in range(1, blocks + 1):
        a = keras.layers.LayerNormalization(name=f"block_{b}_norm1")(h)
        attention = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"block_{b}_attention")
        h = keras.layers.Add(name=f"block_{b}_add1")([h, attention(a, a)])
        f = keras.layers.LayerNormalization(name=f"block_{b}_norm2")(h)
        f = keras.layers.Dense(ffn, activation="gelu", name=f"block_{b}_ffn1")(f)
        ffn_out = keras.layers.Dense(dim, name=f"block_{b}_ffn2")
        h = keras.layers.Add(name=f"block_{b}_add2")([h, ffn_out(f)])
        residual_outputs.append((attention, ffn_out))
    h = keras.layers.LayerNormalization(name="final_norm")(h)
    h = keras.layers.Cropping1D((tokens - 1, 0), name="last_token_crop")(h)
    h = keras.layers.Reshape((dim,), name="last_token")(h)
    model = _bounded_head(keras, inputs, h, window, features, patch, name)
    for gain, (attention, ffn_out) in zip(block_gains(blocks, seed), residual_outputs):
        _scale_kernel(attention._output_dense, gain)
        _scale_kernel(ffn_out, gain)
    return model


def deep_mlp(window: int, features: int, patch: int, width: int = 1024, blocks: int = 10,
             name: str = "deep_mlp", seed: int = 0):
    import keras

    inputs = keras.Input((window, features), name="window")
    h = keras.layers.Flatten(name="flatten")(inputs)
    h = keras.layers.Dense(width, activation="relu", name="input_proj")(h)
    second = []
    for b in range(1, blocks + 1):
        a = keras.layers.Dense(width, activation="relu", name=f"block_{b}_fc1")(h)
        fc2 = keras.layers.Dense(width, name=f"block_{b}_fc2")
        h = keras.layers.Add(name=f"block_{b}_add")([h, fc2(a)])
        h = keras.layers.LayerNormalization(name=f"block_{b}_norm")(h)  # keeps the random body's scale fixed
        second.append(fc2)
    model = _bounded_head(keras, inputs, h, window, features, patch, name)
    for gain, fc2 in zip(block_gains(blocks, seed), second):
        _scale_kernel(fc2, gain)
    return model
