"""The black-box rollout backend ("litert"): perturb the .tflite itself and roll out through LiteRT.

For a model with an op the numba engine does not cover, or on request
(``--engine litert``), each probe's weights are written into a copy of the
flatbuffer (``tflite_graph.replace_constants``) and that copy is rolled out by
the real LiteRT interpreter (``engine.litert.LiteRTRunner``), all context
windows as one batch. It is slow — one interpreter per probe, no shared work —
but trusts nothing but the runtime, which is why the tests compare the
engine's rankings against it. A ``RolloutBackend`` (engine/backends.py), like the engine.
"""

from __future__ import annotations

import numpy as np

from edgetqs.engine.litert import LiteRTRunner
from edgetqs.engine.rollout import check_group_windows
from edgetqs.model.card import RolloutSpec
from edgetqs.model.tflite_graph import TFLiteGraph, replace_constants


class LiteRTRollout:
    """Rollouts of a canonical model, and of weight-perturbed copies of it, through LiteRT."""

    name = "litert"
    group_contexts = True  # rollout_probes takes [G, K, window, F] (one rollout per group anyway)

    def __init__(self, graph: TFLiteGraph, spec: RolloutSpec, num_threads: int | None = None):
        self.graph = graph
        self.spec = spec
        self.num_threads = num_threads
        self._base = LiteRTRunner(graph.path.read_bytes() if graph.path else replace_constants(graph, {}), spec,
                                  num_threads)
        self._weights: dict[str, np.ndarray] = {}

    def weight(self, name: str) -> np.ndarray:
        if name not in self._weights:
            self._weights[name] = self.graph.float_constant(self.graph.tensor_by_name(name))
        return self._weights[name]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """One model call of the model as it is: windows [B, window, F] -> [B, patch, F]."""
        return self._base.forward(x)

    def rollout(self, contexts: np.ndarray, horizon: int, covariates: np.ndarray | None = None) -> np.ndarray:
        """contexts [K, window, F] -> [K, horizon*patch, F - C] with the model as it is."""
        return self._base.rollout(contexts, horizon, covariates)

    def rollout_probes(self, contexts: np.ndarray, horizon: int, deltas: list[dict[str, np.ndarray]],
                       covariates: np.ndarray | None = None) -> np.ndarray:
        """One rollout per perturbation (weights + delta) -> [G, K, horizon*patch, F]; {} is the reference.

        ``contexts``: [K, window, F] for every group, or [G, K, window, F], each group's own."""
        contexts, _ = check_group_windows(contexts, len(deltas), self.spec)
        runs = []
        for delta, windows in zip(deltas, contexts):
            if not delta:
                runs.append(self.rollout(windows, horizon, covariates))
                continue
            patched = replace_constants(self.graph, {name: self.weight(name) + d for name, d in delta.items()})
            runs.append(LiteRTRunner(patched, self.spec, self.num_threads).rollout(windows, horizon, covariates))
        return np.stack(runs)
