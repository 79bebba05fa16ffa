"""The engine's weight GEMMs, arranged so probe groups stay bit-exact.

BLAS rounds a row differently depending on where it falls in its tiling, so
two probe groups with the same inputs could drift apart by an ulp, which a
chaotic rollout amplifies into a fake sensitivity. Two ways around it:

- ``numba`` (default): a numba kernel in which every output element is the
  same k-ordered chain of fused multiply-adds wherever its row sits, so a row
  never depends on the other rows at all (``rollout`` and ``rollout_probes``
  agree bit for bit too). Rows are split into slices over both cores
  (``prange``), each slice run by the serial kernel. The serial kernel runs
  4-row x 64-column tiles (16 columns without AVX-512) whose sums stay in
  vector registers over a block of 256 k steps, one column panel at a time so
  that the panel's slice of the weights stays in L2 for every row tile; the
  columns and rows left over run a row-tile loop vectorised over the columns.
  Steady on a busy machine.
- ``blas``: one BLAS call per probe group (``np.matmul`` over a [groups, rows,
  K] stack): every group's call has the same shape, so row r of any group is
  rounded exactly like row r of the reference group. As fast at best, but
  OpenBLAS's spinning threads make it erratic when the cores are shared.
"""

from __future__ import annotations

import contextvars
import functools
import weakref

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from edgetqs.engine.jit import with_sample

TILE_ROWS = 4
PARTS = 8  # slices of rows for the threads to share (at least the number of threads)


@numba.njit(cache=True, fastmath={"contract"})
def _gemm_rows(x, w_t, out):
    """Row tiles over all the columns at once: the serial kernel's leftover rows and columns (and
    all of a product narrower than one register tile)."""
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


# The register tile: TILE_ROWS rows x VECTORS vectors of LANES float32 columns, whose sums stay in
# vector registers over a block of k steps (16 of 32 registers with AVX-512, 8 of 16 with AVX2); per
# k step it loads one row of the panel's weights and broadcasts one x per row. The row-tile loop
# above instead loads and stores its 4 x N sums every 4 k steps, and with N = 2560 they (40 KB) do
# not fit in L1: on patchtf-118m's FFN shapes that kernel ran at 55-62 GFLOP per CPU-s in the engine
# against numpy's ~91 (benchmarks/engine_rate.py).
LANES, VECTORS = (16, 4) if llvm.get_host_cpu_features().get("avx512f") else (8, 2)
PANEL = LANES * VECTORS
# k steps per pass of a tile: the panel's [K_BLOCK, PANEL] slice of the weights (64 KB) stays in L2
# while every row tile of the slice of rows passes over it. Without it, patchtf-118m's K = 2560
# products (a 655 KB panel, evicted by the x rows streaming past) ran ~40% slower than its K = 640
# ones in a micro-benchmark of the kernel.
K_BLOCK = 256
MIN_TILE_ROWS = 2 * TILE_ROWS  # fewer rows than this run the row-tile loop (_gemm_serial says why)


def _register_tile(vectors: int):
    """tile(x, w_t, out, i0, j0, k0, k1): out[i0:i0+4, j0:j0+vectors*LANES] after the k steps
    [k0, k1), starting from 0 if k0 == 0, else from what out holds (the sums after step k0 - 1).

    Written as LLVM IR so the sums can live in registers (numba's arrays live in memory). Each
    step is ``sum + x * w`` with the same ``contract`` flag as the row-tile kernel: one fused
    multiply-add per step, in k order, from 0, so every element is the chain the rest of the
    kernel computes, bit for bit. Arrays must be C-contiguous float32 (the offsets use their
    row strides and take the columns as adjacent).
    """

    @intrinsic
    def tile(typingctx, x, w_t, out, i0, j0, k0, k1):
        if not all(isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 2 and a.layout == "C"
                   for a in (x, w_t, out)):
            return None  # numba then reports the call's types as ones it has no implementation for
        sig = types.void(x, w_t, out, types.intp, types.intp, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            xa, wa, oa = (context.make_array(t)(context, builder, v) for t, v in zip(signature.args[:3], args[:3]))
            i0, j0, k0, k1 = args[3:]
            intp = context.get_value_type(types.intp)
            vec = ir.VectorType(ir.FloatType(), LANES)
            byte_ptr = ir.IntType(8).as_pointer()

            def const(v):
                return ir.Constant(intp, v)

            def at(data, offset, ty):  # a typed pointer `offset` bytes into an array's data
                return builder.bitcast(builder.gep(builder.bitcast(data, byte_ptr), [offset]), ty.as_pointer())

            def row_start(array, row, col):  # byte offset of [row, col] in a C-contiguous array
                stride = cgutils.unpack_tuple(builder, array.strides, 2)[0]
                return builder.add(builder.mul(row, stride), builder.mul(col, const(4)))

            out_rows = [row_start(oa, builder.add(i0, const(r)), j0) for r in range(TILE_ROWS)]
            sums = [[cgutils.alloca_once(builder, vec) for _ in range(vectors)] for _ in range(TILE_ROWS)]
            with builder.if_else(builder.icmp_signed("==", k0, const(0))) as (first, later):
                with first:
                    for row in sums:
                        for s in row:
                            builder.store(ir.Constant(vec, [0.0] * LANES), s)
                with later:
                    for r, row in enumerate(sums):
                        for v, s in enumerate(row):
                            load = builder.load(at(oa.data, builder.add(out_rows[r], const(4 * LANES * v)), vec))
                            load.align = 4
                            builder.store(load, s)
            x_rows = [row_start(xa, builder.add(i0, const(r)), const(0)) for r in range(TILE_ROWS)]
            splat = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
            undef = ir.Constant(vec, None)
            with cgutils.for_range_slice(builder, k0, k1, const(1), inc=True) as (k, _):
                w_row = row_start(wa, k, j0)
                ws = []
                for v in range(vectors):
                    load = builder.load(at(wa.data, builder.add(w_row, const(4 * LANES * v)), vec))
                    load.align = 4
                    ws.append(load)
                for r, row in enumerate(sums):
                    xv = builder.load(at(xa.data, builder.add(x_rows[r], builder.mul(k, const(4))), ir.FloatType()))
                    xs = builder.shuffle_vector(builder.insert_element(undef, xv, ir.Constant(ir.IntType(32), 0)),
                                                undef, splat)
                    for s, w in zip(row, ws):
                        product = builder.fmul(xs, w, flags=("contract",))
                        builder.store(builder.fadd(builder.load(s), product, flags=("contract",)), s)
            for r, row in enumerate(sums):
                for v, s in enumerate(row):
                    store = builder.store(builder.load(s), at(oa.data, builder.add(out_rows[r], const(4 * LANES * v)),
                                                              vec))
                    store.align = 4
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile_panel = _register_tile(VECTORS)
_tile_vector = _register_tile(1)  # the columns past the last full panel, one vector at a time


@numba.njit(cache=True, fastmath={"contract"})
def _gemm_serial(x, w_t, out):
    """Column panels of register tiles, then the leftover columns and rows by ``_gemm_rows``."""
    m, k_dim = x.shape
    n = w_t.shape[1]
    m4 = m - m % TILE_ROWS
    n_vec = n - n % LANES
    # One row tile reads all of w_t once either way, and the row-tile loop reads it in order where a
    # panel walks it with a stride: at 4 x 2560 x 640, ~29 against ~18 GFLOP per CPU-s (with 8 rows
    # or more the register tiles are ahead).
    if m < MIN_TILE_ROWS or n_vec == 0:
        _gemm_rows(x, w_t, out)
        return
    j0 = 0
    while j0 < n_vec:
        wide = j0 + PANEL <= n
        for k0 in range(0, max(k_dim, 1), K_BLOCK):
            k1 = min(k0 + K_BLOCK, k_dim)
            for i0 in range(0, m4, TILE_ROWS):
                if wide:
                    _tile_panel(x, w_t, out, i0, j0, k0, k1)
                else:
                    _tile_vector(x, w_t, out, i0, j0, k0, k1)
        j0 += PANEL if wide else LANES
    if n_vec < n:  # fewer than LANES columns: a contiguous copy of them (K x < LANES floats) for _gemm_rows
        rest = np.empty((m4, n - n_vec), np.float32)
        _gemm_rows(x[:m4], np.ascontiguousarray(w_t[:, n_vec:]), rest)
        out[:m4, n_vec:] = rest
    if m4 < m:
        _gemm_rows(x[m4:], w_t, out[m4:])


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
    """The serial kernel on up to PARTS slices of rows, whole tiles each and at least MIN_TILE_ROWS
    rows (so that a 32-row product runs register tiles); prange hands each thread a run of
    consecutive slices. (A prange over the tiles inside the kernel compiled its loop
    worse: ~10-20% more CPU per FLOP, even on one thread.)"""
    m = x.shape[0]
    step = max((m + PARTS * TILE_ROWS - 1) // (PARTS * TILE_ROWS) * TILE_ROWS, MIN_TILE_ROWS)
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
