"""What a bundle carries besides the model: runtime requirement, host references,
and the thresholds on-device validation applies.

Thresholds (all relative to host numbers measured here, so they scale with the model):

- ``probe_rel_l2``: the device's outputs on the probe inputs against the host's
  outputs of the same model.tflite (relative L2 over all probes). A correct
  runtime adds no more error than the host's own runtime added on top of the
  quantized weights, which verification bounded by the mode's tolerance
  (verify.TOLERANCE), so that tolerance is the limit.
- ``rollout_rmse_vs_host``: RMSE of the device's rollout from the bundle's
  contexts against the host's rollout of this model. Rollouts of chaotic
  systems drift apart, so this cannot be tight: it is ``MARGIN`` times the
  host's own quantized-vs-float RMSE (the size of the error this model is
  allowed to make at all), plus ``FLOOR`` times the float trajectory's RMS so a
  near-lossless model is not held to float round-off.
- ``rollout_rmse_vs_float``: by the triangle inequality, ``(1 + MARGIN)`` times
  the host's quantized-vs-float RMSE plus the floor.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np

from edgetqs.converter.recipe import OpTarget
from edgetqs.converter.verify import TOLERANCE

MARGIN = 2.0
FLOOR = 1e-3


def host_runtime() -> str:
    return f"ai-edge-litert=={importlib.metadata.version('ai-edge-litert')}"


def load_matrix():
    """The planner's capability matrix, or None when it has not been generated yet."""
    try:
        from edgetqs.planner.conformance import MATRIX_PATH, CapabilityMatrix
    except ImportError:
        return None
    return CapabilityMatrix.load(MATRIX_PATH) if MATRIX_PATH.exists() else None


def runtime_requirement(targets: list[OpTarget], mode: str, matrix) -> dict:
    """Which runtimes (package==version) execute every quantized op of this model correctly."""
    needs = sorted({(t.op.opcode, t.format) for t in targets if t.format != "fp32"})
    requirement = {"mode": mode, "needs": [{"op": op, "format": fmt} for op, fmt in needs],
                   "verified_on_host": host_runtime(), "runtimes": None}
    if matrix is None:
        requirement["note"] = "no capability matrix yet: only the host runtime was checked"
    elif mode == "static":
        requirement["note"] = "the capability matrix has no static-mode results: only the host runtime was checked"
    else:
        requirement["runtimes"] = [spec for spec in matrix.runtimes
                                   if all(matrix.supports(spec, op, mode, fmt) for op, fmt in needs)]
    return requirement


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def thresholds(mode: str, reference_float: np.ndarray, reference_host: np.ndarray) -> dict:
    host_error = rmse(reference_host, reference_float)
    floor = FLOOR * float(np.sqrt(np.mean(reference_float ** 2)))
    return {
        "probe_rel_l2": TOLERANCE[mode],
        "rollout_rmse_vs_host": MARGIN * host_error + floor,
        "rollout_rmse_vs_float": (1 + MARGIN) * host_error + floor,
        "host_rmse_vs_float": host_error,
        "margin": MARGIN,
        "floor": floor,
        "rule": "see edgetqs/converter/deploy.py: margins over the host's quantized-vs-float error",
    }
