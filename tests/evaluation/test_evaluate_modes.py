"""`evaluate` in several activation modes on real zoo models: each mode's plans priced by the
planner in that mode, exported by AEQ in that mode and rolled out in LiteRT; a mode the planner
refuses for a model (and the verified search in static mode) is skipped with the reason, in the
result and in the HTML report."""

from __future__ import annotations

import json

import pytest

from edgetqs.evaluation import EvaluationSettings, evaluate
from edgetqs.evaluation.run import NoModeAvailable
from edgetqs.quant.modes import Mode

SIZE_TOLERANCE = 0.01  # the exported file within 1% of the planner's prediction in its mode


def _tiny(methods: list[str], modes: list) -> EvaluationSettings:
    return EvaluationSettings(methods=methods, budgets_bits=[4.0, 6.0], score_horizon=8, score_windows=4,
                              judge_windows=4, judge_steps=16, random_seeds=1, search_evaluations=4, modes=modes)


@pytest.fixture(scope="module")
def both_modes(tmp_path_factory):
    out = tmp_path_factory.mktemp("modes")
    result = evaluate("zoo:mlp-sunspots", _tiny(["tqs-quant", "uniform-int8", "verified-search"],
                                                [Mode.DYNAMIC, Mode.STATIC]), out_dir=out)
    return result, json.loads((out / "evaluation-mlp-sunspots.json").read_text()), out


@pytest.mark.timeout(300)
def test_static_rows_are_priced_and_exported_static(both_modes):
    result, payload, _ = both_modes
    by_mode = {mode: [r for r in payload["rows"] if r["mode"] == mode] for mode in ("dynamic", "static")}
    assert all(by_mode.values()) and len(payload["rows"]) == sum(map(len, by_mode.values()))
    for mode, rows in by_mode.items():
        for r in rows:
            # the real export holds int8 activation tensors exactly when the mode is static
            assert (r["int8_activations"] > 0) == (mode == "static"), r
            assert abs(r["file_bytes"] - r["predicted_file_bytes"]) <= SIZE_TOLERANCE * r["predicted_file_bytes"], r
            if r["budget_bits"] is not None:
                assert r["memory_bytes"] <= r["budget_bytes"], r
            # static activation ranges from the zoo model's training series (judged on its test series)
            assert r["calibration"] == ("zoo training series" if mode == "static" else None), r
    # the same all-int8 plan is a different (larger) file in static mode, and the planner priced it so
    int8 = {r["mode"]: r for r in payload["rows"] if r["method"] == "uniform-int8"}
    assert int8["static"]["predicted_file_bytes"] > int8["dynamic"]["predicted_file_bytes"]
    # budgets are priced per mode: the same average bits is another byte count in static mode
    budget = {(r["mode"], r["budget_bits"]): r["budget_bytes"] for r in payload["rows"] if r["method"] == "tqs-quant"}
    assert budget[("static", 4.0)] != budget[("dynamic", 4.0)]


@pytest.mark.timeout(300)
def test_the_search_is_skipped_in_static_mode_with_its_reason(both_modes):
    result, payload, out = both_modes
    searched = {r["mode"] for r in payload["rows"] if r["method"] == "verified-search"}
    assert searched == {"dynamic"}
    assert all(r["predicted_cost_rollout"] is None for r in payload["rows"] if r["mode"] == "static")
    skip = [s for s in payload["skipped"] if s["mode"] == "static"]
    assert [s["method"] for s in skip] == ["verified-search"] and "static int8" in skip[0]["reason"]
    assert payload["skipped"] == json.loads(json.dumps(result.skipped))
    text = (out / "evaluation-mlp-sunspots.html").read_text()
    assert "Skipped (not evaluated, and why)" in text and "static int8" in text
    # cells and fronts per (model, mode, budget): both modes have their own cells and comparison
    cells = {(c["mode"], c["budget_bits"]) for c in payload["win_rates"]["tqs-quant"]["rmse_vs_float"]["cells"]}
    assert cells == {("dynamic", 4.0), ("dynamic", 6.0), ("static", 4.0), ("static", 6.0)}
    assert set(payload["win_rates_by_mode"]) == {"dynamic", "static"}
    assert payload["mode_comparison"]["modes"]["static"]["tqs-quant"]["cells"] == 2


@pytest.mark.timeout(300)
def test_a_mode_the_planner_refuses_is_skipped_with_the_planners_reason(tmp_path):
    """lstm-sunspots: AEQ's static export holds a SPLIT XNNPACK cannot prepare (planner, e38b2d3)."""
    result = evaluate("zoo:lstm-sunspots", _tiny(["tqs-quant", "uniform-int4"], ["dynamic", "static"]),
                      out_dir=tmp_path)
    assert {r["mode"] for r in result.rows} == {"dynamic"}
    [skip] = result.skipped
    assert skip["mode"] == "static" and skip["method"] is None
    assert "static mode (int8 activations) is not available for this model" in skip["reason"]
    assert "--mode dynamic" in skip["fix"]
    assert "static mode (int8 activations) is not available" in (tmp_path / "evaluation-lstm-sunspots.html").read_text()
    with pytest.raises(NoModeAvailable) as caught:  # nothing left to evaluate: an error, with the skips
        evaluate("zoo:lstm-sunspots", _tiny(["tqs-quant"], ["static"]))
    assert "no requested mode can be evaluated" in caught.value.problem and caught.value.skipped[0]["mode"] == "static"


@pytest.mark.timeout(300)
def test_a_model_file_without_data_is_judged_and_calibrated_on_free_runs():
    """A .tflite by path (no zoo test series, no --data): judged on a free run from another seed,
    static ranges from the model's own free run."""
    from edgetqs import zoo

    path = zoo.model_dir("mlp-sunspots") / "model.tflite"
    zoo.build("mlp-sunspots")
    result = evaluate(path, _tiny(["tqs-quant", "uniform-int8"], ["dynamic", "static"]))
    assert {r["mode"] for r in result.rows} == {"dynamic", "static"}
    for r in result.rows:
        assert r["windows"].startswith("data-free free run") and "truth_rmse" not in r
        assert r["calibration"] == ("data-free free run" if r["mode"] == "static" else None)
        assert (r["int8_activations"] > 0) == (r["mode"] == "static")
