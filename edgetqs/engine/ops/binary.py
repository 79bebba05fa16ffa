"""Broadcasting elementwise binary ops, with TFLite's fused activations."""

from __future__ import annotations

import numpy as np

from edgetqs.engine.ops.unary import apply_fused
from edgetqs.engine.registry import register


def align_ranks(values, ranks, out_rank):
    """Insert unit graph axes so every batched value has rank ``1 + out_rank``.

    numpy would broadcast the batch axis against a graph axis when graph ranks
    differ; TFLite broadcasts graph shapes aligned at the right.
    """
    aligned = []
    for value, rank in zip(values, ranks):
        missing = out_rank - rank
        if missing > 0:
            value = value.reshape(value.shape[:1] + (1,) * missing + value.shape[1:])
        aligned.append(value)
    return aligned


_BINARY = {
    "ADD": np.add,
    "SUB": np.subtract,
    "MUL": np.multiply,
    "DIV": np.divide,
    "MAXIMUM": np.maximum,
    "MINIMUM": np.minimum,
    "POW": np.power,
    "SQUARED_DIFFERENCE": lambda a, b: np.square(a - b),
}


def _binary(node, inputs):
    a, b = align_ranks(inputs[:2], node.input_ranks[:2], len(node.output_shapes[0]))
    out = _BINARY[node.opcode](a, b)
    if out.dtype.kind != "f":  # integer shape arithmetic (folded at load time)
        return [out]
    return [apply_fused(out.astype(np.float32, copy=False), node.option("fusedActivationFunction"))]


register(*_BINARY)(_binary)
