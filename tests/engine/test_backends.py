"""The rollout backends behind one protocol and registry (engine/backends.py), and the
engine's composition hooks (OpHooks) that the fake-quant backend is built on."""

from __future__ import annotations

import numpy as np
import pytest

import edgetqs.ranges.executor  # noqa: F401  (registers the fake-quant backend, as edgetqs.sensitivity does)
from edgetqs.engine import Engine
from edgetqs.engine.backends import RolloutBackend, backend_names, make_backend
from edgetqs.errors import EdgeTQSError
from tests.engine.conftest import zoo_model


@pytest.fixture(scope="module")
def mlp():
    return zoo_model("mlp-lorenz96", count=3)


def test_every_registered_backend_is_a_rollout_backend_under_its_own_name(mlp):
    assert backend_names()[0] == "numba" and {"numba", "litert", "fake-quant"} <= set(backend_names())
    reference = Engine(mlp.graph, mlp.spec).rollout(mlp.contexts, 3)
    for name in backend_names():
        backend = make_backend(name, mlp.graph, mlp.spec)
        assert isinstance(backend, RolloutBackend) and backend.name == name
        trajectory = backend.rollout(mlp.contexts, 3)
        assert trajectory.shape == reference.shape
        probes = backend.rollout_probes(mlp.contexts, 3, [{}])
        np.testing.assert_allclose(probes[0], trajectory, rtol=1e-5, atol=1e-5)
        error = np.abs(trajectory - reference).max() / np.abs(reference).max()
        # the float backends agree; fake-quant (int8 weights and activations) moves the forecast a little
        assert error < (0.2 if name == "fake-quant" else 1e-4), f"{name}: {error}"
        assert (error > 1e-4) == (name == "fake-quant")


def test_unknown_backend_names_the_registered_ones(mlp):
    with pytest.raises(EdgeTQSError, match="numba"):
        make_backend("tpu", mlp.graph, mlp.spec)


class CountingHooks:
    """An identity wrapper: counts the ops it runs, including those that read a perturbed weight."""

    def __init__(self):
        self.inputs = self.ops = 0

    def on_input(self, x):
        self.inputs += 1
        return x

    def run_op(self, node, inputs, kernel):
        self.ops += 1
        return kernel(node, inputs)


def test_hooks_see_every_op_of_every_probe_group_and_change_nothing(mlp):
    plain = Engine(mlp.graph, mlp.spec)
    weight = next(n for n in plain.weight_names() if plain.weight(n).ndim == 2)
    deltas = [{}, {weight: 0.01 * np.sign(plain.weight(weight))}]
    hooks = CountingHooks()
    hooked = Engine(mlp.graph, mlp.spec, hooks=hooks)
    horizon = 4
    np.testing.assert_array_equal(hooked.rollout_probes(mlp.contexts, horizon, deltas),
                                  plain.rollout_probes(mlp.contexts, horizon, deltas))
    assert hooks.inputs == horizon and hooks.ops == horizon * len(plain.nodes)
