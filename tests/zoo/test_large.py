"""The large-model tier's builders, at test size: same code as the 100M+ models."""

from __future__ import annotations

import numpy as np
import pytest

from edgetqs.errors import EdgeTQSError


def test_catalogue_has_the_large_models_at_their_sizes():
    from edgetqs.zoo import large

    big = large.entry("patchtf-118m").options
    per_block = 4 * big["dim"] ** 2 + 2 * big["dim"] * big["ffn"]
    assert per_block * big["blocks"] >= 100_000_000
    assert 6 * big["blocks"] + 2 >= 100  # weighted units: q, k, v, o, ffn1, ffn2 per block + in/out
    mlp = large.entry("resmlp-23m").options
    assert 2 * mlp["blocks"] * mlp["width"] ** 2 >= 20_000_000
    with pytest.raises(EdgeTQSError):
        large.entry("patchtf-1t")


def test_block_gains_are_seeded_and_spread():
    from edgetqs.zoo.large import GAIN_RANGE, block_gains

    gains = block_gains(24, 0) * np.sqrt(48)
    assert np.array_equal(block_gains(24, 0), block_gains(24, 0))
    assert gains.min() >= GAIN_RANGE[0] and gains.max() <= GAIN_RANGE[1]
    assert gains.max() / gains.min() > 3


@pytest.mark.slow
@pytest.mark.parametrize("name, units", [("patchtf-tiny", 20), ("resmlp-tiny", 10)])
def test_tiny_builds_are_untrained_and_bounded(name, units):
    from edgetqs import zoo
    from edgetqs.engine import Engine

    model = zoo.build(f"zoo:{name}")  # through the zoo's own name resolution
    assert len(model.card.layers) == units
    assert model.card.extra["trained"] is False and "float_quality" not in model.card.extra
    spec = model.card.rollout
    windows = 3 * np.random.default_rng(0).standard_normal((4, spec.window, spec.features)).astype(np.float32)
    trajectory = Engine(model.graph, spec).rollout(windows, 200)
    bound = max(float(np.abs(windows).max()), 2.0)
    assert np.all(np.isfinite(trajectory)) and float(np.abs(trajectory).max()) <= bound + 1e-4
