"""The zoo's systems and data: deterministic, bounded, normalised, NaN-free."""

import numpy as np
import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.zoo import system_data, true_trajectories, training_pairs
from edgetqs.zoo.data import system_name
from edgetqs.zoo.systems import lorenz96_tendency, simulate_ks, simulate_lorenz96


def test_lorenz96_is_deterministic_chaotic_and_bounded():
    a = simulate_lorenz96(200, seed=3, burn_in=200)
    assert np.array_equal(a, simulate_lorenz96(200, seed=3, burn_in=200))
    assert not np.allclose(a, simulate_lorenz96(200, seed=4, burn_in=200))
    assert a.shape == (200, 40) and np.isfinite(a).all()
    assert 1.0 < a.mean() < 4.0 and 2.5 < a.std() < 5.0  # the known F=8 climate: mean ~2.3, std ~3.6


def test_lorenz96_tendency_fixed_point():
    # x_i = F for all i is the (unstable) equilibrium: zero tendency.
    assert np.allclose(lorenz96_tendency(np.full(40, 8.0), 8.0), 0.0)


def test_ks_is_deterministic_and_stays_on_its_attractor():
    u = simulate_ks(200, seed=1, burn_in=400)
    assert np.array_equal(u, simulate_ks(200, seed=1, burn_in=400))
    assert u.shape == (200, 64) and np.isfinite(u).all()
    assert 0.5 < u.std() < 2.5 and np.abs(u).max() < 6  # L=22 chaos: bounded, not decayed to zero
    assert abs(u.mean()) < 0.1  # the spatial mean is conserved (zero here)


@pytest.mark.parametrize("system, features", [("sunspots", 1), ("co2", 1), ("lorenz96", 40), ("ks", 64)])
def test_system_data_is_normalised_and_finite(system, features):
    data = system_data(system)
    assert data.features == features
    assert np.isfinite(data.train).all() and np.isfinite(data.test).all()  # co2's NaN weeks are filled
    assert np.allclose(data.train.mean(axis=0), 0, atol=1e-3) and np.allclose(data.train.std(axis=0), 1, atol=1e-3)
    assert np.allclose(data.denormalise(data.train[:3]), data.denormalise(data.train[:3]))
    assert len(data.test) > 50


def test_system_of_a_zoo_name():
    assert system_name("zoo:gru-ks") == "ks" and system_name("mlp-sunspots-onnx") == "sunspots"
    with pytest.raises(EdgeTQSError):
        system_name("mlp-weather")


def test_true_trajectories_follow_the_test_series():
    test = system_data("lorenz96").test
    contexts, truth = true_trajectories("mlp-lorenz96", window=4, horizon=10, starts=[0, 7])
    assert contexts.shape == (2, 4, 40) and truth.shape == (2, 10, 40)
    assert np.array_equal(contexts[1], test[7:11]) and np.array_equal(truth[1], test[11:21])
    contexts, truth = true_trajectories("sunspots", window=12, horizon=20, count=5)
    assert contexts.shape == (5, 12, 1) and truth.shape == (5, 20, 1)
    with pytest.raises(EdgeTQSError, match="start indices"):
        true_trajectories("sunspots", window=12, horizon=20, starts=[10_000])


def test_training_pairs_are_windows_and_next_steps():
    series = np.arange(20, dtype=np.float32)[:, None]
    x, y = training_pairs(series, window=4, patch=2)
    assert x.shape == (15, 4, 1) and y.shape == (15, 2, 1)
    assert x[3, :, 0].tolist() == [3, 4, 5, 6] and y[3, :, 0].tolist() == [7, 8]
