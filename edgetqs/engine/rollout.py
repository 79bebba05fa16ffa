"""The autoregressive loop shared by the engine and the LiteRT runner (METHOD.md §1).

Each model call maps a window [B, window, F] to a patch [B, patch, F - C]; the
next window is the window shifted by ``patch`` steps, its new rows holding the
prediction in the fed-back features and, in the C covariate features (the
spec's ``covariates``), the given covariate values for those steps.

That window is a rollout's whole state: ``windows_after`` rebuilds it from the
windows a rollout started from and the trajectory it produced, so a rollout
run for t calls and resumed from there for t more (its covariates offset by
t*patch steps) computes exactly what one run of 2t calls computes.
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


def check_group_windows(contexts: np.ndarray, groups: int, spec: RolloutSpec) -> tuple[np.ndarray, bool]:
    """rollout_probes' contexts: [K, window, F] shared by all ``groups``, or [groups, K, window, F], one set per
    group (a resumed rollout) -> (contexts as [groups, K, window, F] float32, a broadcast view when shared;
    shared?)."""
    contexts = np.asarray(contexts)
    if contexts.ndim != 4:
        windows = check_windows(contexts, spec, "contexts")
        return np.broadcast_to(windows, (groups, *windows.shape)), True
    if contexts.shape[0] != groups:
        raise EdgeTQSError(f"contexts [{contexts.shape[0]}, K, window, F] give {contexts.shape[0]} probe groups "
                           f"their windows, but {groups} groups were asked for",
                           "pass one set of windows per delta, or [K, window, F] shared by every group")
    windows = check_windows(contexts.reshape(-1, *contexts.shape[2:]), spec, "contexts")
    return windows.reshape(contexts.shape), False


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
    rows = np.empty((*y.shape[:-1], spec.features), np.float32)
    rows[..., spec.fed_back] = y
    rows[..., spec.covariates] = given[:, steps]
    return rows


def windows_after(windows: np.ndarray, trajectory: np.ndarray, given: np.ndarray | None,
                  spec: RolloutSpec) -> np.ndarray:
    """The windows a rollout reads next: the state after the calls that made ``trajectory``.

    ``windows`` [..., K, window, F] the rollout started from, ``trajectory`` [..., K, h*patch, F - C]
    what it emitted (roll_out's own values), ``given`` [K, h*patch, C] the covariates it was fed
    (None without). The same values roll_out's loop holds after h calls, copied, not recomputed,
    so resuming from them continues the rollout bit for bit.
    """
    steps, width = trajectory.shape[-2], spec.window
    new = min(steps, width)  # rows of the next window that come from the trajectory
    tail = slice(steps - new, steps)
    rows = next_rows(trajectory[..., tail, :], given, tail, spec)
    old = np.broadcast_to(windows, (*rows.shape[:-2], width, spec.features))[..., new:, :]
    return np.ascontiguousarray(np.concatenate([old, rows], axis=-2), dtype=np.float32)
