"""Exact GELU: within a few float32 ulps of x * Phi(x) everywhere, the far negative tail included."""

import math

import numpy as np

from edgetqs.engine.ops.unary import gelu


def exact(x: np.ndarray) -> np.ndarray:
    return np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])


def test_gelu_is_within_a_few_ulps_of_the_exact_value():
    x = np.concatenate([np.linspace(-20, 20, 40_001), np.random.default_rng(0).standard_normal(20_000) * 3,
                        [0.0, -0.0, 1e-30, -1e-30, 1e-8]]).astype(np.float32)
    got, want = gelu(x).astype(np.float64), exact(x)
    ulps = np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 3


def test_gelu_keeps_the_negative_tail_that_1_plus_erf_rounds_away():
    x = np.array([-8.0, -10.0, -12.0], np.float32)  # 1 + erf(x / sqrt 2) is 0 in float64 from about -8.3
    got, want = gelu(x), exact(x)
    assert np.all(got < 0)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_gelu_passes_infinities_and_nan_through():
    got = gelu(np.array([np.inf, np.nan, 0.0], np.float32))
    assert got[0] == np.inf and np.isnan(got[1]) and got[2] == 0
