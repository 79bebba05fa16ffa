"""The engine's GEMM: a numba kernel whose result for a row never depends on
the other rows.

BLAS rounds a row differently depending on where it falls in its tiling, so
two probe groups with the same inputs could drift apart by an ulp, which a
chaotic rollout amplifies into a fake sensitivity. Here every output element
is the same k-ordered chain of fused multiply-adds wherever its row sits, so a
group whose delta is zero reproduces the reference bit for bit, and the rows
of all groups still share each pass over W.

Rows go in tiles of ``TILE_ROWS`` over both cores (``prange``); a tile's rows
reuse each row of W from L1 while the inner loop over output columns is
vectorised (and the same code for every row, hence the same rounding).
"""

from __future__ import annotations

import numba
import numpy as np

TILE_ROWS = 8


@numba.njit(parallel=True, fastmath={"contract"}, cache=True)
def _gemm(x, w_t, out):
    m, k_dim = x.shape
    n = w_t.shape[1]
    tiles = (m + TILE_ROWS - 1) // TILE_ROWS
    for t in numba.prange(tiles):
        i0 = t * TILE_ROWS
        rows = min(TILE_ROWS, m - i0)
        acc = np.zeros((TILE_ROWS, n), np.float32)
        for k in range(k_dim):
            w = w_t[k]
            for r in range(rows):
                xv = x[i0 + r, k]
                a = acc[r]
                for j in range(n):
                    a[j] += xv * w[j]
        for r in range(rows):
            out[i0 + r] = acc[r]


def matmul(a: np.ndarray, w_t: np.ndarray) -> np.ndarray:
    """a [..., K] @ w_t [K, N] -> [..., N], float32, row-independent rounding."""
    x = np.ascontiguousarray(a, dtype=np.float32).reshape(-1, a.shape[-1])
    w_t = np.ascontiguousarray(w_t, dtype=np.float32)
    out = np.empty((x.shape[0], w_t.shape[1]), np.float32)
    _gemm(x, w_t, out)
    return out.reshape(*a.shape[:-1], w_t.shape[1])
