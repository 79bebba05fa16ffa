"""A model with a covariate (an input it reads but does not predict) through the whole pipeline:
windows and covariates from the user's data, TQS, plan, convert, flash and validate on the sshd board.

The model reads 3 features and predicts 2; the third column is a forcing signal
given by the data at every call. Data-free contexts cannot supply it, so every
stage that would draw them refuses and names the data flag.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgetqs.bundle import load_bundle
from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.intake import load_model
from edgetqs.remote.flash import flash
from edgetqs.remote.transport import Transport
from edgetqs.remote.validate import validate
from edgetqs.tqs import contexts as ctx
from edgetqs.tqs.score import ScoreSettings, score_model
from tests.engine.covariate_standin import OUTPUTS, SPEC, WINDOW, build_covariate_standin, write_covariate_series
from tests.intake.pipeline import HORIZON, WINDOWS, through_pipeline
from tests.remote.conftest import ssh_keys, sshd_board, sshd_board_factory  # noqa: F401  (the loopback board)



@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(build_covariate_standin(tmp_path_factory.mktemp("covariate-model")), RolloutSpec.parse(SPEC))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    return write_covariate_series(tmp_path_factory.mktemp("covariate-data") / "series.csv")


@pytest.fixture(scope="module")
def trip(model, data, tmp_path_factory) -> dict:
    return through_pipeline(model, tmp_path_factory.mktemp("covariate-trip"), data=data)


def test_contexts_from_data_carry_the_covariates_ahead_and_truth_of_the_predicted_columns(model, data):
    series = ctx.load_series(data)
    contexts = ctx.from_file(data, model.card.rollout, WINDOWS, HORIZON)
    assert contexts.covariates.shape == (WINDOWS, HORIZON, 1) and contexts.truth.shape == (WINDOWS, HORIZON, OUTPUTS)
    last = len(series) - WINDOW - HORIZON  # the last window starts there (windows spread over the series)
    np.testing.assert_array_equal(contexts.covariates[-1, :, 0], series[last + WINDOW:last + WINDOW + HORIZON, 2])
    np.testing.assert_array_equal(contexts.truth[-1], series[last + WINDOW:last + WINDOW + HORIZON, :2])
    with pytest.raises(EdgeTQSError, match="carry covariates for"):
        contexts.covariates_for(HORIZON + 1, 1)


def test_data_free_scoring_and_conversion_refuse_and_name_the_data_flags(model, trip, tmp_path):
    with pytest.raises(EdgeTQSError, match="reads covariates") as scored:
        score_model(model.graph, model.card, ScoreSettings(horizon=HORIZON, windows=WINDOWS), progress=False)
    assert "--data FILE" in scored.value.fix
    from edgetqs.converter.pipeline import convert

    plan = trip["result"].out.parent / "plan.json"
    with pytest.raises(EdgeTQSError, match="reads covariates") as converted:
        convert(model, plan, tmp_path / "bundle", horizon=HORIZON, windows=WINDOWS)
    assert "--calibration FILE" in converted.value.fix
    assert not (tmp_path / "bundle").exists()


def test_adaptive_scoring_feeds_each_windows_own_covariates(model, data):
    """At K=4, T=8 the adaptive sweep's first stage is the whole sweep, its windows in spread order:
    the scores equal the full sweep's only if every window got its own covariates."""
    full = score_model(model.graph, model.card, ScoreSettings(horizon=8, windows=4, data=data), progress=False)
    adaptive = score_model(model.graph, model.card, ScoreSettings(horizon=8, windows=4, data=data, adaptive=True),
                           progress=False)
    assert adaptive.settings["adaptive"]["stages"][0] | {"windows": 4, "horizon": 8} == adaptive.settings["adaptive"]["stages"][0]
    for probe in ("quant", "gauss"):
        np.testing.assert_allclose([u.gamma(probe) for u in adaptive.units], [u.gamma(probe) for u in full.units],
                                   rtol=1e-6)


def test_scores_from_data_see_the_covariates(model, data, trip):
    """The same windows with the forcing flattened give other scores: the sweep fed the data's covariates."""
    contexts = ctx.from_file(data, model.card.rollout, WINDOWS, HORIZON)
    settings = ScoreSettings(horizon=HORIZON, windows=WINDOWS, data=data)
    fed = score_model(model.graph, model.card, settings, contexts=contexts, progress=False)
    flat = ctx.Contexts(contexts.windows, contexts.source, contexts.truth, np.zeros_like(contexts.covariates))
    other = score_model(model.graph, model.card, settings, contexts=flat, progress=False)
    from_file = score_model(model.graph, model.card, settings, progress=False)
    gammas = lambda s: np.array([u.gamma("quant") for u in s.units])  # noqa: E731
    assert np.all(np.isfinite(gammas(fed)))
    np.testing.assert_array_equal(gammas(fed), gammas(from_file))
    assert not np.allclose(gammas(fed), gammas(other))


def test_bundle_holds_the_covariates_its_references_were_rolled_out_with(model, data, trip):
    bundle = load_bundle(trip["result"].out)
    assert bundle.rollout["covariates"] == [2]
    arrays = bundle.contexts
    expected = ctx.from_file(data, model.card.rollout, WINDOWS, HORIZON).covariates
    np.testing.assert_array_equal(arrays["covariates"], expected)
    assert arrays["reference_host"].shape == (WINDOWS, HORIZON, OUTPUTS)
    np.testing.assert_array_equal(arrays["truth"], ctx.from_file(data, model.card.rollout, WINDOWS, HORIZON).truth)


def test_covariate_bundle_validates_on_the_sshd_board(trip, sshd_board, tmp_path):
    """The board's runner feeds the bundle's covariates as the host did: same numbers, a pass."""
    bundle = trip["result"].out
    with Transport(sshd_board.connection()) as t:
        flash(t, bundle)
        result = validate(t, bundle, tmp_path / "v", python=sys.executable)
    assert result.passed, result.message()
    assert result.board.trajectories.shape == (WINDOWS, HORIZON, OUTPUTS)
    assert result.host_vs_bundle_reference == 0.0 and result.vs_host.rmse == 0.0


def test_verified_search_rolls_plans_out_with_the_datas_covariates(model, data, trip):
    """Whole-plan rollouts (the search's measure) feed the same covariates as the LiteRT rollout of the float model."""
    from edgetqs.engine.litert import LiteRTRunner
    from edgetqs.planner.plan import build_problem
    from edgetqs.planner.search import ExportedWeights, SearchSettings, plan_rollouts, verified_search
    from edgetqs.runtimes import DEFAULT_HOST_RUNTIME

    scores = score_model(model.graph, model.card, ScoreSettings(horizon=HORIZON, windows=WINDOWS, data=data),
                         progress=False)
    problem = build_problem(model.graph, scores, scores.sha256(), DEFAULT_HOST_RUNTIME.spec)
    settings = SearchSettings(horizon=HORIZON, windows=WINDOWS, data=data, evaluations=4)
    rollouts = plan_rollouts(problem, model.card, settings, ExportedWeights(problem, model.tflite_path))
    contexts = ctx.from_file(data, model.card.rollout, WINDOWS, HORIZON)
    float_rollout = LiteRTRunner(model.tflite_path, model.card.rollout).rollout(contexts.windows, HORIZON,
                                                                                 contexts.covariates)
    np.testing.assert_allclose(rollouts.reference, float_rollout, rtol=1e-4, atol=1e-5)
    result = verified_search(problem, model.card, trip["budget"], settings, rollouts=rollouts)
    assert result.best.memory_bytes <= trip["budget"] and np.isfinite(result.best.rmse)


def test_static_plans_of_a_covariate_model_are_priced_on_the_data_they_are_calibrated_on(model, data, tmp_path):
    from edgetqs.converter.pipeline import convert
    from edgetqs.planner.plan import make_plan

    scores = score_model(model.graph, model.card, ScoreSettings(horizon=HORIZON, windows=WINDOWS, data=data),
                         progress=False)
    with pytest.raises(EdgeTQSError, match="reads covariates"):  # priced data-free: refused, not mispriced
        make_plan(model.graph, scores, budget_bytes=10**6, mode="static", model=model)
    plan, _ = make_plan(model.graph, scores, budget_bytes=10**6, mode="static", model=model, calibration=data)
    result = convert(model, plan.to_dict(), tmp_path / "static.tflite", mode="static", calibration=data)
    predicted = plan.predicted["model_bytes"]
    assert result.mode == "static" and abs(result.model_bytes - predicted) <= 0.01 * predicted
