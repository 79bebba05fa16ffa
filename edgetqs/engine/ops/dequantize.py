"""DEQUANTIZE / CAST: widen fp16 (or int) constants to float32.

These normally see only constants, so the engine folds them once at load time.
"""

from __future__ import annotations

import numpy as np

from edgetqs.engine.registry import register


@register("DEQUANTIZE", "CAST")
def _dequantize(node, inputs):
    return [np.asarray(inputs[0], dtype=np.float32)]
