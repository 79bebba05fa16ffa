"""`edgetqs evaluate MODEL` end to end on a zoo model and on a user's ONNX file
with the user's own series: plans exported, verified, rolled out in LiteRT."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from edgetqs.cli.app import main


def _run(capsys, *argv) -> tuple[int, dict | None]:
    code = main(["evaluate", *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else None


@pytest.mark.timeout(600)
def test_evaluate_a_zoo_model(tmp_path, capsys):
    code, result = _run(capsys, "zoo:mlp-sunspots", "--quick", "--out", str(tmp_path), "--budgets", "4,6")
    assert code == 0
    paths = [p for p in result["paths"]]
    assert {p.rsplit(".", 1)[1] for p in paths} == {"json", "csv", "png", "html"}
    payload = json.loads((tmp_path / "evaluation-mlp-sunspots.json").read_text())
    cells = {r["budget_bits"] for r in payload["rows"] if r["method"] == "verified-search"}
    assert cells == {4.0, 6.0}
    assert "rmse_vs_truth" in result["win_rates"]["verified-search"]  # zoo: judged against its test series too
    for r in payload["rows"]:
        assert r["windows"] == "zoo test series (held out)" and r["float_rmse"] >= 0
        formats = payload["plans"]["mlp-sunspots"][r["plan_sha"]]  # every row's plan can be rebuilt
        counts = {f: int(n) for f, n in (c.rsplit("x", 1) for c in r["formats"].split())}
        assert {f: list(formats.values()).count(f) for f in set(formats.values())} == counts


@pytest.mark.timeout(300)
def test_evaluate_a_covariate_zoo_model_feeds_its_covariates(tmp_path, capsys):
    """mlp-duffing reads the force's phase: scored and searched on its training series, judged on its test
    series with the true phase fed at every call — the plans track the truth instead of failing for want of it."""
    code, _ = _run(capsys, "zoo:mlp-duffing", "--methods", "tqs-quant,verified-search,uniform-int4",
                   "--budgets", "4", "--search-evaluations", "4", "--out", str(tmp_path))
    assert code == 0
    payload = json.loads((tmp_path / "evaluation-mlp-duffing.json").read_text())
    assert {r["method"] for r in payload["rows"]} == {"tqs-quant", "verified-search", "uniform-int4"}
    for r in payload["rows"]:
        assert np.isfinite(r["truth_rmse"]) and r["float_vs_truth_rmse"] < 0.5  # the float model tracks the system


@pytest.mark.timeout(300)
def test_zoo_scoring_on_the_training_series_feeds_scores_and_search(tmp_path, capsys):
    """--score-contexts training-series: TQS and the search roll out from the zoo's training series (what a user
    with data gives), judging stays on the test series; a file without a training series is told to use --data."""
    from edgetqs import zoo

    code, _ = _run(capsys, "zoo:mlp-sunspots", "--methods", "tqs-quant,verified-search", "--budgets", "4",
                   "--search-evaluations", "4", "--score-contexts", "training-series", "--out", str(tmp_path))
    assert code == 0
    payload = json.loads((tmp_path / "evaluation-mlp-sunspots.json").read_text())
    assert [s["contexts"] for s in payload["searches"]] == [f"data:{zoo.series_file('mlp-sunspots').name}"]
    assert all(r["windows"] == "zoo test series (held out)" for r in payload["rows"])
    zoo.build("mlp-sunspots-onnx")
    onnx = zoo.model_dir("mlp-sunspots-onnx") / "mlp-sunspots-onnx.onnx"
    assert main(["evaluate", str(onnx), "--score-contexts", "training-series", "--out", str(tmp_path)]) != 0
    assert "pass your own series with --data" in capsys.readouterr().err


@pytest.mark.timeout(900)
def test_evaluate_a_users_onnx_model_with_its_data(tmp_path, capsys):
    """The zoo's torch-trained ONNX file, taken in as a user's model (intake via onnx2tf), judged
    on the held-out tail of the series it is given, at byte budgets."""
    from edgetqs import zoo

    zoo.build("mlp-sunspots-onnx")
    onnx = tmp_path / "sunspots.onnx"
    onnx.write_bytes((zoo.model_dir("mlp-sunspots-onnx") / "mlp-sunspots-onnx.onnx").read_bytes())
    data = zoo.system_data("sunspots")  # the file's card has no normalisation: give the series it was trained on
    np.savetxt(tmp_path / "series.csv", np.concatenate([data.train, data.test]), delimiter=",")
    from edgetqs.zoo.resolve import load_model

    canonical = load_model(onnx)
    size = canonical.graph.size_bytes  # memory budgets around the float file's size: int2..fp32 plans fit
    code, result = _run(capsys, str(onnx), "--quick", "--out", str(tmp_path / "eval"), "--data",
                        str(tmp_path / "series.csv"), "--budget-bytes", f"{size * 3 // 4},{size * 11 // 10}",
                        "--methods", "tqs-quant,tqs-saturation,single-step,verified-search,weight-error,uniform-at-budget")
    assert code == 0, result
    payload = json.loads(open(next(p for p in result["paths"] if p.endswith(".json"))).read())
    rows = payload["rows"]
    assert {r["method"] for r in rows} == {"tqs-quant", "tqs-saturation", "single-step", "verified-search",
                                          "weight-error", "uniform-at-budget"}
    assert all(r["windows"].startswith("held-out") for r in rows)
    assert all(r["memory_bytes"] <= r["budget_bytes"] for r in rows if r["budget_bytes"])


def test_evaluate_without_budgets_uses_the_default_average_bits():
    from edgetqs.cli.evaluate import _settings
    from edgetqs.evaluation import EvaluationSettings

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    from edgetqs.cli.evaluate import register

    register(subparsers)
    args = parser.parse_args(["evaluate", "zoo:mlp-sunspots"])
    assert _settings(args).budgets_bits == EvaluationSettings().budgets_bits  # it was [] ("no budget to evaluate at")
    args = parser.parse_args(["evaluate", "zoo:mlp-sunspots", "--budget-bytes", "20000"])
    assert _settings(args).budgets_bits == [] and _settings(args).budgets_bytes == [20000]


def test_evaluate_refuses_unknown_methods_and_bad_budgets(capsys):
    assert main(["evaluate", "zoo:mlp-sunspots", "--methods", "tqs-quant,magic"]) != 0
    assert "unknown evaluation method" in capsys.readouterr().err
    assert main(["evaluate", "zoo:mlp-sunspots", "--quick", "--budget-bytes", "100"]) != 0
    assert "below the smallest footprint" in capsys.readouterr().err
    assert main(["evaluate", "zoo:mlp-sunspots", "--budgets", "four"]) != 0
    assert "comma-separated list of numbers" in capsys.readouterr().err
    assert main(["evaluate", "zoo:mlp-sunspots", "--mode", "dynamic,int8"]) != 0
    err = capsys.readouterr().err
    assert "unknown mode 'int8'" in err and "weight_only, dynamic, static" in err
