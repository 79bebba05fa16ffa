"""Every bad input gets an EdgeTQSError naming the problem and the fix."""

import numpy as np
import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.tqs import contexts as ctx
from edgetqs.engine.blackbox import LiteRTRollout
from edgetqs.tqs.contexts import Contexts
from edgetqs.tqs.score import ScoreSettings, score_model
from edgetqs.tqs.units import build_units

from tests.tqs.conftest import card_for, convert_keras

SPEC = RolloutSpec(window=8, features=3)


def test_nan_in_a_csv_names_the_row_and_feature(tmp_path):
    data = np.random.default_rng(0).standard_normal((50, 3))
    data[17, 2] = np.nan
    path = tmp_path / "series.csv"
    np.savetxt(path, data, delimiter=",", header="a,b,c", comments="")
    with pytest.raises(EdgeTQSError, match=r"time step 17.*feature 2") as err:
        ctx.from_file(path, SPEC, windows=2, horizon=4)
    assert "fix" in str(err.value)


def test_inf_in_an_npy_is_refused(tmp_path):
    data = np.ones((50, 3), np.float32)
    data[3, 0] = np.inf
    np.save(tmp_path / "s.npy", data)
    with pytest.raises(EdgeTQSError, match=r"inf.*time step 3"):
        ctx.from_file(tmp_path / "s.npy", SPEC, windows=2, horizon=4)


def test_a_series_too_short_for_window_plus_horizon(tmp_path):
    np.save(tmp_path / "s.npy", np.zeros((11, 3), np.float32))
    with pytest.raises(EdgeTQSError, match=r"11 time steps.*needs 12"):
        ctx.from_file(tmp_path / "s.npy", SPEC, windows=2, horizon=4)


def test_wrong_feature_count_and_non_numeric_cells(tmp_path):
    np.save(tmp_path / "s.npy", np.zeros((40, 2), np.float32))
    with pytest.raises(EdgeTQSError, match="feature"):
        ctx.from_file(tmp_path / "s.npy", SPEC, windows=2, horizon=4)
    (tmp_path / "bad.csv").write_text("a,b,c\n1,2,3\n4,x,6\n")
    with pytest.raises(EdgeTQSError, match="line 3"):
        ctx.load_series(tmp_path / "bad.csv")
    with pytest.raises(EdgeTQSError, match="no such data file"):
        ctx.load_series(tmp_path / "missing.csv")


def test_csv_contexts_are_normalised_with_the_card_and_spread_over_the_series(tmp_path):
    series = np.arange(60 * 3, dtype=np.float32).reshape(60, 3)
    np.savetxt(tmp_path / "s.csv", series, delimiter=",", header="x,y,z", comments="")
    spec = RolloutSpec(window=8, features=3, norm_mean=[1.0, 2.0, 3.0], norm_std=[2.0, 2.0, 2.0])
    contexts = ctx.from_file(tmp_path / "s.csv", spec, windows=3, horizon=4)
    assert contexts.windows.shape == (3, 8, 3) and contexts.truth.shape == (3, 4, 3)
    assert np.allclose(contexts.windows[0], (series[:8] - [1, 2, 3]) / 2)
    assert np.allclose(contexts.truth[-1], (series[-4:] - [1, 2, 3]) / 2)


@pytest.mark.parametrize("field,value,message", [
    ("horizon", 0, "horizon"), ("windows", 0, "context windows"), ("probe", "nope", "probe"),
    ("engine", "tvm", "engine"), ("probe_bits", 1, "bit-width"),
])
def test_bad_settings(mlp_model, field, value, message):
    graph, card = mlp_model
    settings = ScoreSettings(**{"engine": "litert", "horizon": 2, "windows": 1, field: value})
    with pytest.raises(EdgeTQSError, match=message):
        score_model(graph, card, settings, progress=False)


def test_a_block_regex_that_matches_nothing(mlp_model):
    graph, card = mlp_model
    with pytest.raises(EdgeTQSError, match="matches none") as err:
        build_units(card, graph, "block", block_regex=r"encoder_(\d+)")
    assert "fix" in str(err.value)
    with pytest.raises(EdgeTQSError, match="not a valid regex"):
        build_units(card, graph, "block", block_regex="(")


def test_a_model_with_no_weights(model_dir):
    import tf_keras as keras

    inputs = keras.Input((4, 2))
    out = keras.layers.Lambda(lambda t: 0.5 * t[:, -1, :])(inputs)
    path = convert_keras(keras.Model(inputs, out), model_dir / "noweights.tflite")
    card = card_for(path, "no-weights", RolloutSpec(window=4, features=2, output_rank=2))
    with pytest.raises(EdgeTQSError, match="no float weight tensors"):
        score_model(TFLiteGraph.load(path), card, ScoreSettings(engine="litert", horizon=2, windows=1), progress=False)


def test_every_window_blowing_up_is_an_error(blowup_model):
    graph, card = blowup_model
    windows = np.array([[2.0, 3.0], [1.5, 2.5]], np.float32)[..., None]
    with pytest.raises(EdgeTQSError, match="blows up .* all 2"):
        score_model(graph, card, ScoreSettings(engine="litert", horizon=15, windows=2),
                    backend=LiteRTRollout(graph, card.rollout), contexts=Contexts(windows, "t"), progress=False)
