"""Rollout backends: what TQS, the ranges study and plan search roll models out with.

A backend runs one canonical model autoregressively, batched over context
windows, and can roll out weight-perturbed copies of it side by side
(``rollout_probes``). Three implement :class:`RolloutBackend`:

| name | class | what it trusts |
|---|---|---|
| ``numba`` | ``engine.Engine`` | the engine's kernels; probe groups share each op's unperturbed work |
| ``litert`` | ``engine.blackbox.LiteRTRollout`` | only the LiteRT interpreter (one patched .tflite per probe) |
| ``fake-quant`` | ``ranges.executor.FakeQuantEngine`` | the engine, with weights and activations fake-quantized |

They are registered by name (the names ``edgetqs score --engine`` offers):
``make_backend(name, graph, spec)``. The two engine-level ones are
registered here; a backend defined above this layer registers itself with
``register_backend`` when its module is imported (ranges/executor.py does, and
``edgetqs.sensitivity`` imports it so the CLI and the API always see it).
A new backend is one class with these four members plus one
``register_backend`` call.

Resuming: a backend whose ``rollout_probes`` also takes contexts [G, K, window, F]
(each probe group from its own windows) says so with ``group_contexts = True``;
all three here do. A sweep then grows its horizon by resuming every rollout from
the window it reached (engine/rollout.py: windows_after) instead of re-running it
from its contexts; for a backend without the attribute it re-runs (same numbers).
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from edgetqs.engine.blackbox import LiteRTRollout
from edgetqs.engine.executor import Engine
from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.tflite_graph import TFLiteGraph


@runtime_checkable
class RolloutBackend(Protocol):
    """Autoregressive rollouts of one canonical model (METHOD.md §1), batched over contexts."""

    name: str  # the registry name, recorded in score files ("engine")
    spec: RolloutSpec

    def weight(self, name: str) -> np.ndarray:
        """The float32 value of a weight tensor (graph shape), as the backend computes with it."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """One model call: windows [B, window, F] -> [B, patch, F - C] (C: the spec's covariates)."""

    def rollout(self, contexts: np.ndarray, horizon: int, covariates: np.ndarray | None = None) -> np.ndarray:
        """contexts [K, window, F] (+ the given covariates [K, horizon*patch, C]) -> [K, horizon*patch, F - C]."""

    def rollout_probes(self, contexts: np.ndarray, horizon: int, deltas: list[dict[str, np.ndarray]],
                       covariates: np.ndarray | None = None) -> np.ndarray:
        """Group g runs the K contexts with weights ``W + deltas[g]`` ({} = as is) -> [G, K, horizon*patch, F - C].

        ``contexts`` [K, window, F] are every group's; with ``group_contexts = True`` the backend also
        takes [G, K, window, F], group g starting from ``contexts[g]``."""


BackendFactory = Callable[[TFLiteGraph, RolloutSpec], RolloutBackend]

_BACKENDS: dict[str, BackendFactory] = {Engine.name: Engine, LiteRTRollout.name: LiteRTRollout}
DEFAULT_BACKEND = Engine.name


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``factory(graph, spec)`` available as backend ``name`` (re-registering replaces it)."""
    _BACKENDS[name] = factory


def backend_names() -> list[str]:
    """Registered backend names, the default first."""
    return sorted(_BACKENDS, key=lambda n: (n != DEFAULT_BACKEND, n))


def make_backend(name: str, graph: TFLiteGraph, spec: RolloutSpec) -> RolloutBackend:
    """Backend ``name`` for this model; an engine that lacks an op raises UnsupportedOpError (an EdgeTQSError)."""
    if name not in _BACKENDS:
        raise EdgeTQSError(f"unknown rollout backend '{name}'", f"use one of: {', '.join(backend_names())}")
    return _BACKENDS[name](graph, spec)
