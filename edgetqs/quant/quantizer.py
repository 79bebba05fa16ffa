"""The reference quantizer of TQS (METHOD.md §2) and the residual norms the planner uses.

Symmetric round-to-nearest, the same arithmetic AI Edge Quantizer applies to
weights (``scale = max|w| / (2^(b-1) - 1)``, values clipped to the full signed
range ``[-2^(b-1), 2^(b-1) - 1]``), so that the residual TQS probes with and the
residual ``||delta_l(q)||`` the planner costs are the error the converter will
really emit.

The output-channel axis of a weight depends on the op that reads it: see
``edgetqs.quant.ops.channel_axis``. Blocks run along the fan-in of each output
channel, ``block_size`` values per scale; a fan-in that is not a multiple of the
block size gets a short last block.
"""

from __future__ import annotations

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.quant.formats import WeightFormat


def _check_bits(bits: int) -> None:
    if not 2 <= bits <= 16:
        raise EdgeTQSError(f"probe bit-width {bits} is outside 2..16", "use --probe-bits between 2 and 16 (4 is the default)")


def _round_symmetric(rows: np.ndarray, bits: int) -> np.ndarray:
    """Quantize-dequantize each row of a 2-D array with its own symmetric scale."""
    qmax = 2 ** (bits - 1) - 1
    qmin = -(2 ** (bits - 1))
    bound = np.max(np.abs(rows), axis=1, keepdims=True)
    scale = bound / qmax
    safe = np.where(scale > 0, scale, 1.0)  # an all-zero row quantizes exactly to zero
    q = np.clip(np.rint(rows / safe), qmin, qmax)
    return (q * safe).astype(rows.dtype)


def _channel_rows(weights: np.ndarray, axis: int) -> np.ndarray:
    """[channels, fan-in] view: the channel axis first, everything else flattened."""
    return np.moveaxis(weights, axis, 0).reshape(weights.shape[axis], -1)


def _from_channel_rows(rows: np.ndarray, like: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(like, axis, 0).shape
    return np.moveaxis(rows.reshape(moved), 0, axis)


def quantize_tensor(weights: np.ndarray, bits: int) -> np.ndarray:
    """Per-tensor symmetric round-to-nearest (one scale)."""
    _check_bits(bits)
    w = np.asarray(weights, np.float32)
    return _round_symmetric(w.reshape(1, -1), bits).reshape(w.shape)


def quantize_channel(weights: np.ndarray, bits: int, axis: int = 0) -> np.ndarray:
    """Per-output-channel symmetric round-to-nearest (one scale per index of ``axis``)."""
    _check_bits(bits)
    w = np.asarray(weights, np.float32)
    if w.ndim == 0:
        return quantize_tensor(w, bits)
    rows = _round_symmetric(_channel_rows(w, axis), bits)
    return _from_channel_rows(rows, w, axis)


def quantize_block(weights: np.ndarray, bits: int, block_size: int, axis: int = 0) -> np.ndarray:
    """Blockwise: per output channel, one scale for every ``block_size`` fan-in values."""
    _check_bits(bits)
    if block_size < 1:
        raise EdgeTQSError(f"block size {block_size} must be >= 1", "use a blockwise format such as int4_b32")
    w = np.asarray(weights, np.float32)
    if w.ndim == 0:
        return quantize_tensor(w, bits)
    rows = _channel_rows(w, axis)
    channels, fan_in = rows.shape
    padded_len = -(-fan_in // block_size) * block_size
    # Zero padding never raises a block's max|w|, so the short last block is exact.
    padded = np.zeros((channels, padded_len), np.float32)
    padded[:, :fan_in] = rows
    blocks = _round_symmetric(padded.reshape(-1, block_size), bits)
    rows_q = blocks.reshape(channels, padded_len)[:, :fan_in]
    return _from_channel_rows(rows_q, w, axis)


def quantize(weights: np.ndarray, fmt: WeightFormat, axis: int = 0) -> np.ndarray:
    """Quantize-dequantize ``weights`` as format ``fmt`` would store them."""
    w = np.asarray(weights, np.float32)
    if fmt.is_float:
        return w.astype(np.float16).astype(np.float32) if fmt.bits == 16 else w.copy()
    if fmt.granularity == "tensor":
        return quantize_tensor(w, fmt.bits)
    if fmt.granularity == "channel":
        return quantize_channel(w, fmt.bits, axis)
    if fmt.granularity == "block":
        return quantize_block(w, fmt.bits, fmt.block_size, axis)
    raise EdgeTQSError(f"format {fmt.name} has unknown granularity '{fmt.granularity}'", "use tensor, channel or block")


def residual(weights: np.ndarray, fmt: WeightFormat, axis: int = 0) -> np.ndarray:
    """``Q(W) - W`` for format ``fmt``: the perturbation quantizing to ``fmt`` causes."""
    w = np.asarray(weights, np.float32)
    return quantize(w, fmt, axis) - w


def residual_norm(weights: np.ndarray, fmt: WeightFormat, axis: int = 0) -> float:
    """``||Q(W) - W||`` (Frobenius): the planner's ``||delta_l(q)||`` for one tensor.

    For a unit of several tensors, combine as ``sqrt(sum(norm_i ** 2))``.
    ``axis`` is the output-channel axis (see :func:`edgetqs.quant.ops.channel_axis`).
    """
    return float(np.linalg.norm(residual(weights, fmt, axis).ravel()))


def probe_format(bits: int) -> WeightFormat:
    """The reference quantizer of the TQS probe: per-channel, ``bits`` bits."""
    _check_bits(bits)
    return WeightFormat(f"int{bits}", bits, "int", "channel")
