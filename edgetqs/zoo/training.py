"""Deterministic, fast training of the zoo's forecasters (seconds on 2 cores).

Keras models train with fixed seeds and TensorFlow op determinism; the ONNX
entry trains in torch (CPU, deterministic algorithms) and is exported with
torch.onnx, so intake meets a real exporter's graph.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgetqs.model.quiet import import_tensorflow_quietly
from edgetqs.zoo.architectures import BUILDERS
from edgetqs.zoo.data import SYSTEMS, system_data, training_pairs
from edgetqs.zoo.registry import ZooEntry

BATCH_SIZE = 64
# Keras pays a fixed cost per epoch: tiny data sets (sunspots has ~230 windows)
# train as fewer epochs over repeated data, the same number of gradient steps.
MIN_EPOCH_SAMPLES = 2048
LEARNING_RATE = 2e-3


def _make_tensorflow_deterministic(seed: int) -> None:
    tf = import_tensorflow_quietly()
    import keras

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    try:  # only possible before TensorFlow's first op; later calls keep the earlier setting
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(2)
    except RuntimeError:
        pass


# Lorenz-96 and Kuramoto-Sivashinsky live on periodic domains: every cyclic shift
# of a state is as valid as the state itself. Training on shifted copies gives a
# dense network the translation symmetry it cannot learn from 8000 samples.
PERIODIC_SYSTEMS = {"lorenz96", "ks"}


def _cyclic_shift_copies(x: np.ndarray, y: np.ndarray, copies: int, rng: np.random.Generator):
    shifts = rng.integers(0, x.shape[-1], size=len(x) * copies)
    x_all, y_all = np.concatenate([x] * copies), np.concatenate([y] * copies)
    return np.concatenate([x, _roll_features(x_all, shifts)]), np.concatenate([y, _roll_features(y_all, shifts)])


def _roll_features(values: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Roll the last (feature) axis of each sample by its own shift."""
    columns = (np.arange(values.shape[-1]) + shifts[:, None]) % values.shape[-1]
    columns = columns.reshape((len(values),) + (1,) * (values.ndim - 2) + (values.shape[-1],))
    return np.take_along_axis(values, np.broadcast_to(columns, values.shape), axis=-1)


def entry_training_pairs(entry: ZooEntry):
    """Training windows x [N, W, F] and targets y [N, F] (patch 1) or [N, patch, F]."""
    data = system_data(entry.system, entry.seed)
    x, y = training_pairs(data.train, entry.window, entry.patch)
    y = y[..., : data.features - SYSTEMS[entry.system].covariates]  # covariates are inputs only
    y = y[:, 0, :] if entry.patch == 1 else y
    rng = np.random.default_rng(entry.seed)
    if entry.system in PERIODIC_SYSTEMS and entry.shift_copies:
        x, y = _cyclic_shift_copies(x, y, entry.shift_copies, rng)
    # Input noise makes the one-step model forgiving of its own errors in a rollout.
    x = x + entry.input_noise * rng.standard_normal(x.shape).astype(np.float32)
    return x, y


def increment_scale(x: np.ndarray, y: np.ndarray) -> float:
    """The typical size of one step's change, x[:, -1] -> y (normalised units; the predicted features come first)."""
    predicted = y.shape[-1]
    last = x[:, -1, :predicted] if y.ndim == 2 else x[:, -1:, :predicted]
    return float(np.std(y - last))


def train_keras(entry: ZooEntry, out_path: Path) -> float:
    """Train ``entry`` and save it as a .keras file; returns the training seconds."""
    import keras

    _make_tensorflow_deterministic(entry.seed)
    x, y = entry_training_pairs(entry)
    features = x.shape[2]
    patch = {"patch": entry.patch} if entry.patch > 1 else {}
    given = SYSTEMS[entry.system].covariates
    covariates = {"covariates": given} if given else {}
    model = BUILDERS[entry.arch](entry.window, features, name=entry.name.replace("-", "_"),
                                 increment_scale=increment_scale(x, y), **patch, **covariates, **entry.arch_options)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="mse")
    repeats = max(1, MIN_EPOCH_SAMPLES // len(x))
    epochs = max(1, round(entry.epochs / repeats))
    x, y = np.concatenate([x] * repeats), np.concatenate([y] * repeats)
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, verbose=0)
    seconds = time.perf_counter() - start
    model.save(out_path)
    return seconds


def train_torch(entry: ZooEntry, out_path: Path) -> float:
    """Train the entry's torch architecture and save it as its author would: torch.onnx (opset 17)
    for ``.onnx``, a torch.export program for ``.pt2`` (the direct litert-torch path)."""
    import torch

    torch.manual_seed(entry.seed)
    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = (torch.from_numpy(a) for a in entry_training_pairs(entry))
        model = TORCH_BUILDERS[entry.arch](entry.window, x.shape[2], increment_scale(x.numpy(), y.numpy()),
                                           **entry.arch_options)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        generator = torch.Generator().manual_seed(entry.seed)
        start = time.perf_counter()
        for _ in range(entry.epochs):
            for batch in torch.randperm(len(x), generator=generator).split(BATCH_SIZE):
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
        seconds = time.perf_counter() - start
        model.eval()
        example = torch.zeros(1, entry.window, x.shape[2])
        if out_path.suffix == ".pt2":
            torch.export.save(torch.export.export(model, (example,)), str(out_path))
        else:
            torch.onnx.export(model, (example,), str(out_path), input_names=["window"], output_names=["next_state"],
                              dynamo=False, opset_version=17)
    finally:
        torch.set_num_threads(threads)
    return seconds


def _torch_module():
    import torch

    class _TorchResidualMLP(torch.nn.Module):
        # ReLU only: exact GELU exports as Erf, which onnx2tf turns into a Flex op.
        def __init__(self, window: int, features: int, width: int, scale: float):
            super().__init__()
            self.scale = scale
            self.input_proj = torch.nn.Linear(window * features, width)
            self.block_1_fc1 = torch.nn.Linear(width, width)
            self.block_1_fc2 = torch.nn.Linear(width, width)
            self.output_proj = torch.nn.Linear(width, features)

        def forward(self, window):
            h = torch.relu(self.input_proj(window.flatten(1)))
            h = torch.relu(h + self.block_1_fc2(torch.relu(self.block_1_fc1(h))))
            return window[:, -1, :] + self.scale * self.output_proj(h)

    return _TorchResidualMLP


def TorchResidualMLP(window: int, features: int, scale: float = 1.0, width: int = 32):
    """The torch twin of architectures.residual_mlp (one block), built lazily so torch loads only when needed."""
    return _torch_module()(window, features, width, scale)


def TorchGRU(window: int, features: int, scale: float = 1.0, units: int = 16):
    """nn.GRU over the window, a linear head on its last state, plus the last state (the increment)."""
    import torch

    class _TorchGRU(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = scale
            self.gru = torch.nn.GRU(features, units, batch_first=True)
            self.output_proj = torch.nn.Linear(units, features)

        def forward(self, window):
            out, _ = self.gru(window)
            return window[:, -1, :] + self.scale * self.output_proj(out[:, -1])

    return _TorchGRU()


def TorchPatchTST(window: int, features: int, scale: float = 1.0, patch_len: int = 4, dim: int = 16, heads: int = 2,
                  layers: int = 1):
    """PatchTST-style: the window cut into patches, each embedded, a Transformer encoder, a linear head."""
    import torch

    class _TorchPatchTST(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = scale
            self.embed = torch.nn.Linear(patch_len * features, dim)
            self.position = torch.nn.Parameter(torch.zeros(1, window // patch_len, dim))
            layer = torch.nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.output_proj = torch.nn.Linear(dim * (window // patch_len), features)

        def forward(self, window_):
            patches = window_.reshape(window_.shape[0], window // patch_len, patch_len * features)
            h = self.encoder(self.embed(patches) + self.position)
            return window_[:, -1, :] + self.scale * self.output_proj(h.flatten(1))

    return _TorchPatchTST()


TORCH_BUILDERS = {"mlp": TorchResidualMLP, "gru": TorchGRU, "patchtst": TorchPatchTST}
