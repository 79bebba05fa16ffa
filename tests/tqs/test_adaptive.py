"""Adaptive sweeps vs the full K x T sweep: the same ranking for less work."""

from __future__ import annotations

import numpy as np
import pytest

from edgetqs.tqs.adaptive import AdaptivePolicy, spearman, spread_order
from edgetqs.tqs.score import ScoreSettings, score_model


def test_spread_order_prefixes_cover_the_series():
    order = spread_order(16)
    assert sorted(order) == list(range(16))
    assert order[:4] == [0, 8, 4, 12]
    assert spread_order(1) == [0]


def test_policy_rejects_a_start_too_small_to_halve():
    from edgetqs.errors import EdgeTQSError

    with pytest.raises(EdgeTQSError):
        AdaptivePolicy(start_windows=1).validate()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["patchtf-tiny", "resmlp-tiny"])
def test_adaptive_ranking_matches_the_full_sweep(name):
    from edgetqs import zoo

    model = zoo.build(name)
    full = score_model(model.graph, model.card, ScoreSettings(), progress=False)
    adaptive = score_model(model.graph, model.card, ScoreSettings(adaptive=True), progress=False)
    info = adaptive.settings["adaptive"]
    assert info["work_fraction"] < 1.0  # it did stop early
    assert adaptive.settings["horizon"] == info["horizon_run"] <= full.settings["horizon"]  # what was measured
    for probe in ("quant", "gauss"):
        a = np.array([u.gamma(probe) for u in full.units])
        b = np.array([u.gamma(probe) for u in adaptive.units])
        assert spearman(a, b) >= 0.95, (probe, spearman(a, b))
