"""`edgetqs score` end to end on a zoo model: JSON + CSV + PNGs, --json summary, clean errors."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from edgetqs.cli.app import main
from edgetqs.tqs.scorefile import load_scores
from edgetqs.zoo import data_for, list_models

ZOO_MODEL = "zoo:mlp-sunspots"  # the cheapest zoo model to train (about 20 s, then cached)


@pytest.fixture(scope="module")
def zoo_model():
    from edgetqs import zoo

    return zoo.build(ZOO_MODEL)


def test_score_writes_json_csv_and_plots(zoo_model, tmp_path, capsys):
    out = tmp_path / "run" / "scores.json"
    code = main(["score", ZOO_MODEL, "-o", str(out), "--horizon", "6", "--windows", "3", "--probe", "both",
                 "--granularity", "block", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    scores = load_scores(out)
    assert scores.model["tflite_sha256"] == zoo_model.graph.sha256
    assert scores.settings["granularity"] == "block" and scores.settings["contexts"] == "free-run"
    assert [u.name for u in scores.units] == list(dict.fromkeys(layer.block for layer in zoo_model.card.layers))
    assert all(np.isfinite(u.gamma_quant) and np.isfinite(u.gamma_gauss) for u in scores.units)
    rows = list(csv.DictReader((tmp_path / "run" / "scores.csv").open()))
    assert len(rows) == len(scores.units)
    for name in ("scores.scores.png", "scores.curves.png"):
        assert (tmp_path / "run" / name).read_bytes()[:4] == b"\x89PNG"
    assert summary["units"] == len(scores.units) and summary["files"]["json"] == str(out)


def test_score_from_user_data_through_the_subprocess(zoo_model, tmp_path):
    from edgetqs import zoo

    series = zoo.system_data(zoo_model.card.extra["system"])
    raw = series.denormalise(series.test)  # the CLI takes raw units
    np.save(tmp_path / "series.npy", raw.astype(np.float32))
    out = tmp_path / "s.json"
    result = subprocess.run([sys.executable, "-m", "edgetqs", "score", ZOO_MODEL, "--data", str(tmp_path / "series.npy"),
                             "--probe", "quant", "--horizon", "5", "--windows", "2", "--engine", "litert", "-o", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    scores = load_scores(out)
    assert scores.settings["contexts"] == "data:series.npy" and scores.settings["engine"] == "litert"
    assert all(u.gamma_gauss is None and u.gamma_quant is not None for u in scores.units)


@pytest.mark.parametrize("args,message", [
    (["--horizon", "0"], "horizon"),
    (["--granularity", "block", "--block-regex", "encoder_(\\d+)"], "matches none"),
])
def test_bad_arguments_are_one_clean_message(zoo_model, tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "edgetqs", "score", ZOO_MODEL, "-o", str(tmp_path / "s.json"), *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert message in result.stderr and "fix:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", [entry.name for entry in list_models()])
def test_every_zoo_model_gets_scores_curves_and_plots(name, tmp_path):
    """Both probes on every zoo model: a gamma per layer, a full divergence curve, both plots."""
    out = tmp_path / "scores.json"
    data = data_for(name)  # the covariate model reads its covariates from its own series
    assert main(["score", f"zoo:{name}", "-o", str(out), "--horizon", "8", "--windows", "4", "--probe", "both",
                 *(["--data", data] if data else [])]) == 0
    scores = load_scores(out)
    assert len(scores.units) >= 2
    for unit in scores.units:
        assert np.isfinite(unit.gamma_quant) and np.isfinite(unit.gamma_gauss)
        assert len(unit.curve_quant) == len(unit.curve_gauss) == 8
    for suffix in (".scores.png", ".curves.png"):
        assert (tmp_path / f"scores{suffix}").read_bytes()[:4] == b"\x89PNG"


def test_every_output_of_a_tagged_name_shares_its_stem():
    """`-o X.scores.json` used to give X.csv next to X.scores.scores.png; one rule names them all now."""
    from edgetqs.cli.score import output_paths

    names = {key: path.name for key, path in output_paths("run/X.scores.json").items()}
    assert names == {"json": "X.scores.json", "csv": "X.scores.csv", "scores_png": "X.scores.png",
                     "curves_png": "X.scores.curves.png"}
    assert {p.name for p in output_paths("s.json").values()} == {"s.json", "s.csv", "s.scores.png", "s.curves.png"}
