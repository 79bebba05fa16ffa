"""Activations (also as fused epilogues) and unary math.

numpy's SIMD loops where numpy has the function (tanh, exp: far faster than a
numba loop calling scalar libm); exact GELU needs erfc, a vectorised numba kernel. They
run on one core: cheap next to the GEMMs, and a thread hand-off costs more
than it saves at these sizes.
"""

from __future__ import annotations

import numba
import numpy as np

from edgetqs.engine.jit import with_sample
from edgetqs.engine.registry import register

NONE, RELU, RELU_N1_TO_1, RELU6, TANH, SIGN_BIT = 0, 1, 2, 3, 4, 5


# Exact GELU, x * Phi(x) = 0.5 x erfc(-x / sqrt 2), in float64 with vectorisable arithmetic only
# (libm's erf is a scalar call: 1.0 + erf(x) also rounded the negative tail to 0 where float32
# still holds it). erfc(z), z >= 0: Numerical Recipes' erfcc, t exp(-z^2 + P(t)) with
# t = 1 / (1 + z/2), relative error < 1.2e-7 for every z; exp(y), y in [-146, 0]: a Taylor
# polynomial at y/256 squared 8 times. z stops at 12, where erfc is below float32's smallest
# number. Within ~2 float32 ulps of the exact value everywhere; ~4x the old erf loop's speed
# (GELU was 8% of a patchtf-118m sweep's CPU time). error_model="numpy": no division-by-zero
# branch, which kept the loop from vectorising.
@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _gelu_exact(flat, out):
    for i in range(flat.size):
        v = np.float64(flat[i])
        z = abs(v) * 0.7071067811865476
        z = 12.0 if z > 12.0 else z
        t = 1.0 / (1.0 + 0.5 * z)
        y = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
            0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
        u = y * 0.00390625  # y / 256
        e = 1.0 + u * (1.0 + u * (1 / 2 + u * (1 / 6 + u * (1 / 24 + u * (1 / 120 + u * (1 / 720 + u * (1 / 5040 + u * (
            1 / 40320 + u * (1 / 362880 + u * (1 / 3628800 + u * (1 / 39916800 + u * (1 / 479001600 + u * (
            1 / 6227020800 + u * (1 / 87178291200 + u / 1307674368000))))))))))))))
        e = e * e  # e^(u * 2^8), written out: a loop here stops LLVM vectorising the outer one
        e = e * e
        e = e * e
        e = e * e
        e = e * e
        e = e * e
        e = e * e
        e = e * e
        erfc = t * e  # erfc(|x| / sqrt 2)
        half = 0.5 * v
        out[i] = half * (2.0 - erfc) if v >= 0 else half * erfc


with_sample(lambda: (np.ones(8, np.float32), np.empty(8, np.float32)), _gelu_exact)


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
