"""Activations (also as fused epilogues) and unary math.

numpy's SIMD loops where numpy has the function (tanh, exp: far faster than a
numba loop calling scalar libm); exact GELU needs erf, a numba kernel. They
run on one core: cheap next to the GEMMs, and a thread hand-off costs more
than it saves at these sizes.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from edgetqs.engine.registry import register

NONE, RELU, RELU_N1_TO_1, RELU6, TANH, SIGN_BIT = 0, 1, 2, 3, 4, 5


@numba.njit(cache=True)
def _gelu_exact(flat, out):
    for i in range(flat.size):
        v = np.float64(flat[i])
        out[i] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))


def _unary(kernel, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    kernel(x.reshape(-1), out.reshape(-1))
    return out


def tanh(x):
    return np.tanh(x, dtype=np.float32)  # numpy's SIMD tanh: ~60x the scalar libm call in a numba loop


def logistic(x):
    with np.errstate(over="ignore"):  # exp(-x) -> inf for very negative x gives exactly 0, as it should
        e = np.exp(-np.asarray(x, dtype=np.float32))
    e += 1
    return np.reciprocal(e, out=e)


def gelu(x, approximate: bool = False):
    if approximate:
        x = np.asarray(x, dtype=np.float32)
        return np.float32(0.5) * x * (1 + tanh(np.float32(0.7978845608028654) * (x + np.float32(0.044715) * x**3)))
    return _unary(_gelu_exact, x)


def apply_fused(x: np.ndarray, code: int | None) -> np.ndarray:
    """Apply a fused activation in place where possible and return the result."""
    if not code:
        return x
    if code == TANH:
        return tanh(x)
    if code == SIGN_BIT:
        return np.sign(x).astype(np.float32)
    low, high = {RELU: (0.0, None), RELU_N1_TO_1: (-1.0, 1.0), RELU6: (0.0, 6.0)}[code]
    return np.clip(x, low, high, out=x)


@register("TANH")
def _tanh_op(node, inputs):
    return [tanh(inputs[0])]


@register("LOGISTIC")
def _logistic_op(node, inputs):
    return [logistic(inputs[0])]


@register("GELU")
def _gelu_op(node, inputs):
    return [gelu(inputs[0], bool(node.option("approximate", False)))]


def _clamped(code):
    def kernel(node, inputs):
        return [apply_fused(np.array(inputs[0], dtype=np.float32), code)]

    return kernel


for _opcode, _code in {"RELU": RELU, "RELU6": RELU6, "RELU_N1_TO_1": RELU_N1_TO_1}.items():
    register(_opcode)(_clamped(_code))


@register("LEAKY_RELU")
def _leaky(node, inputs):
    x = inputs[0]
    return [np.where(x >= 0, x, np.float32(node.option("alpha", 0.2)) * x).astype(np.float32)]


_NUMPY_UNARY = {
    "EXP": np.exp, "SQRT": np.sqrt, "RSQRT": lambda x: 1.0 / np.sqrt(x), "NEG": np.negative, "ABS": np.abs,
    "SQUARE": np.square, "LOG": np.log, "SIN": np.sin, "COS": np.cos,
}


@register(*_NUMPY_UNARY)
def _numpy_unary(node, inputs):
    return [np.asarray(_NUMPY_UNARY[node.opcode](inputs[0]), dtype=np.float32)]
