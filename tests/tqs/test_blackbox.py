"""The black-box LiteRT path and the numba engine give the same scores and rankings
with identical deltas and seeds."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from edgetqs.engine import Engine
from edgetqs.engine.blackbox import LiteRTRollout
from edgetqs.tqs.contexts import free_run, from_file
from edgetqs.tqs.score import ScoreSettings, backend_for, score_model


def _both(graph, card, **kw):
    settings = ScoreSettings(**{"horizon": 8, "windows": 4, "seed": 1, **kw})
    # Same contexts for both: the data-free free run depends on the backend's float arithmetic
    # (a covariate model's come from its data).
    if settings.data:
        contexts = from_file(settings.data, card.rollout, settings.windows, settings.horizon)
    else:
        contexts = free_run(Engine(graph, card.rollout), card.rollout, settings.windows, settings.seed)
    engine = score_model(graph, card, settings, backend=Engine(graph, card.rollout), contexts=contexts, progress=False)
    blackbox = score_model(graph, card, settings, backend=LiteRTRollout(graph, card.rollout), contexts=contexts,
                           progress=False)
    return engine, blackbox


@pytest.mark.parametrize("granularity", ["tensor", "layer"])
def test_engine_and_blackbox_agree_on_the_mlp(mlp_model, granularity):
    graph, card = mlp_model
    engine, blackbox = _both(graph, card, granularity=granularity)
    assert engine.settings["engine"] == "numba" and blackbox.settings["engine"] == "litert"
    for probe in ("quant", "gauss"):
        a, b = engine.gammas(probe), blackbox.gammas(probe)
        assert a.keys() == b.keys()
        names = list(a)
        assert spearmanr([a[n] for n in names], [b[n] for n in names]).statistic >= 0.99
        assert np.allclose([a[n] for n in names], [b[n] for n in names], atol=1e-3)
    for u, v in zip(engine.units, blackbox.units):
        assert u.delta_norm_quant == v.delta_norm_quant and u.delta_norm_gauss == v.delta_norm_gauss
        assert np.allclose(u.curve_quant, v.curve_quant, rtol=1e-2)


def test_numba_is_the_default_and_litert_on_request(mlp_model):
    graph, card = mlp_model
    assert isinstance(backend_for(graph, card, "numba"), Engine)
    assert isinstance(backend_for(graph, card, "litert"), LiteRTRollout)


def _zoo_names():
    from edgetqs import zoo

    return [e.name for e in zoo.list_models()]


@pytest.mark.slow
@pytest.mark.parametrize("name", _zoo_names())
def test_engine_and_blackbox_rank_the_zoo_alike(name):
    """On every zoo model the engine and the black-box path give the same ranking (Spearman >= 0.99)."""
    from edgetqs import zoo
    from edgetqs.engine import UnsupportedOpError

    model = zoo.build(name)
    try:
        Engine(model.graph, model.card.rollout)
    except UnsupportedOpError as exc:
        pytest.skip(f"the engine does not cover this model ({exc.problem}); only the black-box path scores it")
    engine, blackbox = _both(model.graph, model.card, granularity="layer", horizon=6, windows=3,
                             data=zoo.data_for(name))
    assert engine.reference == blackbox.reference
    for probe in ("quant", "gauss"):
        a, b = engine.gammas(probe), blackbox.gammas(probe)
        names = list(a)
        if len(names) >= 3:
            assert spearmanr([a[n] for n in names], [b[n] for n in names]).statistic >= 0.99, probe
        # Values agree too, up to float32 round-off in windows where a unit barely moves the output.
        assert np.allclose([a[n] for n in names], [b[n] for n in names], atol=0.02), probe


def test_a_model_the_engine_cannot_run_is_scored_through_litert(model_dir):
    """CUMSUM has no engine kernel: scoring falls back to the black-box path and says so."""
    import tensorflow as tf
    import tf_keras as keras

    from edgetqs.model.card import RolloutSpec
    from edgetqs.model.tflite_graph import TFLiteGraph

    from tests.tqs.conftest import card_for, convert_keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input((1, 3))
    x = keras.layers.Dense(3, activation="tanh", name="proj")(keras.layers.Flatten()(inputs))
    out = keras.layers.Lambda(lambda t: 0.5 * tf.math.cumsum(t, axis=-1))(x)
    path = convert_keras(keras.Model(inputs, out), model_dir / "cumsum.tflite")
    card = card_for(path, "cumsum-test", RolloutSpec(window=1, features=3, output_rank=2))
    graph = TFLiteGraph.load(path)
    assert "CUMSUM" in {op.opcode for op in graph.operators}
    notes: list[str] = []
    scores = score_model(graph, card, ScoreSettings(engine="numba", horizon=4, windows=2), progress=False, notes=notes)
    assert scores.settings["engine"] == "litert"
    assert any("CUMSUM" in note and "black-box" in note for note in notes)
    assert all(np.isfinite(u.gamma_quant) for u in scores.units)
