"""Weighted linear ops: FULLY_CONNECTED and BATCH_MATMUL.

Both are linear in each operand, which is what makes probes cheap: the batch
of all probe groups shares one GEMM ``x · W`` and each group that perturbs W
adds ``x_rows · delta`` for its own rows only, before the bias and fused
activation. FULLY_CONNECTED runs on the engine's row-exact GEMM (gemm.py);
BATCH_MATMUL on numpy's matmul, which multiplies each trajectory's own slices.
"""

from __future__ import annotations

import numpy as np

from edgetqs.engine.ops.binary import align_ranks
from edgetqs.engine.ops.unary import apply_fused
from edgetqs.engine import gemm
from edgetqs.engine.registry import register

FC_INPUT, FC_WEIGHT, FC_BIAS = 0, 1, 2


@register("FULLY_CONNECTED", perturbable=True)
def fully_connected(node, inputs, perturbations=()):
    x, weight = inputs[0], inputs[1][0]  # weight [out, in]; constants carry a leading axis of 1
    bias = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    batch, n_in = x.shape[0], weight.shape[1]
    rows = np.ascontiguousarray(x, dtype=np.float32).reshape(batch, -1, n_in)
    z = gemm.matmul(rows, gemm.transposed(inputs[1], weight.shape[0]))
    if bias is not None:
        z += bias.reshape(-1)
    for p in perturbations:
        if p.input_position == FC_WEIGHT:
            z[p.rows] += gemm.matmul(rows[p.rows], p.transposed(weight.shape[0]))
        elif p.input_position == FC_BIAS:
            z[p.rows] += p.delta.reshape(-1)
        else:
            raise NotImplementedError("FULLY_CONNECTED input is not a constant")
    z = apply_fused(z, node.option("fusedActivationFunction"))
    if node.option("keepNumDims", False):
        return [z.reshape(batch, *x.shape[1:-1], weight.shape[0])]
    return [z]  # [B, rows, out]: the graph's 2-D [rows, out] per trajectory


def gemm_layout_weights(graph) -> set[str]:
    """2-D weights read only as a FULLY_CONNECTED weight: this kernel multiplies them as [fan_in, out]
    (``gemm.transposed``), so a delta made in that layout (Fortran order in the weight's shape) is used
    where it lies, with no transposed copy."""
    readers: dict[int, set[tuple[str, int]]] = {}
    for op in graph.operators:
        for position, index in enumerate(op.inputs):
            readers.setdefault(index, set()).add((op.opcode, position))
    return {graph.tensors[i].name for i, read in readers.items()
            if i >= 0 and read == {("FULLY_CONNECTED", FC_WEIGHT)} and len(graph.tensors[i].shape) == 2}


def _maybe_adjoint(value, adjoint):
    return np.swapaxes(value, -1, -2) if adjoint else value


@register("BATCH_MATMUL", perturbable=True)
def batch_matmul(node, inputs, perturbations=()):
    adj_x, adj_y = bool(node.option("adjX", False)), bool(node.option("adjY", False))
    out_rank = len(node.output_shapes[0])
    a, b = align_ranks(inputs[:2], node.input_ranks[:2], out_rank)
    a, b = _maybe_adjoint(a, adj_x), _maybe_adjoint(b, adj_y)
    batch = max(a.shape[0], b.shape[0])
    out = np.matmul(a, b)
    if perturbations:
        out = np.array(np.broadcast_to(out, (batch, *out.shape[1:])))
    for p in perturbations:
        delta = p.delta.reshape((1,) * (out_rank - p.delta.ndim) + p.delta.shape)[None]
        if p.input_position == 0:
            out[p.rows] += np.matmul(_maybe_adjoint(delta, adj_x), b[p.rows] if b.shape[0] > 1 else b)
        else:
            out[p.rows] += np.matmul(a[p.rows] if a.shape[0] > 1 else a, _maybe_adjoint(delta, adj_y))
    return [np.ascontiguousarray(out, dtype=np.float32)]
