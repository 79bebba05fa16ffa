"""The engine's GEMM: correct, and a row's result does not depend on the other rows."""

import numpy as np

from edgetqs.engine.gemm import matmul


def test_matches_numpy_and_rows_are_independent_of_their_neighbours():
    rng = np.random.default_rng(0)
    w_t = rng.standard_normal((300, 70)).astype(np.float32)
    x = rng.standard_normal((37, 300)).astype(np.float32)  # not a multiple of the row tile
    full = matmul(x, w_t)
    np.testing.assert_allclose(full, x.astype(np.float64) @ w_t, rtol=1e-4, atol=1e-4)
    for start, stop in [(0, 1), (5, 6), (3, 20), (30, 37)]:
        np.testing.assert_array_equal(matmul(x[start:stop], w_t), full[start:stop])
    shuffled = rng.permutation(len(x))
    np.testing.assert_array_equal(matmul(x[shuffled], w_t), full[shuffled])


def test_keeps_leading_axes():
    x = np.ones((2, 3, 4), np.float32)
    assert matmul(x, np.ones((4, 5), np.float32)).shape == (2, 3, 5)
