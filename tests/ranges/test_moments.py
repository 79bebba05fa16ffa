"""The estimator's moment rules against Monte Carlo, and nominal coverage on Gaussian data."""

import numpy as np
import pytest

from edgetqs.ranges import moments as mom


def test_linear_layer_moments_match_monte_carlo_over_gaussian_weights():
    rng = np.random.default_rng(0)
    n_in, n_out, positions = 24, 5, 40
    # Correlated, non-zero-mean input positions: Var[S] must carry the cross-feature covariance.
    x = (rng.standard_normal((positions, n_in)) @ rng.standard_normal((n_in, n_in)) * 0.3 + 0.7).astype(np.float64)
    mu = rng.normal(0, 0.2, n_out)
    var = rng.uniform(0.01, 0.09, n_out)
    bias = rng.normal(0, 1, n_out)
    stats = mom.WeightStats(mu, var, bias, n_in)
    predicted = mom.linear_layer(stats, x.sum(axis=1)[None], np.square(x).sum(axis=1)[None])

    draws = 20000  # weight matrices drawn i.i.d. per output channel, as the surrogate assumes
    w = mu[None, :, None] + np.sqrt(var)[None, :, None] * rng.standard_normal((draws, n_out, n_in))
    y = np.einsum("doi,pi->dpo", w, x) + bias  # [draws, positions, out]
    mc_mean, mc_var = y.mean(axis=(0, 1)), y.var(axis=(0, 1))
    np.testing.assert_allclose(predicted.mean[0], mc_mean, rtol=0.02, atol=0.02)
    np.testing.assert_allclose(predicted.var[0], mc_var, rtol=0.03)


@pytest.mark.parametrize("fn", [np.tanh, "relu", lambda v: 0.5 * (1 + np.tanh(v / 2))])
def test_activation_moments_match_monte_carlo(fn):
    rng = np.random.default_rng(1)
    m = mom.Moments(np.array([[-0.5, 0.3, 2.0]]), np.array([[0.2, 1.5, 4.0]]))
    samples = m.mean + np.sqrt(m.var) * rng.standard_normal((400000, 3))
    if fn == "relu":
        mapped, fn = mom.relu(m), (lambda v: np.maximum(v, 0))
    else:
        mapped = mom.gaussian_map(fn, m)
    np.testing.assert_allclose(mapped.mean[0], fn(samples).mean(axis=0), atol=3e-3)
    np.testing.assert_allclose(mapped.var[0], fn(samples).var(axis=0), rtol=2e-2, atol=1e-3)


def test_sum_product_and_squared_difference_match_monte_carlo():
    rng = np.random.default_rng(2)
    a = mom.Moments(np.array([[1.0, -2.0]]), np.array([[0.5, 2.0]]))
    b = mom.Moments(np.array([[0.5, 0.1]]), np.array([[1.0, 0.3]]))
    sa = a.mean + np.sqrt(a.var) * rng.standard_normal((400000, 2))
    sb = b.mean + np.sqrt(b.var) * rng.standard_normal((400000, 2))
    for rule, sample in ((mom.add(a, b), sa + sb), (mom.multiply(a, b), sa * sb),
                         (mom.squared_difference(a, b), (sa - sb) ** 2)):
        np.testing.assert_allclose(rule.mean[0], sample.mean(axis=0), rtol=2e-2, atol=1e-2)
        np.testing.assert_allclose(rule.var[0], sample.var(axis=0), rtol=3e-2)


def test_pooled_moments_are_the_mixture():
    m = mom.Moments(np.array([[0.0, 2.0]]), np.array([[1.0, 1.0]]))
    pooled = m.pooled()
    assert pooled.mean[0, 0] == pytest.approx(1.0)
    assert pooled.var[0, 0] == pytest.approx(2.0)  # 1 (within) + 1 (between)

