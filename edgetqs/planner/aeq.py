"""AI Edge Quantizer as the planner uses it: formats -> op configs, and a direct
quantize for the conformance check and the byte-cost verification.

The converter stage owns production recipes (edgetqs/converter/recipe.py); this
module only turns *one* weight format into the AEQ op config the converter is
expected to use for it, so conformance, byte costs and conversion agree.
"""

from __future__ import annotations

import re

from ai_edge_quantizer import qtyping, quantizer

from edgetqs.errors import EdgeTQSError
from edgetqs.planner.formats import WeightFormat

MODES = ("weight_only", "dynamic")

_BLOCKWISE = {32: qtyping.QuantGranularity.BLOCKWISE_32, 64: qtyping.QuantGranularity.BLOCKWISE_64,
              128: qtyping.QuantGranularity.BLOCKWISE_128, 256: qtyping.QuantGranularity.BLOCKWISE_256}


def op_config(fmt: WeightFormat, mode: str) -> tuple[qtyping.OpQuantizationConfig, str]:
    """(AEQ op config, algorithm key) that stores weights as ``fmt``."""
    if mode not in MODES:
        raise EdgeTQSError(f"unknown quantization mode '{mode}'", f"use one of: {', '.join(MODES)}")
    if fmt.is_float:
        # fp16 is a float cast with an explicit DEQUANTIZE, whatever the mode.
        tensor = qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT)
        config = qtyping.OpQuantizationConfig(weight_tensor_config=tensor,
                                              compute_precision=qtyping.ComputePrecision.FLOAT,
                                              explicit_dequantize=True)
        return config, "float_casting"
    if fmt.granularity == "block":
        granularity = _BLOCKWISE[fmt.block_size]
    elif fmt.granularity == "channel":
        granularity = qtyping.QuantGranularity.CHANNELWISE
    else:
        granularity = qtyping.QuantGranularity.TENSORWISE
    tensor = qtyping.TensorQuantizationConfig(num_bits=fmt.bits, symmetric=True, granularity=granularity)
    weight_only = mode == "weight_only"
    config = qtyping.OpQuantizationConfig(
        weight_tensor_config=tensor,
        compute_precision=qtyping.ComputePrecision.FLOAT if weight_only else qtyping.ComputePrecision.INTEGER,
        explicit_dequantize=weight_only,
    )
    return config, "min_max_uniform_quantize"


def quantize_ops(float_model: bytes | str, layers: dict[str, tuple[str, WeightFormat]], mode: str) -> bytes:
    """Quantize with AEQ: ``layers`` maps an op's output tensor name to (op type, format).

    fp32 entries are left out of the recipe (AEQ keeps them float).
    """
    q = quantizer.Quantizer(bytearray(float_model) if isinstance(float_model, bytes) else str(float_model))
    for layer_name, (op_type, fmt) in layers.items():
        if fmt.name == "fp32":
            continue
        config, algorithm = op_config(fmt, mode)
        # AEQ matches regexes against the op "scope": its output names joined by ';', with a trailing ';'.
        q.update_quantization_recipe(regex=f"^{re.escape(layer_name)};", operation_name=op_type,
                                     op_config=config, algorithm_key=algorithm)
    return bytes(q.quantize().quantized_model)
