"""Rollouts of a model with covariates (features it reads but does not predict).

Every backend's rollout must equal a plain step-by-step loop: call the model
on the window, put the prediction into the fed-back columns of the next row
and the given covariate values into the covariate columns, shift by one.
"""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import edgetqs.ranges.executor  # noqa: F401  (registers the fake-quant backend)
from edgetqs.engine import Engine
from edgetqs.engine.backends import make_backend
from edgetqs.engine.litert import LiteRTRunner
from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.tflite_graph import TFLiteGraph
from tests.engine.covariate_standin import FEATURES, WINDOW, build_covariate_standin

HORIZON, K = 12, 4


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_covariate_standin(tmp_path_factory.mktemp("covariate"))


@pytest.fixture(params=["covariates=1", "covariates=0+"], ids=["last", "first"])
def spec(request) -> RolloutSpec:
    return RolloutSpec.parse(f"window={WINDOW},features={FEATURES},{request.param}")


def inputs(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    contexts = rng.standard_normal((K, WINDOW, FEATURES)).astype(np.float32)
    # a forcing signal well away from anything the model could predict
    t = np.arange(HORIZON, dtype=np.float32)
    covariates = (2.0 * np.sin(0.7 * t[None, :, None] + rng.uniform(0, 6, (K, 1, 1)))).astype(np.float32)
    return contexts, covariates


def step_by_step(call, contexts: np.ndarray, covariates: np.ndarray, spec: RolloutSpec) -> np.ndarray:
    """The plain loop, one window at a time, one step at a time."""
    given = spec.covariates
    predicted = [i for i in range(spec.features) if i not in given]
    out = np.zeros((len(contexts), HORIZON, len(predicted)), np.float32)
    for k, window in enumerate(contexts):
        window = window.copy()
        for t in range(HORIZON):
            y = np.asarray(call(window[None])).reshape(-1)
            out[k, t] = y
            row = np.zeros(spec.features, np.float32)
            row[predicted] = y
            row[given] = covariates[k, t]
            window = np.vstack([window[1:], row[None]])
    return out


def litert_call(path):
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def call(x):
        interpreter.set_tensor(inp, x.astype(np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(out).copy()

    return call


def test_litert_runner_rollout_equals_the_plain_loop(model_path, spec):
    contexts, covariates = inputs()
    expected = step_by_step(litert_call(model_path), contexts, covariates, spec)
    got = LiteRTRunner(model_path, spec).rollout(contexts, HORIZON, covariates)
    assert got.shape == (K, HORIZON, FEATURES - 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["numba", "litert", "fake-quant"])
def test_backend_rollouts_equal_the_plain_loop_over_their_own_forward(model_path, spec, backend):
    contexts, covariates = inputs()
    run = make_backend(backend, TFLiteGraph.load(model_path), spec)
    expected = step_by_step(run.forward, contexts, covariates, spec)
    np.testing.assert_allclose(run.rollout(contexts, HORIZON, covariates), expected, rtol=1e-5, atol=1e-5)
    probes = run.rollout_probes(contexts, HORIZON, [{}, {}], covariates)
    assert probes.shape == (2, K, HORIZON, FEATURES - 1)
    np.testing.assert_allclose(probes[1], expected, rtol=1e-5, atol=1e-5)


def test_engine_rollout_matches_litert_and_the_covariates_matter(model_path, spec):
    contexts, covariates = inputs()
    engine = Engine(TFLiteGraph.load(model_path), spec)
    reference = step_by_step(litert_call(model_path), contexts, covariates, spec)
    ours = engine.rollout(contexts, HORIZON, covariates)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)
    # other covariate values give another trajectory: the rollout reads them
    other = engine.rollout(contexts, HORIZON, -covariates)
    assert np.abs(other[:, 1:] - ours[:, 1:]).max() > 1e-2
    # the first prediction depends only on the context
    np.testing.assert_allclose(other[:, 0], ours[:, 0], rtol=1e-6)


def test_perturbed_probe_equals_the_loop_with_perturbed_weights(model_path, spec):
    contexts, covariates = inputs()
    graph = TFLiteGraph.load(model_path)
    engine = Engine(graph, spec)
    name = next(n for n in engine.weight_names() if engine.weight(n).ndim == 2)
    delta = {name: 0.05 * np.sign(engine.weight(name))}
    probes = engine.rollout_probes(contexts, HORIZON, [{}, delta], covariates)
    from edgetqs.model.tflite_graph import replace_constants

    patched = LiteRTRunner(replace_constants(graph, {name: engine.weight(name) + delta[name]}), spec)
    expected = step_by_step(patched.forward, contexts, covariates, spec)
    np.testing.assert_allclose(probes[1], expected, rtol=1e-4, atol=1e-5)
    assert np.abs(probes[1] - probes[0]).max() > 1e-4


def test_missing_or_misshaped_covariates_are_refused_with_the_fix(model_path, spec):
    contexts, covariates = inputs()
    for backend in ("numba", "litert", "fake-quant"):
        run = make_backend(backend, TFLiteGraph.load(model_path), spec)
        with pytest.raises(EdgeTQSError, match="--data") as info:
            run.rollout(contexts, HORIZON)
        assert "got none" in str(info.value)
        with pytest.raises(EdgeTQSError, match=r"got shape \(4, 11, 1\)"):
            run.rollout(contexts, HORIZON, covariates[:, :-1])
        with pytest.raises(EdgeTQSError, match="covariates"):
            run.rollout_probes(contexts, HORIZON, [{}], covariates[:2])


def test_covariates_for_a_model_without_them_are_refused(model_path):
    plain = RolloutSpec(window=WINDOW, features=FEATURES)
    contexts, covariates = inputs()
    # the model's output has 2 features, so a spec without covariates does not match it
    with pytest.raises(EdgeTQSError, match="do not match the rollout spec"):
        Engine(TFLiteGraph.load(model_path), plain)
    from edgetqs.engine.rollout import check_covariates

    with pytest.raises(EdgeTQSError, match="without covariates"):
        check_covariates(covariates, K, HORIZON, plain)


@pytest.mark.parametrize("text, problem", [
    ("window=8,features=3,covariates=3", "leave no feature to predict"),
    ("window=8,features=3,covariates=0+5", "distinct feature indices 0..2"),
    ("window=8,features=3,covariates=1+1", "distinct feature indices"),
    ("window=8,features=3,covariates=x", "not a whole number"),
])
def test_bad_covariate_specs_say_what_is_wrong(text, problem):
    with pytest.raises(EdgeTQSError, match=problem):
        RolloutSpec.parse(text)


def test_spec_selects_the_given_and_fed_back_columns():
    spec = RolloutSpec.parse("window=4,features=5,covariates=2")
    assert spec.covariates == [3, 4] and spec.fed_back == [0, 1, 2] and spec.outputs == 3
    spec = RolloutSpec.parse("window=4,features=5,covariates=0+3")
    assert spec.covariates == [0, 3] and spec.fed_back == [1, 2, 4]
