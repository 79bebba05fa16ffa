"""The README's main job: `edgetqs demo` runs every stage, ending with a
validation on a real loopback SSH board, and leaves its artifacts behind."""

import json

import pytest

from edgetqs.cli.app import main

pytestmark = pytest.mark.slow


def test_demo_runs_the_whole_pipeline(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--horizon", "8", "--windows", "4"]) == 0
    scores = json.loads((out / "scores.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    assert scores["format"] == "edgetqs.scores" and plan["format"] == "edgetqs.plan"
    assert plan["predicted"]["memory_bytes"] <= plan["budget_bytes"]
    # the budget lies below the float model, so the plan must quantize something
    assert any(a["format"] != "fp32" for a in plan["assignments"])
    assert (out / "plan.front.png").stat().st_size > 0
    assert (out / "bundle" / "manifest.json").exists()
    verdicts = list((out / "validation").glob("*/validation.json"))
    assert len(verdicts) == 1 and json.loads(verdicts[0].read_text())["passed"] is True
    assert (verdicts[0].parent / "report.html").exists()
