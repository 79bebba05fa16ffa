"""Ops that only re-view data: RESHAPE, EXPAND_DIMS, SQUEEZE, TRANSPOSE.

A RESHAPE target is the graph's own (per trajectory, graph batch 1): its -1
is inferred per trajectory, behind the engine's batch axis.
"""

from __future__ import annotations

import numpy as np

from edgetqs.engine.registry import graph_axis, ints, register


@register("RESHAPE")
def _reshape(node, inputs):
    x = inputs[0]
    if len(inputs) > 1 and inputs[1] is not None:
        target = ints(inputs[1])
    elif node.option("newShape") is not None:
        target = ints(node.option("newShape"))
    else:
        target = list(node.output_shapes[0])
    return [x.reshape(x.shape[0], *target)]


@register("EXPAND_DIMS")
def _expand_dims(node, inputs):
    x, axis = inputs[0], ints(inputs[1])[0]
    return [np.expand_dims(x, graph_axis(axis, node.input_ranks[0] + 1))]


@register("SQUEEZE")
def _squeeze(node, inputs):
    x = inputs[0]
    axes = ints(node.option("squeezeDims") or [])
    rank = node.input_ranks[0]
    if not axes:
        axes = [a for a in range(rank) if x.shape[a + 1] == 1]
    return [np.squeeze(x, axis=tuple(graph_axis(a, rank) for a in axes))]


@register("TRANSPOSE")
def _transpose(node, inputs):
    x, perm = inputs[0], ints(inputs[1])
    return [np.ascontiguousarray(np.transpose(x, [0] + [p + 1 for p in perm]))]
