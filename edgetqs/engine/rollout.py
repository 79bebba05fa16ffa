"""The autoregressive loop shared by the engine and the LiteRT runner (METHOD.md §1).

Each model call maps a window [B, window, F] to a patch [B, patch, F]; the
patch is appended to the window and the oldest ``patch`` steps dropped.
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


def roll_out(forward: Callable[[np.ndarray], np.ndarray], windows: np.ndarray, horizon: int,
             spec: RolloutSpec) -> np.ndarray:
    """Run ``horizon`` model calls from ``windows`` [B, w, F]; return [B, horizon*patch, F]."""
    windows = check_windows(windows, spec, "contexts")
    horizon = check_horizon(horizon)
    batch, patch = windows.shape[0], spec.patch
    trajectory = np.empty((batch, horizon * patch, spec.features), np.float32)
    window = windows.copy()
    for step in range(horizon):
        y = forward(window).reshape(batch, patch, spec.features)
        trajectory[:, step * patch : (step + 1) * patch] = y
        window = np.concatenate([window[:, patch:], y], axis=1)
    return trajectory
