"""Calibration on a few windows: static min/max ranges, estimator priors, and alpha/beta.

One call, two passes over the same windows (default 8, ``DEFAULT_WINDOWS``):

1. record every site's min/max (the *static* ranges, per channel; per tensor
   is their hull) and its pooled moments, which become the prior of sites the
   estimator has no rule for;
2. with the priors in place, compare the estimator's predicted moments with
   the real pre-activation extremes of each window and set

       alpha = q-quantile over windows of (E - min) / sd
       beta  = q-quantile over windows of (max - E) / sd

   per tensor (pooled moments) and per channel. ``q = 1`` (the default) makes
   the predicted interval cover every calibration window's extremes.

Calibration runs the engine with its weights already fake-quantized, so it
sees the activations the quantized model will produce.
"""

from __future__ import annotations

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.ranges.estimator import FIXED_RANGE, SiteCalibration
from edgetqs.ranges.executor import FakeQuantEngine, observed_range
from edgetqs.ranges.moments import Moments

DEFAULT_WINDOWS = 8


def check_windows(windows: np.ndarray, what: str = "calibration windows") -> np.ndarray:
    windows = np.asarray(windows, np.float32)
    if windows.ndim != 3 or windows.shape[0] == 0:
        raise EdgeTQSError(f"the {what} are empty (shape {windows.shape})",
                           "pass at least one window shaped [count, window, features]")
    if not np.all(np.isfinite(windows)):
        bad = int(np.sum(~np.all(np.isfinite(windows), axis=(1, 2))))
        raise EdgeTQSError(f"{bad} of the {what} contain NaN or inf",
                           "drop or repair those windows before calibrating or rolling out")
    return windows


def calibrate(engine: FakeQuantEngine, windows: np.ndarray, quantile: float = 1.0) -> None:
    """Fill ``engine.static_ranges`` and ``engine.estimator.sites`` from ``windows`` [N, window, F]."""
    windows = check_windows(windows)
    if not 0.5 <= quantile <= 1.0:
        raise EdgeTQSError(f"calibration quantile {quantile} is outside [0.5, 1]",
                           "use 1.0 (cover every window) or e.g. 0.99")
    mode = engine.config.mode
    try:
        engine.set_mode("float")
        _record_static_and_priors(engine, windows)
        _fit_alpha_beta(engine, windows, quantile)
    finally:
        engine.observer = None
        engine.estimator.oracle_fallback = False
        engine.set_mode(mode)


def _record_static_and_priors(engine: FakeQuantEngine, windows: np.ndarray) -> None:
    ranges, priors = {}, {}

    def observe(tensor, node, pre, post, pre_moments, lo, hi):
        low, high = observed_range(post, per_channel=True)
        ranges[tensor] = (low.min(axis=0), high.max(axis=0))
        rows = pre.reshape(-1, pre.shape[-1])
        priors[tensor] = Moments(rows.mean(axis=0, dtype=np.float64)[None], rows.var(axis=0, dtype=np.float64)[None])

    engine.estimator.oracle_fallback = True
    engine.observer = observe
    engine.forward(windows)
    engine.static_ranges = ranges
    engine.estimator.sites = {t: SiteCalibration(prior=p) for t, p in priors.items()}


def _fit_alpha_beta(engine: FakeQuantEngine, windows: np.ndarray, quantile: float) -> None:
    sites = engine.estimator.sites

    def observe(tensor, node, pre, post, pre_moments, lo, hi):
        if node is not None and node.opcode in FIXED_RANGE:
            return
        site = sites[tensor]
        low, high = observed_range(pre, per_channel=False)
        pooled = pre_moments.pooled()
        site.alpha_tensor = _coverage(pooled.mean - low, pooled.sd(), quantile)
        site.beta_tensor = _coverage(high - pooled.mean, pooled.sd(), quantile)
        low_c, high_c = observed_range(pre, per_channel=True)
        site.alpha_channel = _coverage(pre_moments.mean - low_c, pre_moments.sd(), quantile, axis=0)
        site.beta_channel = _coverage(high_c - pre_moments.mean, pre_moments.sd(), quantile, axis=0)

    engine.estimator.oracle_fallback = False
    engine.observer = observe
    engine.forward(windows)


def _coverage(excess: np.ndarray, sd: np.ndarray, quantile: float, axis=None):
    """How many predicted standard deviations it takes to reach the observed extreme."""
    ratio = np.where(sd > 1e-12, excess / np.maximum(sd, 1e-12), 0.0)
    value = np.quantile(np.maximum(ratio, 0.0), quantile, axis=axis)
    value = value * (1 + 1e-4) + 1e-6  # the extreme itself must land inside despite float32 rounding
    return float(value) if axis is None else value
