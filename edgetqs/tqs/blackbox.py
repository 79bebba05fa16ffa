"""The black-box TQS path: perturb the .tflite itself and roll out through LiteRT.

For a model with an op the numba engine does not cover, or on request
(``--engine litert``), each probe's weights are written into a copy of the
flatbuffer (``tflite_graph.replace_constants``) and the copy is rolled out by
the real LiteRT interpreter, all context windows as one batch. It is slow (one
interpreter per probe) but trusts nothing but the runtime, which is why the
tests compare the engine's rankings against it.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.tflite_graph import TFLiteGraph, replace_constants


class LiteRTRollout:
    """Rollouts of a canonical model (and perturbed copies of it) through LiteRT."""

    name = "litert"

    def __init__(self, graph: TFLiteGraph, spec: RolloutSpec, num_threads: int = 1):
        self.graph = graph
        self.spec = spec
        self.num_threads = num_threads
        self._base_bytes = graph.path.read_bytes() if graph.path else replace_constants(graph, {})
        self._weights: dict[str, np.ndarray] = {}

    def weight(self, name: str) -> np.ndarray:
        if name not in self._weights:
            self._weights[name] = self.graph.float_constant(self.graph.tensor_by_name(name))
        return self._weights[name]

    def rollout(self, contexts: np.ndarray, horizon: int, model_bytes: bytes | None = None) -> np.ndarray:
        """Roll ``contexts`` [K, window, F] out for ``horizon`` model calls -> [K, horizon*patch, F]."""
        contexts = np.ascontiguousarray(contexts, np.float32)
        interpreter = self._interpreter(model_bytes or self._base_bytes, len(contexts))
        if interpreter is None:  # the model's batch is fixed: one window at a time
            return np.concatenate([self.rollout(c[None], horizon, model_bytes) for c in contexts])
        return _roll(interpreter, contexts, horizon, self.spec)

    def rollout_probes(self, contexts: np.ndarray, horizon: int, deltas: list[dict[str, np.ndarray]]) -> np.ndarray:
        """One rollout per perturbation (weights + delta) -> [G, K, horizon*patch, F].

        An empty dict is the unperturbed model.
        """
        runs = []
        for delta in deltas:
            patched = {name: self.weight(name) + d for name, d in delta.items()}
            model_bytes = replace_constants(self.graph, patched) if patched else None
            runs.append(self.rollout(contexts, horizon, model_bytes))
        return np.stack(runs)

    def _interpreter(self, model_bytes: bytes, batch: int) -> Interpreter | None:
        interpreter = Interpreter(model_content=model_bytes, num_threads=self.num_threads)
        detail = interpreter.get_input_details()[0]
        shape = [batch, self.spec.window, self.spec.features]
        if list(detail["shape"]) != shape:
            try:
                interpreter.resize_tensor_input(detail["index"], shape, strict=False)
                interpreter.allocate_tensors()
            except (RuntimeError, ValueError):
                if batch == 1:
                    raise EdgeTQSError(
                        f"LiteRT cannot run the model on input shape {shape}",
                        "check the rollout spec (window, features) in the model card",
                    ) from None
                return None
        else:
            interpreter.allocate_tensors()
        return interpreter


def _roll(interpreter: Interpreter, contexts: np.ndarray, horizon: int, spec: RolloutSpec) -> np.ndarray:
    """Append-and-shift feedback: each output patch joins the window, the oldest steps leave."""
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    batch, window, features = contexts.shape
    patch = spec.patch
    state = contexts.copy()
    trajectory = np.empty((batch, horizon * patch, features), np.float32)
    for step in range(horizon):
        interpreter.set_tensor(input_index, state)
        interpreter.invoke()
        out = interpreter.get_tensor(output_index).reshape(batch, patch, features)
        trajectory[:, step * patch:(step + 1) * patch] = out
        state = np.concatenate([state[:, patch:], out], axis=1)
    return trajectory
