"""Every sensitivity method in the registry (edgetqs/sensitivity.py) is first class: it scores the
model itself, writes a score file under its own name, and its cost model is what the planner prices."""

from __future__ import annotations

import json
import math

import pytest

from edgetqs import zoo
from edgetqs.cli.app import build_parser, main
from edgetqs.errors import EdgeTQSError
from edgetqs.quant.formats import FORMATS
from edgetqs.planner.plan import build_problem
from edgetqs.sensitivity import cost_model, get_method, method_names
from edgetqs.tqs.score import ScoreSettings
from edgetqs.tqs.scorefile import load_scores
from edgetqs.quant.quantizer import residual_norm
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME

RUNTIME = DEFAULT_HOST_RUNTIME.spec
SETTINGS = ScoreSettings(horizon=6, windows=3)
CHEAP = [m for m in method_names() if m != "hessian"]  # hessian: tests/evaluation/test_baselines.py


@pytest.fixture(scope="module")
def model():
    return zoo.build("mlp-sunspots")


@pytest.fixture(scope="module")
def scored(model):
    return {name: get_method(name).score(model.graph, model.card, SETTINGS) for name in CHEAP}


def test_each_method_writes_its_own_score_file(scored, model, tmp_path):
    units = None
    for name, scores in scored.items():
        assert scores.method == name
        assert units is None or [u.name for u in scores.units] == units, "same units whatever the method"
        units = [u.name for u in scores.units]
        live = [u for u in scores.units if not u.dead]
        assert live and all(u.score is not None and math.isfinite(u.score) for u in live), name
        assert bool(scores.units[0].probes) == (name in ("tqs-quant", "tqs-gauss")), "only TQS keeps probe results"
        again = load_scores(scores.save(tmp_path / f"{name}.json"))
        assert again.method == name and [u.score for u in again.units] == [u.score for u in scores.units]
    quant, gauss = scored["tqs-quant"], scored["tqs-gauss"]
    assert [u.score for u in quant.units] == [u.gamma("quant") for u in quant.units]
    assert [u.score for u in gauss.units] == [u.gamma("gauss") for u in gauss.units]


def test_the_planner_prices_each_unit_by_its_methods_cost_model(scored, model):
    graph = model.graph
    for name, scores in scored.items():
        log_amplification = cost_model(scores)
        problem = build_problem(graph, scores, "x", RUNTIME)
        by_name = {u.name: u for u in scores.units}
        for unit in problem.units:
            source = by_name[unit.name]
            if source.dead or "int8" not in unit.formats:
                continue
            residual = math.sqrt(sum(residual_norm(graph.tensor_by_name(t).data, FORMATS["int8"], 0) ** 2
                                     for t in source.weight_tensors))
            expected = math.exp(log_amplification(source)) * residual
            assert unit.costs[unit.formats.index("int8")] == pytest.approx(expected, rel=1e-4), (name, unit.name)
    # TQS amplifies by exp(gamma T); a baseline's sensitivity multiplies the residual as it is
    assert get_method("tqs-quant").log_amplification(0.5, {"horizon": 6}) == pytest.approx(3.0)
    assert get_method("weight-error").log_amplification(math.e, {"horizon": 6}) == pytest.approx(1.0)


def test_cli_method_choices_are_the_registry(model, tmp_path, capsys):
    score_parser = build_parser()._subparsers._group_actions[0].choices["score"]
    method = next(a for a in score_parser._actions if a.dest == "method")
    assert list(method.choices) == method_names() and method.default == "tqs-quant"
    out = tmp_path / "w.scores.json"
    assert main(["score", "zoo:mlp-sunspots", "--method", "weight-error", "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "weight-error" and load_scores(out).method == "weight-error"
    assert "curves_png" not in summary["files"], "a method without rollouts has no d_t curves"


def test_unknown_method_and_a_probe_the_method_lacks_fail_clearly(model):
    with pytest.raises(EdgeTQSError, match="tqs-quant"):
        get_method("oracle")
    with pytest.raises(EdgeTQSError, match="--probe gauss or --probe both"):
        get_method("tqs-gauss").score(model.graph, model.card, ScoreSettings(probe="quant", horizon=2, windows=2))


def test_hessian_through_the_api_names_what_a_model_lacks():
    import edgetqs

    with pytest.raises(EdgeTQSError, match="trained in torch") as error:
        edgetqs.score("zoo:mlp-sunspots-onnx", method="hessian", horizon=2, windows=2)
    assert "another --method" in error.value.fix
