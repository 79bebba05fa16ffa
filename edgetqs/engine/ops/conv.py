"""Convolutions: CONV_2D (im2col + the engine GEMM) and DEPTHWISE_CONV_2D.

Both are linear in the filter and bias, so probe groups add their own
``patches_rows · delta`` to the shared result before the fused activation.
Conv1D layers arrive from the converter as CONV_2D with height 1.
"""

from __future__ import annotations

import numpy as np

from edgetqs.engine import gemm
from edgetqs.engine.ops.unary import apply_fused
from edgetqs.engine.registry import register

SAME = 0
CONV_WEIGHT, CONV_BIAS = 1, 2


def _same_padding(size, kernel, stride, dilation):
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return out, (total // 2, total - total // 2)


def _geometry(node, size, kernel, stride, dilation):
    if node.option("padding", SAME) == SAME:
        return _same_padding(size, kernel, stride, dilation)
    return (size - (kernel - 1) * dilation - 1) // stride + 1, (0, 0)


def patches(node, x, kh, kw):
    """x [..., H, W, C] -> [..., OH, OW, kh*kw, C]: the receptive field of each output pixel.

    Leading axes are the engine's batch and the graph's batch (which a
    SPACE_TO_BATCH_ND before a dilated conv makes larger than 1).
    """
    sh, sw = node.option("strideH", 1), node.option("strideW", 1)
    dh, dw = node.option("dilationHFactor", 1), node.option("dilationWFactor", 1)
    oh, pad_h = _geometry(node, x.shape[-3], kh, sh, dh)
    ow, pad_w = _geometry(node, x.shape[-2], kw, sw, dw)
    if any(pad_h + pad_w):
        x = np.pad(x, [(0, 0)] * (x.ndim - 3) + [pad_h, pad_w, (0, 0)])
    taps = [
        x[..., i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return np.stack(taps, axis=-2)


def _finish(node, z, bias, perturbations, delta_term):
    if bias is not None:
        z += bias.reshape(-1)
    for p in perturbations:
        z[p.rows] += delta_term(p) if p.input_position == CONV_WEIGHT else p.delta.reshape(-1)
    z = apply_fused(z, node.option("fusedActivationFunction"))
    return [z]


@register("CONV_2D", perturbable=True)
def conv_2d(node, inputs, perturbations=()):
    x, weight = np.asarray(inputs[0], np.float32), inputs[1][0]  # weight [O, KH, KW, C]
    bias = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    n_out, kh, kw, c = weight.shape
    cols = patches(node, x, kh, kw)
    cols = cols.reshape(*cols.shape[:-2], kh * kw * c)
    z = gemm.matmul(cols, gemm.transposed(inputs[1], n_out))

    def delta_term(p):
        return gemm.matmul(cols[p.rows], p.transposed(n_out))

    return _finish(node, z, bias, perturbations, delta_term)


@register("DEPTHWISE_CONV_2D", perturbable=True)
def depthwise_conv_2d(node, inputs, perturbations=()):
    x, weight = np.asarray(inputs[0], np.float32), inputs[1][0]  # weight [1, KH, KW, C*M]
    bias = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    _, kh, kw, cm = weight.shape
    multiplier = cm // x.shape[-1]
    cols = patches(node, x, kh, kw)  # [B, b, OH, OW, K, C]
    if multiplier > 1:
        cols = np.repeat(cols, multiplier, axis=-1)

    z = np.einsum("...kc,kc->...c", cols, weight.reshape(kh * kw, cm)).astype(np.float32)

    def delta_term(p):
        return np.einsum("...kc,kc->...c", cols[p.rows], p.delta.reshape(kh * kw, cm))

    return _finish(node, z, bias, perturbations, delta_term)
