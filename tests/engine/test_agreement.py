"""The engine against the real LiteRT interpreter: first step and long rollouts."""

from __future__ import annotations

import numpy as np
import pytest

from edgetqs.engine import Engine
from edgetqs.engine.litert import LiteRTRunner


def relative_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row and step: ||a_t - b_t|| over features, relative to the row's RMS state norm
    (a per-step norm would blow up where a series crosses zero)."""
    scale = np.sqrt(np.mean(np.sum(b.astype(np.float64) ** 2, axis=-1), axis=-1, keepdims=True))
    return np.linalg.norm(a - b, axis=-1) / np.maximum(scale, 1e-12)


def assert_finite(trajectory: np.ndarray) -> None:
    assert np.all(np.isfinite(trajectory)), "the reference rollout blew up; pick a shorter horizon"


def steps_together(a: np.ndarray, b: np.ndarray, threshold: float = 1e-2) -> int:
    """Model steps until the worst trajectory's relative divergence first exceeds ``threshold``."""
    worst = relative_error(a, b).max(axis=0)
    above = np.flatnonzero(worst > threshold)
    return int(above[0]) if above.size else len(worst)


def test_first_step_matches_litert(standin):
    engine, runtime = Engine(standin.graph, standin.spec), LiteRTRunner(standin.path, standin.spec)
    ours, theirs = engine.forward(standin.contexts), runtime.forward(standin.contexts)
    assert ours.shape == (len(standin.contexts), standin.spec.patch, standin.spec.features)
    assert relative_error(ours, theirs).max() <= 1e-4


def test_rollout_stays_with_litert(standin):
    horizon = 40
    engine, runtime = Engine(standin.graph, standin.spec), LiteRTRunner(standin.path, standin.spec)
    ours, theirs = engine.rollout(standin.contexts, horizon), runtime.rollout(standin.contexts, horizon)
    assert_finite(theirs)
    assert ours.shape == theirs.shape == (len(standin.contexts), horizon * standin.spec.patch, standin.spec.features)
    assert np.abs(theirs).max() > 1e-3  # the rollout did not just die out
    assert steps_together(ours, theirs) == horizon * standin.spec.patch


def test_any_batch_size_gives_the_same_rows(standin):
    engine = Engine(standin.graph, standin.spec)
    whole = engine.forward(standin.contexts)
    one_by_one = np.concatenate([engine.forward(c[None]) for c in standin.contexts])
    np.testing.assert_allclose(whole, one_by_one, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_every_zoo_model_agrees_with_litert(any_zoo_model):
    """Lorenz-96 and KS are chaotic: float32 rounding differences grow, but slowly enough to stay together long."""
    model, horizon = any_zoo_model, 60
    engine, runtime = Engine(model.graph, model.spec), LiteRTRunner(model.path, model.spec)
    first = relative_error(engine.forward(model.contexts), runtime.forward(model.contexts)).max()
    assert first <= 1e-4
    given = model.covariates_for(horizon)
    ours, theirs = engine.rollout(model.contexts, horizon, given), runtime.rollout(model.contexts, horizon, given)
    assert_finite(theirs)
    together = steps_together(ours, theirs)
    steps = horizon * model.spec.patch
    print(f"{model.name}: first step rel err {first:.2e}; together (<1e-2) for {together}/{steps} steps")
    assert together == steps
