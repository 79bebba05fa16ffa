"""A rollout resumed from the windows it reached equals one uninterrupted rollout, bit for bit.

A rollout's whole state is its current window (engine/rollout.py): running t calls,
taking each group's next windows (windows_after) and running t' more from them with
the covariates offset by t*patch steps must give the 2t-call trajectories exactly,
for every probe group, with each group starting from its own windows.
"""

from __future__ import annotations

import numpy as np
import pytest

import edgetqs.ranges.executor  # noqa: F401  (registers the fake-quant backend)
from edgetqs.engine import Engine
from edgetqs.engine.backends import make_backend
from edgetqs.engine.rollout import windows_after
from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.tflite_graph import TFLiteGraph
from tests.engine.covariate_standin import FEATURES, WINDOW, build_covariate_standin
from tests.engine.test_probes import probe_deltas


def split_rollout(backend, contexts, first, second, deltas, covariates=None):
    """(uninterrupted [G, K, (first+second)*patch, F], first part then resumed from its windows)."""
    spec, patch = backend.spec, backend.spec.patch
    total = first + second
    given = (lambda a, b: None if covariates is None else covariates[:, a * patch: b * patch])
    whole = backend.rollout_probes(contexts, total, deltas, given(0, total))
    head = backend.rollout_probes(contexts, first, deltas, given(0, first))
    state = windows_after(contexts, head, given(0, first), spec)
    assert state.shape == (len(deltas), *contexts.shape)
    tail = backend.rollout_probes(state, second, deltas, given(first, total))
    return whole, np.concatenate([head, tail], axis=2)


@pytest.mark.parametrize("first", [3, 9], ids=["inside-the-window", "past-the-window"])
def test_resumed_probe_groups_equal_the_uninterrupted_rollout(standin, first):
    engine = Engine(standin.graph, standin.spec)
    deltas = probe_deltas(engine, engine.weight_names()[:4])
    whole, resumed = split_rollout(engine, standin.contexts, first, 5, deltas)
    np.testing.assert_array_equal(resumed, whole)
    assert np.abs(whole[1:] - whole[0]).max() > 0  # the groups really differ, so each resumed from its own state


def test_each_group_runs_from_its_own_windows(standin):
    engine = Engine(standin.graph, standin.spec)
    deltas = probe_deltas(engine, engine.weight_names()[:2])
    k = len(standin.contexts)
    own = np.stack([np.roll(standin.contexts, g, axis=0) for g in range(len(deltas))])
    trajs = engine.rollout_probes(own, 4, deltas)
    for g, delta in enumerate(deltas):  # row-exact: each group as if it ran alone on its windows
        np.testing.assert_array_equal(trajs[g], engine.rollout_probes(own[g], 4, [delta])[0])
    assert trajs.shape[:2] == (len(deltas), k)


def test_group_contexts_must_match_the_groups(standin):
    engine = Engine(standin.graph, standin.spec)
    stacked = np.stack([standin.contexts] * 3)
    with pytest.raises(EdgeTQSError, match="3 probe groups"):
        engine.rollout_probes(stacked, 2, [{}, {}])


@pytest.mark.parametrize("backend", ["numba", "litert", "fake-quant"])
def test_a_covariate_rollout_resumes_with_its_covariates_offset(tmp_path_factory, backend):
    path = build_covariate_standin(tmp_path_factory.mktemp("covariate"))
    spec = RolloutSpec.parse(f"window={WINDOW},features={FEATURES},covariates=1")
    run = make_backend(backend, TFLiteGraph.load(path), spec)
    assert run.group_contexts
    rng = np.random.default_rng(4)
    contexts = rng.standard_normal((3, WINDOW, FEATURES)).astype(np.float32)
    t = np.arange(20, dtype=np.float32)
    covariates = (2.0 * np.sin(0.7 * t[None, :, None] + rng.uniform(0, 6, (3, 1, 1)))).astype(np.float32)
    name = next(n for n in Engine(TFLiteGraph.load(path), spec).weight_names() if run.weight(n).ndim == 2)
    deltas = [{}, {name: 0.05 * np.sign(run.weight(name))}]
    for first in (5, 12):  # the resumed window still holds given rows / only the rollout's rows
        whole, resumed = split_rollout(run, contexts, first, 20 - first, deltas, covariates)
        np.testing.assert_array_equal(resumed, whole)
    # the offset matters: resuming with the first covariates again gives another trajectory
    head = run.rollout_probes(contexts, 5, deltas, covariates[:, :5])
    wrong = run.rollout_probes(windows_after(contexts, head, covariates[:, :5], spec), 5, deltas, covariates[:, :5])
    assert np.abs(wrong - whole[:, :, 5:10]).max() > 1e-3
