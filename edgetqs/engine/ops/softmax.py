"""SOFTMAX over the last axis (with beta), as a numba kernel over rows."""

from __future__ import annotations

import math

import numba
import numpy as np

from edgetqs.engine.jit import serial_and_parallel, with_sample
from edgetqs.engine.registry import register


def _softmax_rows(x, beta, out):
    for r in numba.prange(x.shape[0]):
        row_max = x[r, 0]
        for j in range(1, x.shape[1]):
            row_max = max(row_max, x[r, j])
        total = 0.0
        for j in range(x.shape[1]):
            e = math.exp((x[r, j] - row_max) * beta)
            out[r, j] = e
            total += e
        for j in range(x.shape[1]):
            out[r, j] = out[r, j] / total


# Rows are independent and each is computed the same way in either version,
# so the threads change no bit; below this many elements one core is faster.
PARALLEL_MIN_ELEMENTS = 1 << 16
_softmax_serial, _softmax_parallel = serial_and_parallel(_softmax_rows)
with_sample(lambda: (np.ones((2, 3), np.float32), np.float32(1.0), np.empty((2, 3), np.float32)),
            _softmax_serial, _softmax_parallel)


@register("SOFTMAX")
def _softmax(node, inputs):
    x = np.ascontiguousarray(inputs[0], dtype=np.float32)
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    kernel = _softmax_parallel if rows.size >= PARALLEL_MIN_ELEMENTS else _softmax_serial
    kernel(rows, np.float32(node.option("beta", 1.0)), out)
    return [out.reshape(x.shape)]


@register("LOG_SOFTMAX")
def _log_softmax(node, inputs):
    x = inputs[0]
    shifted = x - x.max(axis=-1, keepdims=True)
    return [(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))).astype(np.float32)]
