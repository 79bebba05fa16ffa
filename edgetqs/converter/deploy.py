"""What a bundle carries besides the model: runtime requirement, host references,
and the thresholds on-device validation (remote/validate.py) applies.

Thresholds, each derived from what the host measured here:

- ``probe_tolerance`` / ``host_step_tolerance``: how far the board's outputs may
  be from the host's on identical inputs (probe windows; the first rollout
  step), max |difference| over the outputs' RMS. Only the runtime differs, so
  the limit is what runtimes legitimately differ by in each mode
  (``AGREEMENT``): float activations (weight-only) differ by summation order
  only; dynamic-range kernels re-quantize activations at run time and differ by
  ~1% between LiteRT's reference kernels and XNNPACK; static int8 kernels may
  round an output by one int8 step of its calibrated range. A wrong kernel or a
  damaged weight is O(1).
- ``min_valid_prediction_time``: the board's rollouts, judged against the float
  reference, must stay valid (normalised error below ``vpt_threshold``) at
  least ``VPT_SHARE`` of the steps the host's rollouts of the same model do:
  small run-time differences get amplified by chaotic dynamics, but they must
  not cost more than a fifth of the forecast.
- ``max_blow_up_fraction``: 0 — no rollout may blow up on the board beyond
  those that blow up on the host too.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np

from edgetqs.metrics import DEFAULT_VPT_THRESHOLD, rollout_metrics
from edgetqs.planner.conformance import MATRIX_PATH, CapabilityMatrix
from edgetqs.quant.aeq import OpTarget

AGREEMENT = {"weight_only": 1e-3, "dynamic": 0.03, "static": 0.05}
VPT_SHARE = 0.8


def host_runtime() -> str:
    return f"ai-edge-litert=={importlib.metadata.version('ai-edge-litert')}"


def load_matrix():
    """The planner's capability matrix, or None when it has not been generated yet."""
    return CapabilityMatrix.load(MATRIX_PATH) if MATRIX_PATH.exists() else None


def runtime_requirement(targets: list[OpTarget], mode: str, matrix) -> dict:
    """Which runtimes (package==version) execute every quantized op of this model correctly."""
    needs = sorted({(t.op.opcode, t.format) for t in targets if t.format != "fp32"})
    requirement = {"mode": mode, "needs": [{"op": op, "format": fmt} for op, fmt in needs],
                   "verified_on_host": host_runtime(), "runtimes": None}
    if matrix is None:
        requirement["note"] = "no capability matrix yet: only the host runtime was checked"
    else:
        requirement["runtimes"] = [spec for spec in matrix.runtimes
                                   if all(matrix.supports(spec, op, mode, fmt) for op, fmt in needs)]
    return requirement


def thresholds(mode: str, reference_float: np.ndarray, reference_host: np.ndarray) -> dict:
    host = rollout_metrics(reference_host, reference_float, threshold=DEFAULT_VPT_THRESHOLD)
    return {
        "probe_tolerance": AGREEMENT[mode],
        "host_step_tolerance": AGREEMENT[mode],
        "vpt_threshold": DEFAULT_VPT_THRESHOLD,
        "min_valid_prediction_time": float(np.floor(VPT_SHARE * host.mean_valid_prediction_time)),
        "max_blow_up_fraction": 0.0,
        # What the host measured, for the report (not limits).
        "host_valid_prediction_time": float(host.mean_valid_prediction_time),
        "host_rmse_vs_float": float(np.sqrt(np.mean((reference_host - reference_float) ** 2))),
    }
