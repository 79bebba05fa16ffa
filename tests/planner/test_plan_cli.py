"""`edgetqs plan` end to end through the real CLI: plan, recipe, front, and bad input."""

import json

import pytest
from ai_edge_quantizer import quantizer

from edgetqs.cli.app import main
from edgetqs.model.intake import load_model
from edgetqs.planner.planfile import load_plan


@pytest.fixture
def canonical(models, score_writer, tmp_path):
    """The canonical (intake) model of mlp64 and a score file for it."""
    model = load_model(models["mlp64"])
    return model, score_writer(model.graph, tmp_path / "scores.json", gammas=[0.2, 0.0, -0.1])


def test_plan_writes_plan_recipe_and_front(canonical, tmp_path, capsys):
    model, scores = canonical
    out = tmp_path / "plan.json"
    code = main(["plan", str(model.tflite_path), "--scores", str(scores), "--target", "rpi4",
                 "--budget", "40KiB", "--front", "--front-points", "8", "-o", str(out), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    plan = load_plan(out)
    assert plan.predicted["memory_bytes"] <= 40 * 1024 == plan.budget_bytes
    assert result["plan"]["assignments"] == plan.to_dict()["assignments"]
    assert out.with_suffix(".front.png").stat().st_size > 10_000
    assert len(result["front"]) >= 3
    # the recipe is what AEQ runs: the quantized file has the size the plan predicted
    recipe = json.loads(out.with_suffix(".recipe.json").read_text())
    produced = quantizer.Quantizer(str(model.tflite_path), recipe).quantize().quantized_model
    assert abs(len(produced) - plan.predicted["model_bytes"]) / len(produced) < 0.01


def test_budget_too_small_says_the_smallest(canonical, tmp_path, capsys):
    model, scores = canonical
    code = main(["plan", str(model.tflite_path), "--scores", str(scores), "--budget", "1KiB",
                 "-o", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert code == 2 and "below the smallest footprint" in err and "give a budget of at least" in err
    assert not (tmp_path / "p.json").exists()


def test_unknown_target_lists_known(canonical, tmp_path, capsys):
    model, scores = canonical
    code = main(["plan", str(model.tflite_path), "--scores", str(scores), "--target", "pi4",
                 "-o", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown target 'pi4'" in err and "rpi4" in err and "jetson-nano" in err


def test_scores_of_another_model_refused(canonical, models, scores_for, tmp_path, capsys):
    model, _ = canonical
    _, other = scores_for(models["mlp_odd"])
    code = main(["plan", str(model.tflite_path), "--scores", str(other), "--target", "rpi4",
                 "-o", str(tmp_path / "p.json")])
    assert code == 2 and "another model" in capsys.readouterr().err


def test_conformance_command_shows_the_matrix(capsys):
    """`edgetqs conformance` (module edgetqs/cli/conformance.py; the lead registers it in app.py)."""
    import argparse

    from edgetqs.cli import conformance

    parser = argparse.ArgumentParser()
    conformance.register(parser.add_subparsers())
    args = parser.parse_args(["conformance", "--json"])
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "edgetqs.capability_matrix"
    assert data["runtimes"]["tflite-runtime==2.14.0"]["FULLY_CONNECTED"]["dynamic"]["int8"]["status"] == "wrong"
