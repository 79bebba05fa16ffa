"""Planner fixtures: tiny real forecasters (Keras -> float .tflite by the real
converter) and score files written in the documented ``edgetqs.scores`` v1
schema through the TQS engineer's ScoreFile class."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgetqs.model.tflite_graph import TFLiteGraph  # noqa: E402
from edgetqs.planner import costs  # noqa: E402


def _convert(model, path: Path) -> Path:
    import tensorflow as tf

    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def _mlp(tf, window: int, features: int, widths: list[int], seed: int):
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((window, features), batch_size=1)
    x = tf.keras.layers.Flatten()(inputs)
    for i, width in enumerate(widths):
        x = tf.keras.layers.Dense(width, activation="tanh", bias_initializer="glorot_uniform", name=f"fc{i}")(x)
    out = tf.keras.layers.Dense(features, bias_initializer="glorot_uniform", name="head")(x)
    return tf.keras.Model(inputs, out)


def _conv(tf, seed: int):
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((16, 8), batch_size=1)
    x = tf.keras.layers.Conv1D(32, 3, activation="relu", name="conv")(inputs)
    x = tf.keras.layers.Flatten()(x)
    out = tf.keras.layers.Dense(8, name="head")(x)
    return tf.keras.Model(inputs, out)


def _tied(tf, seed: int):
    """One Dense layer applied twice (as an unrolled RNN does): two ops read one weight tensor."""
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((64,), batch_size=1)
    shared = tf.keras.layers.Dense(64, activation="tanh", name="shared")
    out = tf.keras.layers.Dense(8, name="head")(shared(shared(inputs)))
    return tf.keras.Model(inputs, out)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """name -> float .tflite: an MLP whose fan-ins are multiples of 64 (blockwise applies),
    an odd-sized MLP (blockwise does not), a conv model, a 300 KiB MLP (AEQ's
    external-buffer serialisation) and a model with one weight read by two ops."""
    import tensorflow as tf

    d = tmp_path_factory.mktemp("planner_models")
    return {
        "mlp64": _convert(_mlp(tf, 8, 8, [64, 128], 0), d / "mlp64.tflite"),
        "mlp_odd": _convert(_mlp(tf, 7, 5, [48, 40], 1), d / "mlp_odd.tflite"),
        "conv": _convert(_conv(tf, 2), d / "conv.tflite"),
        "mlp_big": _convert(_mlp(tf, 16, 16, [256, 256], 3), d / "mlp_big.tflite"),
        "tied": _convert(_tied(tf, 4), d / "tied.tflite"),
    }


def write_scores(graph: TFLiteGraph, path: Path, gammas: list[float] | None = None, horizon: int = 20,
                 dead: set[int] = frozenset(), seed: int = 0) -> Path:
    """A score file for ``graph``: one unit per weighted op (weight + bias), gammas given or random."""
    from edgetqs.tqs.scorefile import ProbeResult, ScoreFile, UnitScore

    tensors = costs.weight_tensors(graph)
    groups: dict[str, list[str]] = {}
    for op in graph.operators:
        names = [graph.tensors[i].name for i in op.inputs if i >= 0 and graph.tensors[i].name in tensors]
        if names:
            groups[graph.tensors[op.outputs[0]].name] = names
    rng = np.random.default_rng(seed)
    gammas = list(gammas) if gammas is not None else list(rng.normal(0.02, 0.05, len(groups)))
    units = []
    for i, (name, names) in enumerate(groups.items()):
        units.append(UnitScore(name=name, weight_tensors=names,
                               params=sum(tensors[n].elements for n in names),
                               score=None if i in dead else float(gammas[i]),
                               probes={} if i in dead else {"quant": ProbeResult(float(gammas[i]), 0.1)},
                               dead=i in dead))
    scores = ScoreFile({"name": graph.path.stem if graph.path else "model", "tflite_sha256": graph.sha256,
                        "source": str(graph.path)},
                       {"probe": "quant", "granularity": "layer", "horizon": horizon, "windows": 4, "seed": seed,
                        "probe_bits": 4, "contexts": "free_run", "engine": "numba", "dead_floor": -5.0},
                       {"windows_used": 4, "windows_blown_up": 0}, units)
    return scores.save(path)


@pytest.fixture
def score_writer():
    """The score-file writer, for tests that build their own graph."""
    return write_scores


@pytest.fixture
def scores_for(tmp_path):
    def make(model_path: Path, **kwargs) -> tuple[TFLiteGraph, Path]:
        graph = TFLiteGraph.load(model_path)
        return graph, write_scores(graph, tmp_path / f"{model_path.stem}.scores.json", **kwargs)

    return make
