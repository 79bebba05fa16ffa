"""Score file: round trip, hashes, validation, CSV and plots."""

import copy
import csv
import hashlib
import json

import numpy as np
import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.tqs.plots import plot_curves, plot_scores
from edgetqs.tqs.score import ScoreSettings, score_model
from edgetqs.tqs.scorefile import load_scores


@pytest.fixture(scope="module")
def mlp_scores(mlp_model):
    graph, card = mlp_model
    return score_model(graph, card, ScoreSettings(engine="litert", horizon=6, windows=3, seed=4), progress=False)


def test_round_trip_keeps_everything(mlp_scores, mlp_model, tmp_path):
    graph, _ = mlp_model
    path = mlp_scores.save(tmp_path / "s.json")
    loaded = load_scores(path)
    assert loaded.to_dict() == json.loads(json.dumps(mlp_scores.to_dict()))
    assert loaded.model["tflite_sha256"] == hashlib.sha256(graph.path.read_bytes()).hexdigest()
    assert loaded.settings["seed"] == 4 and loaded.settings["horizon"] == 6 and loaded.settings["probe"] == "both"
    assert loaded.format == "edgetqs.scores" and loaded.version == 2 and loaded.method == "tqs-quant"
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temporary left behind


def test_csv_has_one_row_per_unit(mlp_scores, tmp_path):
    rows = list(csv.DictReader(mlp_scores.save_csv(tmp_path / "s.csv").open()))
    assert [r["unit"] for r in rows] == [u.name for u in mlp_scores.units]
    assert float(rows[0]["gamma_quant"]) == pytest.approx(mlp_scores.units[0].gamma_quant, rel=1e-5)


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(format="edgetqs.plan"), "not an edgetqs score file"),
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d.pop("units"), "missing"),
    (lambda d: d["units"][0].pop("probes"), "missing"),
    (lambda d: d["units"][0]["probes"]["quant"].pop("gamma"), "missing"),
])
def test_load_refuses_other_files(mlp_scores, tmp_path, mutate, message):
    data = json.loads(json.dumps(mlp_scores.to_dict()))
    mutate(data)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(EdgeTQSError, match=message):
        load_scores(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{nope")
    with pytest.raises(EdgeTQSError, match="not valid JSON"):
        load_scores(tmp_path / "junk.json")


def test_plots_are_pngs(mlp_scores, tmp_path):
    for path in (plot_scores(mlp_scores, tmp_path / "a.png"), plot_curves(mlp_scores, tmp_path / "b.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert np.isfinite([u.gamma_quant for u in mlp_scores.units]).all()


def _as_version_1(scores, baseline: str | None = None) -> dict:
    """The document version 1 wrote: probe results as flat gamma_/delta_norm_/curve_ fields; a baseline
    disguised as gamma_quant = log(s) with horizon 1."""
    data = json.loads(json.dumps(scores.to_dict()))
    data["version"] = 1
    data.pop("method")
    for unit in data["units"]:
        probes, score = unit.pop("probes"), unit.pop("score")
        for probe in ("quant", "gauss"):
            result = probes.get(probe, {})
            for key in ("gamma", "delta_norm", "curve"):
                unit[f"{key}_{probe}"] = result.get(key)
        if baseline:
            unit["gamma_quant"] = np.log(score)
    if baseline:
        data["settings"].update(horizon=1, probe="quant", baseline=baseline)
    return data


def test_version_1_score_files_are_still_read(mlp_scores, tmp_path):
    (tmp_path / "v1.json").write_text(json.dumps(_as_version_1(mlp_scores)))
    old = load_scores(tmp_path / "v1.json")
    assert old.version == 2 and old.method == "tqs-quant"
    for new, was in zip(old.units, mlp_scores.units):
        assert new.probes == was.probes and new.score == was.gamma_quant
    baseline = copy.deepcopy(mlp_scores)
    for i, unit in enumerate(baseline.units):
        unit.score = 10.0 ** i
    (tmp_path / "v1b.json").write_text(json.dumps(_as_version_1(baseline, "weight_error")))
    old = load_scores(tmp_path / "v1b.json")
    assert old.method == "weight-error" and all(not u.probes for u in old.units)
    assert [u.score for u in old.units] == pytest.approx([10.0 ** i for i in range(len(old.units))])


def test_an_in_memory_score_file_hashes_as_the_file_it_saves(mlp_scores, tmp_path):
    from edgetqs.tqs.scorefile import file_sha256

    assert mlp_scores.sha256() == file_sha256(mlp_scores.save(tmp_path / "s.json"))
