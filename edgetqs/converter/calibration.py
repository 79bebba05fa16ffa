"""Activation ranges for static (int8-activation) export.

Two sources, one format — AEQ's calibration result, ``{tensor_name: {"min": array, "max": array}}``:

- ``minmax_calibration``: AEQ runs the float model on given windows and keeps
  each tensor's min/max;
- ``calibration_from_ranges``: per-tensor ranges from anywhere else — the hook
  for the probabilistic range estimator (METHOD.md §4): it writes its
  ``{tensor: (low, high)}`` over a base result, so tensors it does not cover
  keep their min/max from a few windows.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_quantizer import calibrator

from edgetqs.errors import EdgeTQSError


def signature_input(model_path: str) -> tuple[str, str]:
    """(signature key, input name) of the canonical model's one signature."""
    interpreter = Interpreter(model_path=str(model_path))
    signatures = interpreter.get_signature_list()
    if not signatures:
        raise EdgeTQSError(f"{model_path} has no signature, which AEQ calibration needs",
                           "re-export the model with a serving signature, or use --mode dynamic")
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0]


def minmax_calibration(quantizer, model_path: str, windows: np.ndarray) -> dict:
    """Min/max of every tensor over ``windows`` [K, window, features], one model call each.

    AEQ keeps a *moving average* of per-call min/max, which lets later windows
    shrink the range and clips the earlier ones; calibrating each window alone
    and taking the extremes gives the true min/max over all of them.
    """
    key, input_name = signature_input(model_path)
    per_window = [_calibrate(quantizer, {key: [{input_name: w[None].astype(np.float32)}]}) for w in windows]
    merged: dict = {}
    for result in per_window:
        for name, qsv in result.items():
            if name not in merged:
                merged[name] = dict(qsv)
            elif "min" in qsv and "max" in qsv:
                merged[name]["min"] = np.minimum(merged[name]["min"], qsv["min"])
                merged[name]["max"] = np.maximum(merged[name]["max"], qsv["max"])
    return merged


def _calibrate(quantizer, data: dict) -> dict:
    try:
        # Profiler-based calibration: the preserve-all-tensors mode fails on some
        # graphs (unrolled GRU, attention) with "Tensor data is null".
        return quantizer.calibrate(data, num_threads=1, mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED)
    except (ValueError, RuntimeError) as exc:
        raise EdgeTQSError(f"AI Edge Quantizer could not calibrate this model for static int8: {exc}",
                           "use --mode dynamic (int8 weights, float activations) for this model") from exc


def calibration_from_ranges(ranges: dict[str, tuple[float, float]], base: dict | None = None) -> dict:
    """An AEQ calibration result with ``ranges`` (tensor -> (low, high)) written over ``base``."""
    result = {name: dict(qsv) for name, qsv in (base or {}).items()}
    for name, (low, high) in ranges.items():
        if not np.isfinite(low) or not np.isfinite(high) or low > high:
            raise EdgeTQSError(f"activation range for '{name}' is [{low}, {high}]",
                               "give finite ranges with low <= high")
        # AEQ wants ranges that include 0 (int8 zero point must be representable).
        result[name] = {"min": np.array(min(low, 0.0), np.float32), "max": np.array(max(high, 0.0), np.float32)}
    return result
