"""The autoregressive loop shared by the engine and the LiteRT runner (METHOD.md §1).

Each model call maps a window [B, window, F] to a patch [B, patch, F - C]; the
next window is the window shifted by ``patch`` steps, its new rows holding the
prediction in the fed-back features and, in the C covariate features (the
spec's ``covariates``), the given covariate values for those steps.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec


def check_windows(x: np.ndarray, spec: RolloutSpec, what: str = "input") -> np.ndarray:
    x = np.asarray(x)
    expected = (spec.window, spec.features)
    if x.ndim != 3 or x.shape[1:] != expected:
        raise EdgeTQSError(
            f"{what} has shape {x.shape}, the model wants [batch, {spec.window}, {spec.features}]",
            "pass windows shaped [batch, window, features] as in the model's rollout spec",
        )
    if x.shape[0] == 0:
        raise EdgeTQSError(f"{what} has no rows", "pass at least one window")
    return np.ascontiguousarray(x, dtype=np.float32)


def check_horizon(horizon: int) -> int:
    if int(horizon) < 1:
        raise EdgeTQSError(f"horizon must be at least 1 model call (got {horizon})", "pass --horizon 1 or more")
    return int(horizon)


def check_covariates(covariates: np.ndarray | None, batch: int, horizon: int, spec: RolloutSpec) -> np.ndarray | None:
    """The given series [batch, horizon*patch, C] a covariate model needs (None for a model without)."""
    if not spec.covariates:
        if covariates is not None:
            raise EdgeTQSError("covariate values were given for a model without covariates",
                               "pass covariates only for a model whose rollout spec has covariates=...")
        return None
    want = (batch, horizon * spec.patch, len(spec.covariates))
    if covariates is None or np.shape(covariates) != want:
        got = "none" if covariates is None else f"shape {np.shape(covariates)}"
        raise EdgeTQSError(f"the model reads covariates {spec.covariates} (given, not predicted) and needs their values "
                           f"[{want[0]} windows, {want[1]} steps, {want[2]}] for the rollout; got {got}",
                           "pass --data FILE with the covariate columns over the whole horizon")
    return np.ascontiguousarray(covariates, dtype=np.float32)


def roll_out(forward: Callable[[np.ndarray], np.ndarray], windows: np.ndarray, horizon: int,
             spec: RolloutSpec, covariates: np.ndarray | None = None) -> np.ndarray:
    """Run ``horizon`` model calls from ``windows`` [B, w, F]; return [B, horizon*patch, F - C]."""
    windows = check_windows(windows, spec, "contexts")
    horizon = check_horizon(horizon)
    batch, patch = windows.shape[0], spec.patch
    given = check_covariates(covariates, batch, horizon, spec)
    trajectory = np.empty((batch, horizon * patch, spec.outputs), np.float32)
    window = windows.copy()
    for step in range(horizon):
        y = forward(window).reshape(batch, patch, spec.outputs)
        steps = slice(step * patch, (step + 1) * patch)
        trajectory[:, steps] = y
        window = np.concatenate([window[:, patch:], next_rows(y, given, steps, spec)], axis=1)
    return trajectory


def next_rows(y: np.ndarray, given: np.ndarray | None, steps: slice, spec: RolloutSpec) -> np.ndarray:
    """The rows appended to the window: the prediction fed back, the covariates given for ``steps``."""
    if given is None:
        return y
    rows = np.empty((y.shape[0], y.shape[1], spec.features), np.float32)
    rows[..., spec.fed_back] = y
    rows[..., spec.covariates] = given[:, steps]
    return rows
