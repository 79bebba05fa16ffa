"""Fixtures for the ranges tests: small trained Keras forecasters as float TFLite
(Dense MLP, Conv1D TCN, GRU unroll=True, MultiHeadAttention + LayerNorm; see
standins.py), their rollout spec, and windows from their system."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.ranges import standins

from edgetqs.model.card import RolloutSpec  # noqa: E402
from edgetqs.model.tflite_graph import TFLiteGraph  # noqa: E402

SPEC = RolloutSpec(window=standins.WINDOW, features=standins.FEATURES, output_rank=2)


@pytest.fixture(scope="session")
def standin_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ranges_standins")


@pytest.fixture(scope="session")
def standin_graphs(standin_dir) -> dict[str, TFLiteGraph]:
    return {name: TFLiteGraph.load(standins.build_tflite(name, standin_dir, epochs=2)) for name in standins.BUILDERS}


@pytest.fixture(scope="session")
def spec() -> RolloutSpec:
    return SPEC


def windows_from(seed: int, count: int, step: int = 7) -> np.ndarray:
    traj = standins.system_trajectory(count * step + standins.WINDOW + 1, seed)
    return np.stack([traj[i * step : i * step + standins.WINDOW] for i in range(count)])


@pytest.fixture(scope="session")
def calibration_windows() -> np.ndarray:
    return windows_from(seed=11, count=16)


@pytest.fixture(scope="session")
def test_contexts() -> np.ndarray:
    return windows_from(seed=23, count=6, step=13)
