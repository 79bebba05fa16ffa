"""Rollout-verified search on a real zoo model: within the budget, never worse
than the knapsack on its own windows, bounded, deterministic, and its
whole-plan rollout agrees with LiteRT running the exported .tflite."""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgetqs.errors import EdgeTQSError  # noqa: E402
from edgetqs.planner.search import PlanRollouts, SearchSettings, verified_search  # noqa: E402
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME  # noqa: E402

HORIZON, WINDOWS = 8, 4


@pytest.fixture(scope="module")
def problem():
    import hashlib

    from edgetqs import zoo
    from edgetqs.planner.plan import build_problem
    from edgetqs.tqs.score import ScoreSettings, score_model

    model = zoo.build("mlp-sunspots")
    scores = score_model(model.graph, model.card, ScoreSettings(probe="quant", horizon=HORIZON, windows=WINDOWS),
                         progress=False)
    sha = hashlib.sha256(repr(scores.to_dict()).encode()).hexdigest()
    # priced without XNNPACK's packed copy: these tests are about rollout arithmetic, and the plans they
    # rely on (a blockwise unit at a tenth of the range) are the ones the file and arena alone give
    return model, build_problem(model.graph, scores, sha, DEFAULT_HOST_RUNTIME.spec, "dynamic", delegate="none")


def _budget(problem, share: float) -> int:
    low, high = problem.smallest_memory(), problem.largest_memory()
    return int(low + share * (high - low))


def _settings(**kw):
    return SearchSettings(horizon=HORIZON, windows=WINDOWS, **kw)


def test_search_fits_the_budget_and_never_loses_to_the_knapsack_on_its_windows(problem):
    model, prob = problem
    budget = _budget(prob, 0.15)
    result = verified_search(prob, model.card, budget, _settings(evaluations=12))
    assert result.plan.predicted["memory_bytes"] <= budget
    assert all(m.memory_bytes <= budget for m in result.evaluated)
    assert result.best.key() <= result.knapsack.key()
    assert len(result.evaluated) <= 12 and result.stopped in ("converged", "evaluations")
    assert result.plan.allocator == "verified-search"
    assert result.evaluated[0].origin.startswith("start: knapsack at 100%")
    summary = result.summary()
    assert len(summary["plans"]) == len(result.evaluated) and summary["best"]["rmse"] == result.best.rmse


def test_search_is_deterministic_under_its_seed(problem):
    model, prob = problem
    budget = _budget(prob, 0.15)
    first = verified_search(prob, model.card, budget, _settings(evaluations=10, seed=3))
    second = verified_search(prob, model.card, budget, _settings(evaluations=10, seed=3))
    assert [m.choice for m in first.evaluated] == [m.choice for m in second.evaluated]
    assert [m.rmse for m in first.evaluated] == [m.rmse for m in second.evaluated]


def test_search_refuses_a_budget_below_the_smallest_plan(problem):
    model, prob = problem
    with pytest.raises(EdgeTQSError, match="below the smallest footprint"):
        verified_search(prob, model.card, prob.smallest_memory() - 1, _settings(evaluations=4))
    with pytest.raises(EdgeTQSError, match="at least one evaluation"):
        verified_search(prob, model.card, _budget(prob, 0.5), _settings(evaluations=0))


def test_whole_plan_rollout_matches_litert_on_the_exported_model(problem, tmp_path):
    """The arithmetic the search judges plans with is the exported model's: same
    windows, the converted .tflite in LiteRT vs PlanRollouts, a few calls (the plan
    has a blockwise unit, where the reference quantizer and AEQ differ)."""
    from edgetqs.converter import convert
    from edgetqs.engine.litert import LiteRTRunner
    from edgetqs.planner.plan import solve
    from edgetqs.planner.search import ExportedWeights

    model, prob = problem
    plan = solve(prob, _budget(prob, 0.1))
    assert {a.format for a in plan.assignments} - {"fp32"}, "the plan quantizes something"
    contexts = np.random.default_rng(0).standard_normal((WINDOWS, model.card.rollout.window, 1)).astype(np.float32)
    rollouts = PlanRollouts(prob, model.card.rollout, contexts, 4, weights=ExportedWeights(prob, model.tflite_path))
    choice = [u.formats.index(a.format) for u, a in zip(prob.units, plan.assignments)]
    simulated = rollouts.rollout([choice])[0]
    out = tmp_path / "plan.tflite"
    with contextlib.redirect_stdout(io.StringIO()):
        convert(model, plan.to_dict(), out, horizon=2, windows=2, overwrite=True)
    exported = LiteRTRunner(out, model.card.rollout, num_threads=1).rollout(contexts, 4)
    floats = rollouts.reference
    quant_effect = np.linalg.norm(exported - floats)
    mismatch = np.linalg.norm(exported - simulated)
    assert quant_effect > 0
    # exported weights + LiteRT's on-the-fly int8 inputs: the same numbers up to float round-off
    assert mismatch < 1e-3 * quant_effect, (mismatch, quant_effect)
    reference_only = PlanRollouts(prob, model.card.rollout, contexts, 4).rollout([choice])[0]
    assert np.linalg.norm(exported - reference_only) > 10 * mismatch  # the exact weights are what closes the gap


def test_extra_starts_that_fit_join_the_search_and_others_are_ignored(problem):
    from edgetqs.planner.plan import solve

    model, prob = problem
    budget = _budget(prob, 0.15)
    greedy_small = solve(prob, _budget(prob, 0.05), "greedy")
    too_big = solve(prob, prob.largest_memory())
    result = verified_search(prob, model.card, budget, _settings(evaluations=12),
                             extra_starts={"small": greedy_small, "big": too_big})
    origins = [m.origin for m in result.evaluated]
    assert "start: big" not in origins
    small = tuple(u.formats.index(a.format) for u, a in zip(prob.units, greedy_small.assignments))
    assert small in {m.choice for m in result.evaluated}
    assert result.best.key() <= min(m.key() for m in result.evaluated if m.origin.startswith("start"))


def test_plan_cli_verify_searches_from_the_knapsack_plan(tmp_path, capsys):
    import json

    from edgetqs.cli.app import main

    scores = tmp_path / "scores.json"
    assert main(["score", "zoo:mlp-sunspots", "--horizon", str(HORIZON), "--windows", str(WINDOWS),
                 "-o", str(scores), "--json"]) == 0
    capsys.readouterr()
    out = tmp_path / "plan.json"
    assert main(["plan", "zoo:mlp-sunspots", "--scores", str(scores), "--budget", "12KiB", "--verify",
                 "--search-evaluations", "8", "-o", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["plan"]["allocator"] == "verified-search" and result["search"]["evaluations"] <= 8
    assert result["search"]["best"]["rmse"] <= result["search"]["knapsack"]["rmse"]
    assert result["plan"]["predicted"]["memory_bytes"] <= 12 * 1024
    # without --verify a 3-unit model is planned by the knapsack alone, and the output says why
    assert main(["plan", "zoo:mlp-sunspots", "--scores", str(scores), "--budget", "12KiB", "-o", str(out),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["search"] is None and "live units" in result["search_why"]
    assert result["plan"]["allocator"] == "mckp"


def test_the_search_runs_by_default_where_it_pays(problem):
    """docs/EVALUATION.md: it pays on models with many weighted units (the deep tier's 26-38), not on 3-8;
    static mode and very large float files are left to an explicit --verify."""
    from dataclasses import replace

    from edgetqs.planner.search import AUTO_MIN_UNITS, search_by_default
    from edgetqs.quant.modes import Mode

    _, small = problem
    assert search_by_default(small)[0] is False
    many = replace(small, units=small.units * (AUTO_MIN_UNITS // len(small.units) + 1))  # >= 24 live units
    assert search_by_default(many)[0] is True
    assert search_by_default(replace(many, mode=Mode.STATIC)) == (False, "static mode: the search cannot roll it out")
    huge = replace(many, graph=replace_size(many.graph, 200 * 2**20))
    run, why = search_by_default(huge)
    assert run is False and "--verify" in why


def replace_size(graph, size_bytes):
    import copy

    bigger = copy.copy(graph)
    bigger.size_bytes = size_bytes
    return bigger


def test_the_python_api_plans_with_the_same_search(tmp_path):
    """edgetqs.plan(..., verify=True) runs the search the CLI runs; verify=None leaves a 3-unit model to the knapsack."""
    import edgetqs

    model = edgetqs.load("zoo:mlp-sunspots")
    scores = model.score(horizon=HORIZON, windows=WINDOWS)
    searched = model.plan(scores, budget="12KiB", verify=True, search_evaluations=6)
    assert searched.allocator == "verified-search" and searched.predicted["memory_bytes"] <= 12 * 1024
    assert model.plan(scores, budget="12KiB").allocator == "mckp"


def test_a_search_whose_scores_came_from_a_series_not_given_is_skipped_or_refused(problem):
    """A score file keeps only its series' name. Planning elsewhere without --data: the default search is
    skipped with why (before, it failed looking for the file); an explicit --verify names the fix."""
    from dataclasses import replace

    from edgetqs.api import verify_plan
    from edgetqs.planner.plan import make_plan
    from edgetqs.planner.search import AUTO_MIN_UNITS

    model, small = problem
    many = replace(small, units=small.units * (AUTO_MIN_UNITS // len(small.units) + 1))
    scores = replace(small.scores, settings={**small.scores.settings, "contexts": "data:not-here.npy"})
    chosen, _ = make_plan(model.graph, small.scores, budget_bytes=_budget(small, 0.5), model=model)
    plan, search, why = verify_plan(model, scores, many, chosen)
    assert plan is chosen and search is None and "not-here.npy" in why and "--data" in why
    with pytest.raises(EdgeTQSError, match="not-here.npy") as info:
        verify_plan(model, scores, small, chosen, verify=True)
    assert "--data" in info.value.fix
