"""The engine's GEMMs: correct, and rounding that keeps probe groups bit-exact."""

import contextlib

import numpy as np

from edgetqs.engine import gemm
from edgetqs.engine.gemm import matmul


@contextlib.contextmanager
def gemm_setting(kernel: str, group_rows: int = 0):
    tokens = gemm.KERNEL.set(kernel), gemm.GROUP_ROWS.set(group_rows)
    try:
        yield
    finally:
        gemm.KERNEL.reset(tokens[0])
        gemm.GROUP_ROWS.reset(tokens[1])


def test_numba_kernel_rows_are_independent_of_their_neighbours():
    rng = np.random.default_rng(0)
    w_t = rng.standard_normal((300, 70)).astype(np.float32)
    x = rng.standard_normal((37, 300)).astype(np.float32)  # not a multiple of the row tile
    with gemm_setting("numba"):
        full = matmul(x, w_t)
        np.testing.assert_allclose(full, x.astype(np.float64) @ w_t, rtol=1e-4, atol=1e-4)
        for start, stop in [(0, 1), (5, 6), (3, 20), (30, 37)]:
            np.testing.assert_array_equal(matmul(x[start:stop], w_t), full[start:stop])
        shuffled = rng.permutation(len(x))
        np.testing.assert_array_equal(matmul(x[shuffled], w_t), full[shuffled])


def test_blas_kernel_rounds_every_group_like_the_first():
    rng = np.random.default_rng(1)
    w_t = rng.standard_normal((512, 256)).astype(np.float32)
    group = rng.standard_normal((24, 3, 512)).astype(np.float32)  # 24 trajectories, 3 rows each
    batch = np.concatenate([group] * 5)  # five probe groups with identical inputs
    with gemm_setting("blas", group_rows=24):
        out = matmul(batch, w_t)
    np.testing.assert_allclose(out[:24], group.astype(np.float64) @ w_t, rtol=1e-4, atol=1e-3)
    for g in range(1, 5):
        np.testing.assert_array_equal(out[24 * g : 24 * (g + 1)], out[:24])


def test_keeps_leading_axes():
    for kernel in gemm.KERNELS:
        with gemm_setting(kernel):
            assert matmul(np.ones((2, 3, 4), np.float32), np.ones((4, 5), np.float32)).shape == (2, 3, 5)


def _fma_chain(x: np.ndarray, w_t: np.ndarray) -> np.ndarray:
    """Every element as one k-ordered chain of fused multiply-adds from 0: what the kernel promises."""
    import numba

    @numba.njit(fastmath={"contract"})
    def chain(x, w_t, out):
        for i in range(x.shape[0]):
            for j in range(w_t.shape[1]):
                acc = np.float32(0)
                for k in range(x.shape[1]):
                    acc += x[i, k] * w_t[k, j]
                out[i, j] = acc

    out = np.empty((x.shape[0], w_t.shape[1]), np.float32)
    chain(x, w_t, out)
    return out


def test_numba_kernel_is_the_k_ordered_fma_chain_serial_and_parallel():
    rng = np.random.default_rng(2)
    # rows not a multiple of the tile, K not a multiple of the k step, N not a multiple of the vector width
    for rows, k, n in [(37, 301, 70), (8, 64, 48), (3, 5, 17), (130, 258, 33)]:
        x, w_t = rng.standard_normal((rows, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
        want = _fma_chain(x, w_t)
        for kernel in (gemm._gemm_serial, gemm._gemm_parallel):
            out = np.empty_like(want)
            kernel(x, w_t, out)
            np.testing.assert_array_equal(out, want)


def test_register_tiles_meet_the_row_tile_loop_at_every_edge():
    """The serial kernel splits a product into register tiles (PANEL, then LANES columns; K_BLOCK k steps
    per pass, the sums carried through ``out`` between passes) and leaves the rest of the rows and
    columns to the row-tile loop (all of it below MIN_TILE_ROWS rows): every split must give the same
    chain, and fill every element."""
    rng = np.random.default_rng(3)
    p, lanes, kb, few = gemm.PANEL, gemm.LANES, gemm.K_BLOCK, gemm.MIN_TILE_ROWS
    shapes = [(few, 2 * kb + 3, 2 * p + lanes + 3),  # all three kinds of columns; K past two blocks, ragged
              (few + 2, kb, p),  # one full panel, K exactly one block, 2 leftover rows
              (few, kb + 1, lanes),  # one vector tile, a last block of one k step
              (few + 1, 3, p - 1),  # vector tiles and a rest, K below 4
              (few, 0, p),  # no k steps: zeros
              (few - 1, kb + 1, p)]  # too few rows for register tiles
    for rows, k, n in shapes:
        x, w_t = rng.standard_normal((rows, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
        want = _fma_chain(x, w_t)
        for kernel in (gemm._gemm_serial, gemm._gemm_parallel):
            out = np.full_like(want, np.nan)
            kernel(x, w_t, out)
            np.testing.assert_array_equal(out, want, err_msg=f"{rows} x {k} x {n}")
    # a row gives the same bits in a register tile (row 1) and among the leftover rows (the last)
    x = rng.standard_normal((few + 1, 2 * kb + 3)).astype(np.float32)
    w_t = rng.standard_normal((2 * kb + 3, p)).astype(np.float32)
    x[-1] = x[1]
    with gemm_setting("numba"):
        out = matmul(x, w_t)
    np.testing.assert_array_equal(out[-1], out[1])
