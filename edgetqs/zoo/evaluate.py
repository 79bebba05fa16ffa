"""Float rollout quality of a canonical model against the true system.

Rollouts here run in the LiteRT interpreter, window by window: a slow but
independent reference (the numba engine is checked against runs like these).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetqs.metrics import rollout_metrics
from edgetqs.model.card import RolloutSpec
from edgetqs.model.quiet import quiet_stderr
from edgetqs.zoo.data import true_trajectories

QUALITY_WINDOWS = 8


def litert_rollout(tflite_path: str | Path, spec: RolloutSpec, contexts: np.ndarray, horizon: int) -> np.ndarray:
    """Roll the model out from each context [K, window, F] for ``horizon`` steps -> [K, horizon, F]."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_stderr():  # LiteRT announces its XNNPACK delegate on fd 2
        interpreter = Interpreter(model_path=str(tflite_path), num_threads=1)
        interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    results = np.empty((len(contexts), horizon, spec.features), np.float32)
    for k, context in enumerate(np.asarray(contexts, np.float32)):
        window = context.copy()
        produced = 0
        while produced < horizon:
            interpreter.set_tensor(input_index, window[None])
            interpreter.invoke()
            patch = interpreter.get_tensor(output_index).reshape(-1, spec.features)[: spec.patch]
            take = min(len(patch), horizon - produced)
            results[k, produced : produced + take] = patch[:take]
            produced += take
            window = np.concatenate([window[len(patch):], patch])  # append_shift
    return results


def float_quality(tflite_path: str | Path, spec: RolloutSpec, system: str, horizon: int,
                  windows: int = QUALITY_WINDOWS, seed: int = 0) -> dict:
    """METHOD.md §5 summary of the float model's rollouts vs the true system (test data)."""
    contexts, truth = true_trajectories(system, spec.window, horizon, count=windows, seed=seed)
    with np.errstate(all="ignore"):
        pred = litert_rollout(tflite_path, spec, contexts, horizon)
    summary = rollout_metrics(pred, truth).summary()
    summary["windows"] = int(len(contexts))
    return summary
