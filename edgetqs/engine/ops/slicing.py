"""Ops that cut, join and pad tensors: STRIDED_SLICE, SLICE, GATHER, SPLIT,
SPLIT_V, UNPACK, PACK, CONCATENATION, PAD/PADV2.

Slices are worked out on the graph's axes and applied behind a full slice of
the engine's batch axis.
"""

from __future__ import annotations

import numpy as np

from edgetqs.engine.ops.binary import align_ranks
from edgetqs.engine.ops.unary import apply_fused
from edgetqs.engine.registry import graph_axis, ints, register
from edgetqs.errors import EdgeTQSError

_ALL = slice(None)


@register("STRIDED_SLICE")
def _strided_slice(node, inputs):
    x = inputs[0]
    begin, end, strides = ints(inputs[1]), ints(inputs[2]), ints(inputs[3])
    if node.option("ellipsisMask", 0) or node.option("newAxisMask", 0):
        raise EdgeTQSError(
            f"STRIDED_SLICE (op {node.index}) uses ellipsis/new-axis masks, which the engine does not cover",
            "use the black-box LiteRT path (engine='litert') for this model",
        )
    begin_mask, end_mask = node.option("beginMask", 0), node.option("endMask", 0)
    shrink, offset = node.option("shrinkAxisMask", 0), node.option("offset", False)
    slices = []
    for axis, (b, e, s) in enumerate(zip(begin, end, strides)):
        if shrink >> axis & 1:
            slices.append(b)  # an integer index drops the axis, as the shrink mask asks
            continue
        if offset:
            e = b + e
        slices.append(slice(None if begin_mask >> axis & 1 else b, None if end_mask >> axis & 1 else e, s))
    return [np.ascontiguousarray(x[(_ALL, *slices)])]


@register("SLICE")
def _slice(node, inputs):
    x = inputs[0]
    begin, size = ints(inputs[1]), ints(inputs[2])
    slices = [slice(b, None if n == -1 else b + n) for b, n in zip(begin, size)]
    return [np.ascontiguousarray(x[(_ALL, *slices)])]


@register("GATHER")
def _gather(node, inputs):
    x, indices = inputs[0], np.asarray(inputs[1])
    if node.option("batchDims", 0):
        raise EdgeTQSError(f"GATHER (op {node.index}) with batch_dims is not covered by the engine",
                           "use the black-box LiteRT path (engine='litert') for this model")
    if indices.shape[0] != 1:
        raise EdgeTQSError(f"GATHER (op {node.index}) with computed indices is not covered by the engine",
                           "use the black-box LiteRT path (engine='litert') for this model")
    axis = graph_axis(node.option("axis", 0), node.input_ranks[0])
    return [np.take(x, indices[0].astype(np.int64), axis=axis)]


def _split_by_sizes(x, axis, sizes):
    bounds = np.cumsum([0] + sizes)
    return [np.take(x, np.arange(bounds[i], bounds[i + 1]), axis=axis) for i in range(len(sizes))]


@register("SPLIT")
def _split(node, inputs):
    axis_value, x = inputs[0], inputs[1]
    axis = graph_axis(ints(axis_value)[0], node.input_ranks[1])
    n = node.option("numSplits", len(node.outputs))
    return _split_by_sizes(x, axis, [x.shape[axis] // n] * n)


@register("SPLIT_V")
def _split_v(node, inputs):
    x, sizes, axis_value = inputs[0], ints(inputs[1]), inputs[2]
    axis = graph_axis(ints(axis_value)[0], node.input_ranks[0])
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    return _split_by_sizes(x, axis, sizes)


@register("UNPACK")
def _unpack(node, inputs):
    x = inputs[0]
    axis = graph_axis(node.option("axis", 0), node.input_ranks[0])
    return [np.take(x, i, axis=axis) for i in range(x.shape[axis])]


@register("PACK")
def _pack(node, inputs):
    out_rank = len(node.output_shapes[0])
    batch = max(v.shape[0] for v in inputs)
    values = [np.broadcast_to(v, (batch, *v.shape[1:])) for v in inputs]
    axis = graph_axis(node.option("axis", 0), out_rank)
    return [np.stack(values, axis=axis)]


@register("CONCATENATION")
def _concatenation(node, inputs):
    out_rank = len(node.output_shapes[0])
    batch = max(v.shape[0] for v in inputs)
    values = align_ranks(inputs, node.input_ranks, out_rank)
    values = [np.broadcast_to(v, (batch, *v.shape[1:])) for v in values]
    axis = graph_axis(node.option("axis", 0), out_rank)
    out = np.concatenate(values, axis=axis)
    return [apply_fused(out, node.option("fusedActivationFunction"))]


@register("PAD", "PADV2")
def _pad(node, inputs):
    x = inputs[0]
    pads = np.asarray(inputs[1]).reshape(-1, 2)
    constant = float(np.asarray(inputs[2]).reshape(-1)[0]) if len(inputs) > 2 and inputs[2] is not None else 0.0
    widths = [(0, 0)] + [(int(a), int(b)) for a, b in pads]
    return [np.pad(x, widths, constant_values=constant)]
