"""Shape arithmetic the converter emits for a dynamic batch: SHAPE, FILL, RANGE,
ZEROS_LIKE, ONES_LIKE.

The engine folds these at load time (SHAPE reads the graph's static shape,
whose batch dim is 1); the per-trajectory batch axis never enters them.
"""

from __future__ import annotations

import numpy as np

from edgetqs.engine.registry import ints, register


def static_shape(node, graph_input_shape) -> list[np.ndarray]:
    """SHAPE of a tensor whose graph shape is known: folded without running the graph."""
    out_type = np.int64 if node.option("outType", 2) == 4 else np.int32  # TensorType INT64 = 4, INT32 = 2
    return [np.asarray(graph_input_shape, dtype=out_type)[None]]


@register("SHAPE")
def _shape(node, inputs):
    return static_shape(node, inputs[0].shape[1:])


@register("FILL")
def _fill(node, inputs):
    dims, value = ints(inputs[0]), np.asarray(inputs[1]).reshape(-1)[0]
    return [np.full(dims, value, dtype=np.asarray(inputs[1]).dtype)[None]]


@register("ZEROS_LIKE")
def _zeros_like(node, inputs):
    return [np.zeros_like(inputs[0])]


@register("ONES_LIKE")
def _ones_like(node, inputs):
    return [np.ones_like(inputs[0])]


@register("RANGE")
def _range(node, inputs):
    start, limit, delta = (np.asarray(v).reshape(-1)[0] for v in inputs[:3])
    return [np.arange(start, limit, delta, dtype=np.asarray(inputs[0]).dtype)[None]]
