"""Ops that only re-view data: RESHAPE, EXPAND_DIMS, SQUEEZE, TRANSPOSE.

The graph's batch dim is 1 in every shape; the engine's own batch axis sits in
front of it, so a reshape is simply to (B, *graph output shape).
"""

from __future__ import annotations

import numpy as np

from edgetqs.engine.registry import register


@register("RESHAPE", "EXPAND_DIMS", "SQUEEZE")
def _reshape(node, inputs):
    x = inputs[0]
    return [x.reshape(node.batched_shape(0, x.shape[0]))]


@register("TRANSPOSE")
def _transpose(node, inputs):
    x, perm = inputs[0], inputs[1]
    perm = [int(p) for p in np.asarray(perm).reshape(-1)]
    return [np.ascontiguousarray(np.transpose(x, [0] + [p + 1 for p in perm]))]
