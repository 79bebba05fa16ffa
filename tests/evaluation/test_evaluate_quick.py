"""The evaluation's --quick path end to end: real zoo models, scores, planner,
AEQ conversion with verification, LiteRT rollouts (benchmarks/evaluate.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIZE_TOLERANCE = 0.01  # the exported file within 1% of the planner's predicted file bytes


def _load_driver():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("evaluate_driver", ROOT / "benchmarks" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    driver = _load_driver()
    out = tmp_path_factory.mktemp("results")
    driver.RESULTS = out  # keep the committed results untouched
    assert driver.main(["--quick", "--out", "quick_test"]) == 0
    return json.loads((out / "quick_test.json").read_text()), out


@pytest.mark.timeout(600)
def test_quick_table_has_every_method_in_every_cell(quick_results):
    payload, out = quick_results
    rows = payload["rows"]
    models, budgets = payload["config"]["models"], payload["config"]["budgets"]
    budgeted = {"tqs-quant", "tqs-gauss", "tqs-quant-greedy", "tqs-saturation", "verified-search",
                "uniform-at-budget", "weight-error", "single-step", "random"}
    for model in models:
        for bits in budgets:
            found = {r["method"] for r in rows if r["model"] == model and r["budget_bits"] == bits}
            assert budgeted <= found, (model, bits, budgeted - found)
        fixed = {r["method"] for r in rows if r["model"] == model and r["budget_bits"] is None}
        assert fixed == {"uniform-int8", "uniform-int4", "first-last-8"}
    seeds = {r["seed"] for r in rows if r["method"] == "random"}
    assert len(seeds) == payload["config"]["seeds"]
    for ext in ("json", "csv", "png", "html"):
        assert (out / f"quick_test.{ext}").stat().st_size > 0


@pytest.mark.timeout(600)
def test_quick_sizes_respect_budgets_and_predictions(quick_results):
    rows = quick_results[0]["rows"]
    for r in rows:
        if r["budget_bits"] is not None:
            assert r["memory_bytes"] <= r["budget_bytes"], r
        assert abs(r["file_bytes"] - r["predicted_file_bytes"]) <= SIZE_TOLERANCE * r["predicted_file_bytes"], r


@pytest.mark.timeout(600)
def test_quick_quality_is_measured_and_ordered(quick_results):
    payload = quick_results[0]
    rows = payload["rows"]
    for r in rows:
        assert r["float_rmse"] >= 0 and 0 <= r["float_blow_up_fraction"] <= 1
    # more bits, less error: uniform int8 tracks the float model better than uniform int4 on each model
    for model in payload["config"]["models"]:
        by = {r["method"]: r for r in rows if r["model"] == model and r["budget_bits"] is None}
        assert by["uniform-int8"]["float_rmse"] < by["uniform-int4"]["float_rmse"]
    for headline in ("tqs-quant", "tqs-saturation", "verified-search"):
        rates = payload["win_rates"][headline]["rmse_vs_float"]["win_rate"]
        assert {"best-baseline", "weight-error", "single-step", "random"} <= set(rates)
        assert all(0 <= w["rate"] <= 1 for w in rates.values())


@pytest.mark.timeout(600)
def test_quick_search_reports_predicted_and_measured_and_never_loses_on_its_windows(quick_results):
    payload = quick_results[0]
    searches = payload["searches"]
    assert len(searches) == len(payload["config"]["models"]) * len(payload["config"]["budgets"])
    for s in searches:
        assert s["evaluations"] <= payload["config"]["search_evaluations"]
        assert (s["best"]["blow_up_fraction"], s["best"]["rmse"]) <= (s["knapsack"]["blow_up_fraction"],
                                                                      s["knapsack"]["rmse"])
    # every distinct exported plan also has the rollout check's prediction, correlated with LiteRT's measurement
    assert all(r["predicted_cost_rollout"] is not None for r in payload["rows"])
    assert payload["cost_error_correlation"]["rollout"]["within_budget"]["groups"] >= 1
    targets = payload["search_targets"]
    assert targets["vs_best_baseline"]["cells"] == len(searches)
    assert 0 <= targets["vs_best_baseline"]["strictly_better"] <= targets["vs_best_baseline"]["at_least_as_good"]
    assert set(targets["search_over_sweep_seconds"]) == set(payload["config"]["models"])


def test_html_report_is_self_contained(quick_results):
    payload, out = quick_results
    text = (out / "quick_test.html").read_text()
    assert "data:image/png;base64," in text and "Win table of verified-search" in text
    assert "http://" not in text and "https://" not in text and "<script src" not in text


def test_the_documents_tables_print_from_the_runs_json(quick_results, capsys):
    """benchmarks/evaluation_tables.py (docs/EVALUATION.md's numbers) reads what the run wrote: the search's win
    row against the oracle equals the payload's own counts, and every missed cell is listed."""
    payload, out = quick_results
    spec = importlib.util.spec_from_file_location("evaluation_tables", ROOT / "benchmarks" / "evaluation_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    assert tables.main([str(out / "quick_test.json")]) == 0
    text = capsys.readouterr().out
    w = payload["win_rates"]["verified-search"]["rmse_vs_float"]["win_rate"]["best-baseline"]
    won = w["wins"] - w["ties"] / 2
    assert f"| best-baseline | {w['rate']:.2f} ({won:g}/{w['ties']}/{w['cells'] - w['ties'] - won:g})" in text
    targets = payload["search_targets"]["vs_best_baseline"]
    assert f"{targets['at_least_as_good']} of {targets['cells']} cells" in text
    assert text.count("  - missed:") == targets["cells"] - targets["at_least_as_good"]
