"""The reference quantizer: AEQ's symmetric round-to-nearest, per tensor/channel/block."""

import numpy as np
import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.quant.formats import get_format
from edgetqs.quant.ops import channel_axis
from edgetqs.quant.quantizer import (quantize_block, quantize_channel, quantize_tensor, residual,
                                    residual_norm)


@pytest.fixture
def weights():
    rng = np.random.default_rng(0)
    # Channels of very different magnitude: per-channel scales must follow them.
    return (rng.standard_normal((16, 64)) * np.geomspace(0.01, 10, 16)[:, None]).astype(np.float32)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_channel_residual_is_bounded_by_half_a_step(weights, bits):
    q = quantize_channel(weights, bits, axis=0)
    scale = np.abs(weights).max(axis=1, keepdims=True) / (2 ** (bits - 1) - 1)
    assert np.all(np.abs(q - weights) <= scale / 2 + 1e-6 * scale)
    # Values lie on the grid and within the signed range.
    levels = q / scale
    assert np.allclose(levels, np.rint(levels), atol=1e-3)
    assert levels.min() >= -(2 ** (bits - 1)) - 1e-3 and levels.max() <= 2 ** (bits - 1) - 1 + 1e-3


def test_residual_falls_about_two_to_the_minus_b(weights):
    norms = [residual_norm(weights, get_format(f"int{b}")) for b in (2, 4, 8)]
    assert norms[0] > norms[1] > norms[2] > 0
    # From 4 to 8 bits the step shrinks by (2^7-1)/(2^3-1) = 18.1: the norm follows within a factor 1.5.
    ratio = norms[1] / norms[2]
    assert 18.1 / 1.5 < ratio < 18.1 * 1.5


def test_per_channel_beats_per_tensor_and_blocks_beat_channels(weights):
    per_tensor = np.linalg.norm(quantize_tensor(weights, 4) - weights)
    per_channel = np.linalg.norm(quantize_channel(weights, 4) - weights)
    blockwise = np.linalg.norm(quantize_block(weights, 4, 16) - weights)
    assert blockwise < per_channel < per_tensor


def test_block_size_of_the_whole_fan_in_is_per_channel(weights):
    assert np.array_equal(quantize_block(weights, 4, 64), quantize_channel(weights, 4))
    # A short last block (64 = 3*20 + 4) still quantizes every value within its own block's step.
    q = quantize_block(weights, 4, 20)
    assert q.shape == weights.shape and np.all(np.isfinite(q))


def test_channel_axis_follows_the_op():
    assert channel_axis("FULLY_CONNECTED", (8, 4)) == 0
    assert channel_axis("CONV_2D", (8, 3, 3, 4)) == 0
    assert channel_axis("DEPTHWISE_CONV_2D", (1, 3, 3, 8)) == 3
    assert channel_axis("BATCH_MATMUL", (2, 4, 8)) == 2
    assert channel_axis("BATCH_MATMUL", (2, 8, 4), adj_y=True) == 1
    assert channel_axis("FULLY_CONNECTED", (8,)) == 0


def test_depthwise_channels_are_quantized_along_the_last_axis():
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((1, 3, 3, 4)) * np.array([0.01, 0.1, 1, 10])).astype(np.float32)
    along_last = np.abs(quantize_channel(w, 4, axis=3) - w)
    # The small channel keeps a small error only when its scale is its own.
    assert along_last[..., 0].max() < 0.01


def test_format_residuals_match_the_formats():
    w = np.random.default_rng(2).standard_normal((8, 64)).astype(np.float32)
    assert residual_norm(w, get_format("fp32")) == 0.0
    assert 0 < residual_norm(w, get_format("fp16")) < residual_norm(w, get_format("int8"))
    assert residual_norm(w, get_format("int4_b32")) < residual_norm(w, get_format("int4"))
    assert np.allclose(residual(w, get_format("int4")), quantize_channel(w, 4) - w)


def test_zero_channel_and_bad_bits():
    w = np.zeros((2, 5), np.float32)
    assert residual_norm(w, get_format("int4")) == 0.0
    with pytest.raises(EdgeTQSError, match="bit-width"):
        quantize_channel(w, 1)
