"""The parallel numba builds really run in parallel and agree bit for bit with the serial ones.

numba's disk cache keys a function by name, not by compile flags: a parallel
build of the same function once loaded the serial machine code (engine/jit.py).
"""

import numba
import numpy as np

from edgetqs.engine import gemm
from edgetqs.engine.jit import serial_and_parallel
from edgetqs.engine.ops import softmax


def test_builds_have_their_own_cache_names():
    for serial, parallel in [(gemm._gemm_serial, gemm._gemm_parallel),
                             (softmax._softmax_serial, softmax._softmax_parallel)]:
        assert serial.py_func.__qualname__ != parallel.py_func.__qualname__
        assert parallel.targetoptions.get("parallel") and not serial.targetoptions.get("parallel")


def test_parallel_gemm_starts_threads_and_matches_serial():
    rng = np.random.default_rng(0)
    x, w_t = rng.standard_normal((203, 77), np.float32), rng.standard_normal((77, 45), np.float32)
    serial_out, parallel_out = np.empty((203, 45), np.float32), np.empty((203, 45), np.float32)
    gemm._gemm_serial(x, w_t, serial_out)
    gemm._gemm_parallel(x, w_t, parallel_out)
    assert numba.threading_layer() in ("omp", "tbb", "workqueue")  # raises if no parallel region ever ran
    np.testing.assert_array_equal(serial_out, parallel_out)
    np.testing.assert_allclose(serial_out, x.astype(np.float64) @ w_t, rtol=1e-4, atol=1e-4)


def test_parallel_softmax_matches_serial():
    x = np.random.default_rng(1).standard_normal((301, 52), np.float32) * 4
    a, b = np.empty_like(x), np.empty_like(x)
    softmax._softmax_serial(x, np.float32(0.5), a)
    softmax._softmax_parallel(x, np.float32(0.5), b)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-5)


def test_serial_and_parallel_wraps_any_prange_kernel():
    def double_rows(x, out):
        for r in numba.prange(x.shape[0]):
            out[r] = 2 * x[r]

    serial, parallel = serial_and_parallel(double_rows)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    for kernel in (serial, parallel):
        out = np.empty_like(x)
        kernel(x, out)
        np.testing.assert_array_equal(out, 2 * x)
