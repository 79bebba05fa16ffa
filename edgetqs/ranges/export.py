"""Static int8 activation ranges from the estimator, for the converter's static mode.

``estimator_ranges`` rolls the (calibrated) engine out from a few contexts in
probabilistic mode and keeps, per site, the hull of the intervals the
estimator predicted along the way: ranges that come from the weights and a
handful of windows rather than a calibration set. The result is what
``edgetqs.converter.convert(..., activation_ranges=...)`` takes
(``{tensor_name: (low, high)}``, float model tensor names), or a JSON file::

    {"format": "edgetqs.activation_ranges", "version": 1, "model_sha256": ...,
     "source": "probabilistic", "ranges": {tensor_name: [low, high]}}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.files import JsonKind, read_json, write_json
from edgetqs.ranges.calibration import check_windows
from edgetqs.ranges.executor import FakeQuantEngine

RANGES_FORMAT = "edgetqs.activation_ranges"
RANGES = JsonKind(RANGES_FORMAT, 1, "activation-range file",
                  "pass a file written by `edgetqs ranges --out` (re-export it with this edgetqs)")


def estimator_ranges(engine: FakeQuantEngine, contexts: np.ndarray, horizon: int = 1) -> dict[str, tuple[float, float]]:
    """Per-tensor ``(low, high)`` hull of the estimator's predicted ranges over a rollout."""
    contexts = check_windows(contexts, "contexts for range export")
    if not engine.estimator.sites:
        raise EdgeTQSError("the estimator is not calibrated", "call calibrate(engine, windows) before exporting ranges")
    hull: dict[int, list[float]] = {}

    def observe(tensor, node, pre, post, pre_moments, lo, hi):
        low, high = float(np.min(lo)), float(np.max(hi))
        entry = hull.setdefault(tensor, [low, high])
        entry[0], entry[1] = min(entry[0], low), max(entry[1], high)

    mode = engine.config.mode
    engine.set_mode("probabilistic")
    engine.observer = observe
    try:
        engine.rollout(contexts, horizon)
    finally:
        engine.observer = None
        engine.set_mode(mode)
    return {engine.tensor_name(t): (min(lo, 0.0), max(hi, 0.0)) for t, (lo, hi) in hull.items()}


def write_ranges_json(ranges: dict[str, tuple[float, float]], path: str | Path, model_sha256: str,
                      source: str = "probabilistic") -> Path:
    path = Path(path)
    document = {"model_sha256": model_sha256, "source": source,
                "ranges": {name: [float(lo), float(hi)] for name, (lo, hi) in ranges.items()}}
    return write_json(path, RANGES, document, indent=2)


def read_ranges_json(path: str | Path) -> dict[str, tuple[float, float]]:
    document = read_json(path, RANGES)
    return {name: (float(lo), float(hi)) for name, (lo, hi) in document["ranges"].items()}
