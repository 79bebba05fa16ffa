"""Models for the engine tests: the real zoo models (trained and cached by
edgetqs.zoo on first use), and small Keras stand-ins (standin_models.py) that
add ops the zoo lacks (depthwise conv, fp16 weights, GELU, patch 2, a GRU the
converter left time-major with batch 1 baked in)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.engine.standin_models import STANDINS, build_standin

from edgetqs.model.card import RolloutSpec  # noqa: E402
from edgetqs.model.tflite_graph import TFLiteGraph  # noqa: E402

# The zoo's four architectures on its chaotic system (Lorenz-96, 40 variables).
ZOO_LORENZ = ["mlp-lorenz96", "gru-lorenz96", "transformer-lorenz96", "tcn-lorenz96"]


COVARIATE_STEPS = 64  # the longest rollout a test makes from zoo windows, in steps


def _zoo_names() -> list[str]:
    from edgetqs import zoo

    return [entry.name for entry in zoo.list_models()]


@dataclass
class TestModel:
    name: str
    path: Path
    graph: TFLiteGraph
    spec: RolloutSpec
    contexts: np.ndarray  # [K, window, F] windows the model is meant to see
    covariates: np.ndarray | None = None  # [K, COVARIATE_STEPS, C] the true covariates ahead (covariate models)

    def covariates_for(self, horizon: int) -> np.ndarray | None:
        return None if self.covariates is None else self.covariates[:, : horizon * self.spec.patch]

    __test__ = False  # not a test class


@pytest.fixture(scope="session")
def standin_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engine_standins")


def standin_model(name: str, directory: Path, count: int = 6) -> TestModel:
    path, spec = build_standin(name, directory)
    rng = np.random.default_rng(1)
    contexts = (0.5 * rng.standard_normal((count, spec.window, spec.features))).astype(np.float32)
    return TestModel(name, path, TFLiteGraph.load(path), spec, contexts)


def zoo_model(name: str, count: int = 6) -> TestModel:
    from edgetqs import zoo

    model = zoo.build(name)
    spec = model.card.rollout
    ahead = COVARIATE_STEPS if spec.covariates else 1  # (the windows' spread depends on it: keep 1 for the rest)
    contexts, truth = zoo.true_trajectories(zoo.entry(name).system, window=spec.window, horizon=ahead, count=count)
    given = np.asarray(truth[..., spec.covariates], np.float32) if spec.covariates else None
    return TestModel(name, Path(model.tflite_path), model.graph, spec, np.asarray(contexts, np.float32), given)


@pytest.fixture(params=list(STANDINS))
def standin(request, standin_dir) -> TestModel:
    return standin_model(request.param, standin_dir)


@pytest.fixture(params=ZOO_LORENZ)
def zoo_lorenz(request) -> TestModel:
    return zoo_model(request.param)


@pytest.fixture(params=_zoo_names())
def any_zoo_model(request) -> TestModel:
    return zoo_model(request.param)
