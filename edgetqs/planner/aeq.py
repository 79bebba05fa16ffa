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
from edgetqs.quant.formats import WeightFormat
from edgetqs.quant.modes import Mode

# Static mode: the dynamic-range weights plus int8 activations with calibrated
# ranges (LiteRT's int8 activations are asymmetric, per tensor), as the converter emits.
STATIC_ACTIVATIONS = qtyping.TensorQuantizationConfig(num_bits=8, symmetric=False,
                                                      granularity=qtyping.QuantGranularity.TENSORWISE)

_BLOCKWISE = {32: qtyping.QuantGranularity.BLOCKWISE_32, 64: qtyping.QuantGranularity.BLOCKWISE_64,
              128: qtyping.QuantGranularity.BLOCKWISE_128, 256: qtyping.QuantGranularity.BLOCKWISE_256}


def op_config(fmt: WeightFormat, mode: Mode) -> tuple[qtyping.OpQuantizationConfig, str]:
    """(AEQ op config, algorithm key) that stores weights as ``fmt``."""
    mode = Mode.parse(mode)
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
    weight_only = mode.dequantizes_weights
    config = qtyping.OpQuantizationConfig(
        activation_tensor_config=STATIC_ACTIVATIONS if mode.quantizes_activations else None,
        weight_tensor_config=tensor,
        compute_precision=qtyping.ComputePrecision.FLOAT if weight_only else qtyping.ComputePrecision.INTEGER,
        explicit_dequantize=weight_only,
    )
    return config, "min_max_uniform_quantize"


def quantize_ops(float_model: bytes | str, layers: dict[str, tuple[str, WeightFormat]], mode: str,
                 calibration_inputs: list | None = None) -> bytes:
    """Quantize with AEQ: ``layers`` maps an op's output tensor name to (op type, format).

    fp32 entries are left out of the recipe (AEQ keeps them float). Static mode
    calibrates the activation ranges on ``calibration_inputs`` (the model's inputs, in order).
    """
    q = quantizer.Quantizer(bytearray(float_model) if isinstance(float_model, bytes) else str(float_model))
    for layer_name, (op_type, fmt) in layers.items():
        if fmt.name == "fp32":
            continue
        config, algorithm = op_config(fmt, mode)
        # AEQ matches regexes against the op "scope": its output names joined by ';', with a trailing ';'.
        q.update_quantization_recipe(regex=f"^{re.escape(layer_name)};", operation_name=op_type,
                                     op_config=config, algorithm_key=algorithm)
    calibration = _calibrate(q, float_model, calibration_inputs or []) if mode == "static" else None
    return bytes(q.quantize(calibration).quantized_model)


def _calibrate(q: quantizer.Quantizer, float_model: bytes | str, inputs: list) -> dict:
    """Min/max of every activation over one call with ``inputs``, through the model's first signature."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator

    content = float_model if isinstance(float_model, bytes) else open(float_model, "rb").read()
    signatures = Interpreter(model_content=content).get_signature_list()
    if not signatures:
        raise EdgeTQSError("the model has no signature, which AEQ calibration needs",
                           "re-export it with a serving signature")
    key = next(iter(signatures))
    sample = dict(zip(signatures[key]["inputs"], inputs))
    return q.calibrate({key: [sample]}, num_threads=1, mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED)
