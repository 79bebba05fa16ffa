"""Reductions over graph axes: MEAN, SUM, REDUCE_MAX, REDUCE_MIN, REDUCE_PROD."""

from __future__ import annotations

import numpy as np

from edgetqs.engine.registry import graph_axis, ints, register

_REDUCERS = {"MEAN": np.mean, "SUM": np.sum, "REDUCE_MAX": np.max, "REDUCE_MIN": np.min, "REDUCE_PROD": np.prod}


def _reduce(node, inputs):
    x, axes = inputs[0], ints(inputs[1])
    rank = node.input_ranks[0]
    axes = tuple(sorted({graph_axis(a, rank) for a in axes}))
    out = _REDUCERS[node.opcode](x, axis=axes, keepdims=bool(node.option("keepDims", False)))
    if x.dtype.kind == "f":
        out = out.astype(np.float32, copy=False)
    return [out]


register(*_REDUCERS)(_reduce)
