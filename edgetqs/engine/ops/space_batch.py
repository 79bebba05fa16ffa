"""SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND, the converter's way of writing a
dilated convolution.

They move spatial blocks into the graph's batch dim; the engine's own batch
axis stays in front, untouched, so each trajectory's graph batch goes 1 -> d -> 1.
Layouts follow the TensorFlow definitions of the two ops.
"""

from __future__ import annotations

import numpy as np

from edgetqs.engine.registry import ints, register


@register("SPACE_TO_BATCH_ND")
def space_to_batch(node, inputs):
    x, block = inputs[0], ints(inputs[1])
    pads = np.asarray(inputs[2]).reshape(-1, 2)
    m = len(block)
    x = np.pad(x, [(0, 0), (0, 0)] + [(int(a), int(b)) for a, b in pads] + [(0, 0)] * (x.ndim - 2 - m))
    lead, graph_batch, spatial, rest = x.shape[0], x.shape[1], x.shape[2 : 2 + m], x.shape[2 + m :]
    split = [lead, graph_batch]
    for size, b in zip(spatial, block):
        split += [size // b, b]
    x = x.reshape(*split, *rest)
    block_axes = [3 + 2 * i for i in range(m)]
    outer_axes = [2 + 2 * i for i in range(m)]
    rest_axes = list(range(2 + 2 * m, x.ndim))
    x = x.transpose([0, *block_axes, 1, *outer_axes, *rest_axes])
    blocks = int(np.prod(block))
    outer = [size // b for size, b in zip(spatial, block)]
    return [np.ascontiguousarray(x).reshape(lead, blocks * graph_batch, *outer, *rest)]


@register("BATCH_TO_SPACE_ND")
def batch_to_space(node, inputs):
    x, block = inputs[0], ints(inputs[1])
    crops = np.asarray(inputs[2]).reshape(-1, 2)
    m = len(block)
    lead, graph_batch, spatial, rest = x.shape[0], x.shape[1], x.shape[2 : 2 + m], x.shape[2 + m :]
    x = x.reshape(lead, *block, graph_batch // int(np.prod(block)), *spatial, *rest)
    # [lead, b1..bm, batch, s1..sm, rest] -> [lead, batch, s1, b1, ..., sm, bm, rest]
    order = [0, 1 + m]
    for i in range(m):
        order += [2 + m + i, 1 + i]
    order += list(range(2 + 2 * m, x.ndim))
    x = x.transpose(order).reshape(lead, graph_batch // int(np.prod(block)),
                                   *[s * b for s, b in zip(spatial, block)], *rest)
    cut = tuple(slice(int(a), x.shape[2 + i] - int(b)) for i, (a, b) in enumerate(crops))
    x = x[(slice(None), slice(None), *cut)]
    return [np.ascontiguousarray(x)]
