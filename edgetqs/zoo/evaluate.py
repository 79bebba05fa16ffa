"""Float rollout quality of a canonical model against the true system.

Rollouts here run in the LiteRT interpreter (edgetqs.engine.litert): an
independent reference (the numba engine is checked against runs like these).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetqs.engine.litert import LiteRTRunner
from edgetqs.metrics import rollout_metrics
from edgetqs.model.card import RolloutSpec
from edgetqs.model.quiet import quiet_stderr
from edgetqs.zoo.data import true_trajectories

QUALITY_WINDOWS = 8


def litert_rollout(tflite_path: str | Path, spec: RolloutSpec, contexts: np.ndarray, horizon: int,
                   truth: np.ndarray | None = None) -> np.ndarray:
    """Roll the model out from each context [K, window, F] for ``horizon`` steps -> [K, horizon, F - C].

    A covariate model reads its covariates from ``truth`` [K, >= horizon, F] (the true series ahead)."""
    calls = -(-horizon // spec.patch)
    covariates = None
    if spec.covariates:
        covariates = np.asarray(truth, np.float32)[:, :horizon, spec.covariates]
        covariates = np.concatenate([covariates, np.repeat(covariates[:, -1:], calls * spec.patch - horizon, 1)], 1)
    with quiet_stderr():  # LiteRT announces its XNNPACK delegate on fd 2
        runner = LiteRTRunner(tflite_path, spec, num_threads=1)
    return runner.rollout(np.asarray(contexts, np.float32), calls, covariates)[:, :horizon]


def float_quality(tflite_path: str | Path, spec: RolloutSpec, system: str, horizon: int,
                  windows: int = QUALITY_WINDOWS, seed: int = 0) -> dict:
    """METHOD.md §5 summary of the float model's rollouts vs the true system (test data)."""
    contexts, truth = true_trajectories(system, spec.window, horizon, count=windows, seed=seed)
    with np.errstate(all="ignore"):
        pred = litert_rollout(tflite_path, spec, contexts, horizon, truth)
    summary = rollout_metrics(pred, truth[..., spec.fed_back]).summary()
    summary["windows"] = int(len(contexts))
    return summary
