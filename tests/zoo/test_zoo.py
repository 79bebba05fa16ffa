"""The zoo: its catalogue, models built through the real intake (Keras and
torch-exported ONNX), their recorded quality, deterministic training, and the
`zoo` / `inspect` commands."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from edgetqs import zoo
from edgetqs.cli.app import main
from edgetqs.errors import EdgeTQSError
from edgetqs.zoo.architectures import BUILDERS
from edgetqs.zoo.training import TORCH_BUILDERS
from edgetqs.zoo.data import SYSTEMS


def test_catalogue_covers_archs_and_systems():
    entries = zoo.list_models()
    assert len(entries) >= 12
    assert {e.arch for e in entries} >= {"mlp", "gru", "transformer", "tcn"}
    assert {e.system for e in entries} >= {"lorenz96", "ks", "sunspots", "co2"}
    assert any(e.source_format == "onnx" for e in entries) and any(e.source_format == "pytorch" for e in entries)
    for e in entries:
        builders = BUILDERS if e.source_format == "keras" else TORCH_BUILDERS  # torch-trained entries
        assert e.name.startswith(f"{e.arch}-{e.system}") and e.arch in builders and e.system in SYSTEMS
    with pytest.raises(EdgeTQSError, match="no zoo model"):
        zoo.entry("mlp-weather")


def test_largest_model_has_a_million_parameters():
    """Counted from the architecture without training: the wide MLP on KS."""
    entry = zoo.entry("mlp-ks")
    model = BUILDERS[entry.arch](entry.window, SYSTEMS[entry.system].features, **entry.arch_options)
    assert model.count_params() >= 1_000_000


def _check_zoo_card(model, system, source_format):
    card = model.card
    assert card.source == f"zoo:{card.name}" and card.source_format == source_format
    assert card.extra["system"] == system and 0 < card.extra["training_seconds"] < 120
    quality = card.extra["float_quality"]
    assert quality["blow_up_fraction"] == 0
    assert quality["valid_prediction_time"] >= 1  # tracks the true system for at least a step on average
    spec = card.rollout
    assert len(spec.norm_mean) == len(spec.norm_std) == spec.features  # normalisation recorded
    blocks = [layer.block for layer in card.layers]
    assert blocks[0] == "input_proj" and blocks[-1] == "output_proj"


def test_keras_zoo_model(keras_zoo_model):
    _check_zoo_card(keras_zoo_model, "lorenz96", "keras")
    names = [layer.name for layer in keras_zoo_model.card.layers]
    assert names == ["input_proj", "block_1_fc1", "block_1_fc2", "block_2_fc1", "block_2_fc2", "output_proj"]
    assert keras_zoo_model.card.extra["float_quality"]["rmse_step1"] < 0.1  # far better than persistence (~0.1)


def test_onnx_zoo_model_went_through_onnx2tf(onnx_zoo_model):
    _check_zoo_card(onnx_zoo_model, "sunspots", "onnx")
    assert (zoo.model_dir("mlp-sunspots-onnx") / "mlp-sunspots-onnx.onnx").exists()  # the torch export is kept
    assert onnx_zoo_model.graph.input_shapes() == [(1, 12, 1)]


def test_build_is_cached(keras_zoo_model):
    again = zoo.build("zoo:mlp-lorenz96")
    assert again.card.tflite_sha256 == keras_zoo_model.card.tflite_sha256
    assert zoo.is_built("mlp-lorenz96")


def test_rollout_of_zoo_model_tracks_truth_better_than_persistence(keras_zoo_model):
    from edgetqs.metrics import rollout_metrics
    from edgetqs.zoo.evaluate import litert_rollout

    contexts, truth = zoo.true_trajectories("lorenz96", window=4, horizon=5, count=4)
    pred = litert_rollout(keras_zoo_model.tflite_path, keras_zoo_model.card.rollout, contexts, 5)
    persistence = np.repeat(contexts[:, -1:, :], 5, axis=1)
    assert rollout_metrics(pred, truth).rmse < 0.5 * rollout_metrics(persistence, truth).rmse


def test_keras_training_is_deterministic(tmp_path):
    from edgetqs.zoo.training import train_keras

    entry = dataclasses.replace(zoo.entry("mlp-sunspots"), epochs=2)
    train_keras(entry, tmp_path / "a.keras")
    train_keras(entry, tmp_path / "b.keras")
    import keras

    a, b = (keras.models.load_model(tmp_path / f"{n}.keras") for n in "ab")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert np.array_equal(wa, wb)


def test_torch_training_is_deterministic(tmp_path):
    import onnx
    from onnx import numpy_helper

    from edgetqs.zoo.training import train_torch

    entry = dataclasses.replace(zoo.entry("mlp-sunspots-onnx"), epochs=3)
    weights = []
    for name in ("a", "b"):
        train_torch(entry, tmp_path / f"{name}.onnx")
        weights.append([numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / f"{name}.onnx")).graph.initializer])
    assert all(np.array_equal(x, y) for x, y in zip(*weights))


# -- commands -----------------------------------------------------------------
def test_zoo_command_lists_at_least_twelve(capsys):
    assert main(["zoo", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) >= 12
    assert {"name", "arch", "system", "params", "built", "training_seconds", "float_quality"} <= set(rows[0])


def test_zoo_command_table_shows_built_quality(keras_zoo_model, capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    assert "mlp-lorenz96" in out and "transformer-co2" in out


def test_zoo_build_unknown_name_is_an_error(capsys):
    assert main(["zoo", "build", "mlp-weather"]) != 0
    assert "no zoo model" in capsys.readouterr().err


@pytest.mark.parametrize("fixture", ["keras_zoo_model", "onnx_zoo_model"])
def test_inspect_zoo_models(fixture, request, capsys):
    model = request.getfixturevalue(fixture)
    assert main(["inspect", f"zoo:{model.card.name}", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["name"] == model.card.name and len(card["layers"]) == len(model.card.layers)
    assert main(["inspect", f"zoo:{model.card.name}"]) == 0
    out = capsys.readouterr().out
    assert "window=" in out and model.card.layers[0].name in out


def test_inspect_float_tflite_of_a_zoo_model(keras_zoo_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGETQS_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "exported.tflite"
    shutil.copy(keras_zoo_model.tflite_path, path)
    assert main(["inspect", str(path), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["source_format"] == "tflite"
    assert card["rollout"]["window"] == 4 and card["rollout"]["features"] == 40
    assert [l["weight_tensors"] for l in card["layers"]] == [l.weight_tensors for l in keras_zoo_model.card.layers]


def test_zoo_build_command_reports_the_built_model(keras_zoo_model, capsys):
    assert main(["zoo", "build", "mlp-lorenz96", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "mlp-lorenz96" and row["built"] and row["params"] == keras_zoo_model.card.total_params
    assert row["float_quality"] == keras_zoo_model.card.extra["float_quality"]


def test_gru_zoo_model_is_flat_for_the_engine():
    """unroll=True: the recurrent model is plain ops in one subgraph (no WHILE), one
    layer per weight matrix shared by all time steps."""
    model = zoo.build("gru-sunspots")
    assert model.graph.num_subgraphs == 1
    assert not {op.opcode for op in model.graph.operators} & {"WHILE", "IF", "CALL_ONCE", "UNIDIRECTIONAL_SEQUENCE_RNN"}
    names = [layer.name for layer in model.card.layers]
    assert names == ["gru/kernel", "gru/recurrent_kernel", "output_proj"]
    steps = sum(op.opcode == "FULLY_CONNECTED" for op in model.graph.operators)
    assert steps > 12  # the recurrent matrix is applied once per window step


def test_zoo_model_with_a_contradicting_rollout_spec_is_an_error(keras_zoo_model):
    from edgetqs.model.card import RolloutSpec
    from edgetqs.zoo.resolve import load_model

    assert load_model("zoo:mlp-lorenz96", RolloutSpec.parse("window=4,features=40")).card.name == "mlp-lorenz96"
    with pytest.raises(EdgeTQSError, match="does not match mlp-lorenz96"):
        load_model("zoo:mlp-lorenz96", RolloutSpec.parse("window=8,features=40"))


def test_deep_tier_has_many_units_and_stays_out_of_the_default_list():
    """Issue 13: >= 3 deep models, >= 24 weighted units, 1-10 M parameters (counted from the
    architecture without training); CI's default list (tier core) does not include them."""
    deep = zoo.list_models("deep")
    assert len(deep) >= 3 and not {e.name for e in deep} & {e.name for e in zoo.list_models()}
    assert {e.name for e in zoo.list_models("all")} == {e.name for e in zoo.list_models()} | {e.name for e in deep}
    for e in deep:
        model = BUILDERS[e.arch](e.window, SYSTEMS[e.system].features, **e.arch_options)
        kernels = [w for w in model.weights if "kernel" in w.path]  # one per Dense/Conv/attention projection
        assert len(kernels) >= 24, (e.name, len(kernels))
        assert 1_000_000 <= model.count_params() <= 10_000_000, (e.name, model.count_params())
    with pytest.raises(EdgeTQSError, match="no zoo tier"):
        zoo.list_models("huge")


def test_covariate_zoo_model_predicts_the_state_and_reads_the_force(capsys):
    """mlp-duffing: 4 input columns (position, velocity, the force's cos/sin phase), 2 predicted; its
    training series is one command away for --data, and data-free scoring refuses it."""
    from edgetqs.cli.app import main
    from edgetqs.tqs.score import ScoreSettings, score_model

    model = zoo.build("mlp-duffing")
    spec = model.card.rollout
    assert spec.covariates == [2, 3] and spec.fed_back == [0, 1]
    assert model.graph.input_shapes() == [(1, 8, 4)] and model.graph.output_shapes()[0][-1] == 2
    _check_zoo_card(model, "duffing", "keras")
    assert main(["zoo", "data", "mlp-duffing"]) == 0
    series = np.load(capsys.readouterr().out.strip())
    assert series.shape[1] == 4 and np.allclose(series[:, 2] ** 2 + series[:, 3] ** 2, 1, atol=1e-4)
    with pytest.raises(EdgeTQSError, match="reads covariates"):
        score_model(model.graph, model.card, ScoreSettings(horizon=4, windows=2), progress=False)
    assert main(["inspect", "zoo:mlp-duffing"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "covariates=2+3" in shown and "-> output [1, 2]" in shown
