"""Adaptive sweeps vs the full K x T sweep: the same ranking for less work."""

from __future__ import annotations

import numpy as np
import pytest

from edgetqs.tqs.adaptive import AdaptivePolicy, spearman, spread_order
from edgetqs.tqs.score import ScoreSettings, score_model


def test_spread_order_prefixes_cover_the_series():
    order = spread_order(16)
    assert sorted(order) == list(range(16))
    assert order[:4] == [0, 8, 4, 12]
    assert spread_order(1) == [0]


def test_policy_rejects_a_start_too_small_to_halve():
    from edgetqs.errors import EdgeTQSError

    with pytest.raises(EdgeTQSError):
        AdaptivePolicy(start_windows=1).validate()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["patchtf-tiny", "resmlp-tiny"])
def test_adaptive_ranking_matches_the_full_sweep(name):
    from edgetqs import zoo

    model = zoo.build(name)
    full = score_model(model.graph, model.card, ScoreSettings(), progress=False)
    adaptive = score_model(model.graph, model.card, ScoreSettings(adaptive=True), progress=False)
    info = adaptive.settings["adaptive"]
    assert info["work_fraction"] < 1.0  # it did stop early
    assert adaptive.settings["horizon"] == info["horizon_run"] <= full.settings["horizon"]  # what was measured
    for probe in ("quant", "gauss"):
        a = np.array([u.gamma(probe) for u in full.units])
        b = np.array([u.gamma(probe) for u in adaptive.units])
        assert spearman(a, b) >= 0.95, (probe, spearman(a, b))


# -- growing the horizon by resuming -------------------------------------------------------------

def _local_runner(graph, card, settings, resumes=True):
    """The in-process runner; ``resumes=False``: one that re-runs every job from its contexts at 2t."""
    from edgetqs.tqs.score import backend_for
    from edgetqs.tqs.sweep import LocalRunner

    class RerunRunner(LocalRunner):
        resumes = False

    cls = LocalRunner if resumes else RerunRunner
    return cls(backend_for(graph, card, settings.engine, []), graph, settings.probe_bits, settings.seed,
               card.rollout.patch)


def test_resumed_sweep_equals_the_uninterrupted_one_bit_for_bit(mlp_model, monkeypatch):
    from edgetqs.tqs import sweep
    from edgetqs.tqs.contexts import free_run
    from edgetqs.tqs.sweep import make_jobs
    from edgetqs.tqs.units import build_units

    graph, card = mlp_model
    settings = ScoreSettings()
    monkeypatch.setattr(sweep, "CHUNK_BYTES", 1)  # one job per chunk: the reference rides in the first only
    runner = _local_runner(graph, card, settings)
    jobs = make_jobs(build_units(card, graph, "layer", None), "both")
    windows = free_run(runner.backend, card.rollout, 5, 0, 12).windows
    whole_reference, whole, norms = runner.run(jobs, windows, 12)
    reference, head, head_norms, state = runner.run_resumable(jobs, windows, 5)
    more_reference, tail, tail_norms, state = runner.run_resumable(jobs, state, 7)
    assert state.calls == 12 and state.jobs.shape == (len(jobs), *windows.shape)
    np.testing.assert_array_equal(np.concatenate([reference, more_reference], axis=1), whole_reference)
    np.testing.assert_array_equal(np.concatenate([head, tail], axis=2), whole)
    np.testing.assert_array_equal(head_norms, norms)
    np.testing.assert_array_equal(tail_norms, norms)
    assert np.ptp(whole[:, :, -1]) > 0  # the jobs really differ


def _adaptive_both_ways(graph, card, settings):
    """The adaptive sweep resuming its rollouts, and re-running them (the runner without resume)."""
    return [score_model(graph, card, settings, progress=False, runner=_local_runner(graph, card, settings, resumes))
            for resumes in (True, False)]


def _scores(scores) -> dict:
    """The whole score file but for the work accounting (what ran per stage: the same stages)."""
    data = scores.to_dict()
    info = data["settings"].pop("adaptive")
    data["stages"] = [{k: v for k, v in stage.items() if k not in ("work", "resumed")} for stage in info["stages"]]
    return data


def test_adaptive_sweep_resuming_scores_the_same_for_less_work(mlp_model):
    graph, card = mlp_model
    # settled=1.0: every unsettled stage grows, so the horizon doubles (and is resumed) at least once
    resumed, rerun = _adaptive_both_ways(graph, card, ScoreSettings(windows=8, horizon=16, adaptive=True,
                                                                    settled=1.0))
    a, b = resumed.settings["adaptive"], rerun.settings["adaptive"]
    assert [s.get("resumed") for s in a["stages"]].count(True) >= 1
    assert _scores(resumed) == _scores(rerun)  # the same stages and gammas, bit for bit
    assert a["work_calls"] < b["work_calls"]
    # each (job, window) ran each call once: the work is what the stages' windows x calls add up to
    assert a["work_calls"] <= a["full_sweep_calls"] and a["work_fraction"] <= 1.0


def test_adaptive_work_counts_the_calls_run_and_never_exceeds_the_full_sweep(mlp_model):
    """The work recorded is the perturbed calls the engine really made, and at most the full sweep's."""
    from edgetqs.engine import Engine
    from edgetqs.tqs.sweep import LocalRunner

    class CountingEngine(Engine):  # the real engine, counting the (job, window) calls it runs
        job_calls = 0

        def rollout_probes(self, contexts, horizon, deltas, covariates=None):
            self.job_calls += sum(1 for delta in deltas if delta) * np.shape(contexts)[-3] * horizon
            return super().rollout_probes(contexts, horizon, deltas, covariates)

    graph, card = mlp_model
    settings = ScoreSettings(windows=16, horizon=32, adaptive=True, settled=1.0)
    engine = CountingEngine(graph, card.rollout)
    runner = LocalRunner(engine, graph, settings.probe_bits, settings.seed, card.rollout.patch)
    info = score_model(graph, card, settings, progress=False, backend=engine, runner=runner).settings["adaptive"]
    assert any(stage.get("resumed") for stage in info["stages"])
    assert info["work_calls"] == engine.job_calls
    # each (job, window) ran each of its calls once: jobs x k x t of what ran, at most the full K x T
    jobs = info["full_sweep_calls"] // (settings.windows * settings.horizon)
    assert info["work_calls"] == jobs * info["windows_run"] * info["horizon_run"] <= info["full_sweep_calls"]


def test_adaptive_covariate_sweep_resumes_with_the_series_covariates(tmp_path):
    from edgetqs.model.card import RolloutSpec
    from edgetqs.model.intake import load_model
    from tests.engine.covariate_standin import SPEC, build_covariate_standin, write_covariate_series

    model = load_model(build_covariate_standin(tmp_path), RolloutSpec.parse(SPEC))
    settings = ScoreSettings(windows=8, horizon=16, adaptive=True, settled=1.0,
                             data=write_covariate_series(tmp_path / "series.csv"))
    resumed, rerun = _adaptive_both_ways(model.graph, model.card, settings)
    assert [s.get("resumed") for s in resumed.settings["adaptive"]["stages"]].count(True) >= 1
    assert _scores(resumed) == _scores(rerun)
    assert resumed.settings["adaptive"]["work_calls"] < rerun.settings["adaptive"]["work_calls"]
