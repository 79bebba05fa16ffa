"""The black-box LiteRT path and the numba engine give the same scores and rankings
with identical deltas and seeds."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from edgetqs.engine import Engine
from edgetqs.tqs.blackbox import LiteRTRollout
from edgetqs.tqs.contexts import free_run
from edgetqs.tqs.score import ScoreSettings, make_backend, score_model


def _both(graph, card, **kw):
    settings = ScoreSettings(**{"horizon": 8, "windows": 4, "seed": 1, **kw})
    # Same contexts for both: the data-free free run depends on the backend's float arithmetic.
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
    assert isinstance(make_backend(graph, card, "numba"), Engine)
    assert isinstance(make_backend(graph, card, "litert"), LiteRTRollout)
