"""The engine's weight GEMMs, arranged so probe groups stay bit-exact.

BLAS rounds a row differently depending on where it falls in its tiling, so
two probe groups with the same inputs could drift apart by an ulp, which a
chaotic rollout amplifies into a fake sensitivity. Two ways around it:

- ``numba`` (default): a numba kernel in which every output element is the
  same k-ordered chain of fused multiply-adds wherever its row sits, so a row
  never depends on the other rows at all (``rollout`` and ``rollout_probes``
  agree bit for bit too). Rows are split into slices over both cores
  (``prange``), each slice run by the serial kernel; the inner loop over
  output columns is vectorised. Steady on a busy machine.
- ``blas``: one BLAS call per probe group (``np.matmul`` over a [groups, rows,
  K] stack): every group's call has the same shape, so row r of any group is
  rounded exactly like row r of the reference group. As fast at best, but
  OpenBLAS's spinning threads make it erratic when the cores are shared.
"""

from __future__ import annotations

import contextvars
import functools
import weakref

import numba
import numpy as np

from edgetqs.engine.jit import with_sample

TILE_ROWS = 4
PARTS = 8  # slices of rows for the threads to share (at least the number of threads)


@numba.njit(cache=True, fastmath={"contract"})
def _gemm_serial(x, w_t, out):
    m, k_dim = x.shape
    n = w_t.shape[1]
    k4 = k_dim - k_dim % 4
    tiles = (m + TILE_ROWS - 1) // TILE_ROWS
    for t in range(tiles):
        i0 = t * TILE_ROWS
        rows = min(TILE_ROWS, m - i0)
        acc = np.zeros((TILE_ROWS, n), np.float32)
        # Four rows and four k steps per pass over the columns: each w_t load
        # feeds four rows, each accumulator load four steps. Written as a
        # left-to-right sum, each step still contracts to one fused multiply-add
        # in k order: whatever the grouping, every element is the same chain of
        # FMAs (from 0, k = 0, 1, ...), bit for bit. The full tile names its rows
        # as constants: with rows picked by a loop index (an 8-row tile walked 4
        # rows at a time) the same arithmetic ran ~10-25% slower on
        # patchtf-118m's shapes (benchmarks/engine_rate.py has the workload).
        if rows == TILE_ROWS:
            a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
            x0, x1, x2, x3 = x[i0], x[i0 + 1], x[i0 + 2], x[i0 + 3]
            for k in range(0, k4, 4):
                w0, w1, w2, w3 = w_t[k], w_t[k + 1], w_t[k + 2], w_t[k + 3]
                p0, p1, p2, p3 = x0[k], x0[k + 1], x0[k + 2], x0[k + 3]
                q0, q1, q2, q3 = x1[k], x1[k + 1], x1[k + 2], x1[k + 3]
                s0, s1, s2, s3 = x2[k], x2[k + 1], x2[k + 2], x2[k + 3]
                u0, u1, u2, u3 = x3[k], x3[k + 1], x3[k + 2], x3[k + 3]
                for j in range(n):
                    v0, v1, v2, v3 = w0[j], w1[j], w2[j], w3[j]
                    a0[j] = (((a0[j] + p0 * v0) + p1 * v1) + p2 * v2) + p3 * v3
                    a1[j] = (((a1[j] + q0 * v0) + q1 * v1) + q2 * v2) + q3 * v3
                    a2[j] = (((a2[j] + s0 * v0) + s1 * v1) + s2 * v2) + s3 * v3
                    a3[j] = (((a3[j] + u0 * v0) + u1 * v1) + u2 * v2) + u3 * v3
        else:  # the last, partial tile: one row at a time, the same chain
            for r in range(rows):
                a0, x0 = acc[r], x[i0 + r]
                for k in range(0, k4, 4):
                    w0, w1, w2, w3 = w_t[k], w_t[k + 1], w_t[k + 2], w_t[k + 3]
                    p0, p1, p2, p3 = x0[k], x0[k + 1], x0[k + 2], x0[k + 3]
                    for j in range(n):
                        a0[j] = (((a0[j] + p0 * w0[j]) + p1 * w1[j]) + p2 * w2[j]) + p3 * w3[j]
        for k in range(k4, k_dim):
            w = w_t[k]
            for r in range(rows):
                xv = x[i0 + r, k]
                a = acc[r]
                for j in range(n):
                    a[j] += xv * w[j]
        for r in range(rows):
            out[i0 + r] = acc[r]


# Threads pay off only for big products: waking the second thread costs
# ~30-50 us, so below about 4M multiply-adds one core finishes first. Outputs
# narrower than 32 columns run at a fraction of the speed per multiply-add, so
# they count as 32 wide. (Tuned on whole sweeps on the 2-core box: a lower bar
# made the TCN sweeps ~10% slower, a higher one the mlp-ks sweep.) The
# parallel version runs the serial kernel on slices of rows, so a row's
# rounding does not depend on which one ran.
PARALLEL_MIN_WORK = 1 << 22
NARROW_COLUMNS = 32


@numba.njit(cache=True, parallel=True)
def _gemm_parallel(x, w_t, out):
    """The serial kernel on PARTS slices of rows, whole tiles each; prange hands each thread a
    run of consecutive slices. (A prange over the tiles inside the kernel compiled its loop
    worse: ~10-20% more CPU per FLOP, even on one thread.)"""
    m = x.shape[0]
    step = (m + PARTS * TILE_ROWS - 1) // (PARTS * TILE_ROWS) * TILE_ROWS
    for part in numba.prange(PARTS):
        start = min(part * step, m)
        stop = min(start + step, m)
        if stop > start:
            _gemm_serial(x[start:stop], w_t, out[start:stop])


with_sample(lambda: (np.ones((5, 6), np.float32), np.ones((6, 3), np.float32), np.empty((5, 3), np.float32)),
            _gemm_serial, _gemm_parallel)


def _blas_by_group(a: np.ndarray, w_t: np.ndarray) -> np.ndarray:
    batch, group = a.shape[0], GROUP_ROWS.get()
    groups = batch // group if group and batch % group == 0 else 1
    stacked = np.ascontiguousarray(a, dtype=np.float32).reshape(groups, -1, a.shape[-1])
    return np.matmul(stacked, w_t).reshape(*a.shape[:-1], w_t.shape[1])


_TRANSPOSED: dict[int, tuple[weakref.ref, np.ndarray]] = {}


def transposed(w: np.ndarray, out_dim: int) -> np.ndarray:
    """A weight [out_dim, ...] as a contiguous [fan_in, out_dim], made once per weight array.

    (Copying per call cost a fifth of a rollout.) Kept for as long as the array
    the engine holds lives, keyed by its identity: the transposes go when their
    engine does. (Entries that kept their arrays alive held a float copy of every
    model an earlier engine of the process had run: 2x the weights by the end of
    `edgetqs convert`, which runs two engines.)
    """
    key = id(w)
    entry = _TRANSPOSED.get(key)
    if entry is not None and entry[0]() is w:
        return entry[1]
    w_t = np.ascontiguousarray(w.reshape(out_dim, -1).T, dtype=np.float32)
    if KEEP_TRANSPOSED.get():
        _TRANSPOSED[key] = (weakref.ref(w, functools.partial(_forget, key)), w_t)
    return w_t


def _forget(key: int, ref: weakref.ref) -> None:
    """``w`` died (its weak reference's callback): drop its transpose, unless the key is already another's."""
    if key in _TRANSPOSED and _TRANSPOSED[key][0] is ref:
        del _TRANSPOSED[key]


KERNELS = ("blas", "numba")
# Set by the engine for the duration of a run: which kernel, and how many
# batch rows (trajectories) make one probe group.
KERNEL: contextvars.ContextVar[str] = contextvars.ContextVar("gemm_kernel", default="numba")
GROUP_ROWS: contextvars.ContextVar[int] = contextvars.ContextVar("gemm_group_rows", default=0)
# And whether ``transposed`` keeps what it makes for the weight's next call (False: an engine
# that makes one model call, where keeping every weight's transpose to the end is 1x the weights).
KEEP_TRANSPOSED: contextvars.ContextVar[bool] = contextvars.ContextVar("gemm_keep_transposed", default=True)


def matmul(a: np.ndarray, w_t: np.ndarray) -> np.ndarray:
    """a [B, ..., K] @ w_t [K, N] -> [B, ..., N] float32; B is the engine's batch of trajectories."""
    if KERNEL.get() == "blas":
        return _blas_by_group(a, w_t)
    x = np.ascontiguousarray(a, dtype=np.float32).reshape(-1, a.shape[-1])
    w_t = np.ascontiguousarray(w_t, dtype=np.float32)
    out = np.empty((x.shape[0], w_t.shape[1]), np.float32)
    work = x.shape[0] * x.shape[1] * max(w_t.shape[1], NARROW_COLUMNS)
    kernel = _gemm_parallel if work >= PARALLEL_MIN_WORK else _gemm_serial
    kernel(x, w_t, out)
    return out.reshape(*a.shape[:-1], w_t.shape[1])
