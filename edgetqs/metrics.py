"""Rollout quality (METHOD.md §5): how well a batch of rollouts tracks a reference.

Everything works on batches of trajectories ``[K, T, F]`` (K context windows,
T horizon steps, F state features) against a reference of the same shape: the
true system, or the float model when judging a quantized one. The same
functions serve the zoo (float model vs truth), evaluation and on-board
validation, so the definitions live in one place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgetqs.errors import EdgeTQSError

DEFAULT_VPT_THRESHOLD = 0.4
# A rollout whose state norm grows past this multiple of the reference's largest
# norm has left the attractor for good: we call it a blow-up, as for NaN/inf.
DEFAULT_EXPLOSION_FACTOR = 10.0


@dataclass
class RolloutMetrics:
    """Summary of a batch of rollouts against a reference (all per-step arrays have length T)."""

    rmse_per_step: list[float]  # RMSE over windows and features at each horizon step
    acc_per_step: list[float]  # anomaly correlation at each step (mean over windows)
    valid_prediction_time: list[int]  # per window: steps before normalised error first exceeds threshold
    mean_valid_prediction_time: float
    blown_up: list[bool]  # per window: NaN, inf or norm explosion anywhere in the rollout
    blow_up_fraction: float
    rmse: float  # over the whole horizon, finite windows only
    threshold: float
    horizon: int

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        """The few numbers worth a table column."""
        return {
            "rmse": round(self.rmse, 5),
            "rmse_step1": round(self.rmse_per_step[0], 5),
            "acc_final": round(self.acc_per_step[-1], 4),
            "valid_prediction_time": round(self.mean_valid_prediction_time, 2),
            "blow_up_fraction": round(self.blow_up_fraction, 4),
            "horizon": self.horizon,
        }


def _as_batch(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2:  # a single trajectory [T, F]
        array = array[None]
    if array.ndim != 3:
        raise EdgeTQSError(f"{name} must be [K, T, F] trajectories (got shape {array.shape})",
                           "stack rollouts as [windows, horizon, features]")
    return array


def blow_up_mask(pred, reference, explosion_factor: float = DEFAULT_EXPLOSION_FACTOR) -> np.ndarray:
    """Per window: True when the rollout has NaN/inf or its state norm explodes."""
    pred, reference = _as_batch("pred", pred), _as_batch("reference", reference)
    not_finite = ~np.isfinite(pred).all(axis=(1, 2))
    with np.errstate(over="ignore", invalid="ignore"):
        pred_norm = np.nan_to_num(np.linalg.norm(pred, axis=2), nan=np.inf)
    ref_scale = np.max(np.linalg.norm(reference, axis=2), axis=1)
    ref_scale = np.maximum(ref_scale, 1e-12)
    exploded = (pred_norm.max(axis=1) > explosion_factor * ref_scale)
    return not_finite | exploded


def normalised_error(pred, reference) -> np.ndarray:
    """[K, T]: ||pred - ref|| / RMS norm of the reference over the horizon (per window).

    Normalising by the reference's typical size makes the valid prediction time
    threshold (0.4) mean the same on every system.
    """
    pred, reference = _as_batch("pred", pred), _as_batch("reference", reference)
    with np.errstate(over="ignore", invalid="ignore"):
        error = np.linalg.norm(pred - reference, axis=2)
    scale = np.sqrt(np.mean(np.sum(reference**2, axis=2), axis=1, keepdims=True))
    return np.nan_to_num(error / np.maximum(scale, 1e-12), nan=np.inf)


def valid_prediction_time(pred, reference, threshold: float = DEFAULT_VPT_THRESHOLD) -> np.ndarray:
    """[K]: number of steps before the normalised error first exceeds ``threshold`` (T if never)."""
    error = normalised_error(pred, reference)
    exceeded = error > threshold
    first = np.argmax(exceeded, axis=1)
    return np.where(exceeded.any(axis=1), first, error.shape[1]).astype(int)


def anomaly_correlation(pred, reference, climatology=None) -> np.ndarray:
    """[K, T]: correlation between predicted and true anomalies over features at each step.

    Anomalies are taken against ``climatology`` (a [F] mean state; default: the
    reference's mean over windows and steps). A single feature has no spatial
    pattern to correlate, so for F == 1 anomalies are taken over the horizon instead.
    """
    pred, reference = _as_batch("pred", pred), _as_batch("reference", reference)
    if climatology is None:
        climatology = reference.mean(axis=(0, 1))
    pa, ra = pred - climatology, reference - climatology
    axis = 2 if pred.shape[2] > 1 else 1
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        num = np.sum(pa * ra, axis=axis)
        den = np.sqrt(np.sum(pa**2, axis=axis) * np.sum(ra**2, axis=axis))
        acc = np.where(den > 0, num / den, 0.0)
    acc = np.nan_to_num(acc, nan=0.0, posinf=0.0, neginf=0.0)
    if axis == 1:  # one value per window: repeat it over the horizon so shapes stay [K, T]
        acc = np.repeat(acc, pred.shape[1], axis=1)
    return acc


def rollout_metrics(pred, reference, threshold: float = DEFAULT_VPT_THRESHOLD,
                    explosion_factor: float = DEFAULT_EXPLOSION_FACTOR, climatology=None) -> RolloutMetrics:
    """All of METHOD.md §5 for rollouts ``pred`` vs ``reference``, both [K, T, F] (or [T, F])."""
    pred, reference = _as_batch("pred", pred), _as_batch("reference", reference)
    if pred.shape != reference.shape:
        raise EdgeTQSError(f"rollouts {pred.shape} and reference {reference.shape} differ in shape",
                           "compare trajectories with the same windows, horizon and features")
    blown = blow_up_mask(pred, reference, explosion_factor)
    with np.errstate(over="ignore", invalid="ignore"):
        sq = (pred - reference) ** 2
        rmse_steps = np.sqrt(np.mean(sq, axis=(0, 2)))
        finite = ~blown
        rmse = float(np.sqrt(np.mean(sq[finite]))) if finite.any() else float("inf")
    vpt = valid_prediction_time(pred, reference, threshold)
    acc = anomaly_correlation(pred, reference, climatology).mean(axis=0)
    return RolloutMetrics(
        rmse_per_step=[float(v) if np.isfinite(v) else float("inf") for v in rmse_steps],
        acc_per_step=[float(v) for v in acc],
        valid_prediction_time=[int(v) for v in vpt],
        mean_valid_prediction_time=float(vpt.mean()),
        blown_up=[bool(b) for b in blown],
        blow_up_fraction=float(blown.mean()),
        rmse=rmse,
        threshold=threshold,
        horizon=int(pred.shape[1]),
    )
