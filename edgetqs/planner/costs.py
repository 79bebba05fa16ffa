"""Byte-exact sizes of weight formats in the .tflite AI Edge Quantizer writes,
the activation arena, and the memory footprint of a plan.

What a quantized weight tensor costs in the file (AEQ 0.10 serialisation, read
from ``model_modifier.py`` / ``transformations/quantize_tensor.py`` and checked
against its output in tests/planner/test_costs.py):

- values: ``ceil(n * bits / 8)`` bytes (int4 two per byte, int2 four per byte);
- channelwise int: one fp32 scale **and one int64 zero point** per output
  channel (the flatbuffer stores zero points as int64 even when symmetric);
- blockwise int: a new FLOAT16 tensor ``<name>_scales`` of ``[channels, blocks]``
  (bf16-rounded values), no zero points, plus that tensor's own metadata;
- fp16: ``2 n`` bytes;
- weight-only (and fp16 in every mode): a DEQUANTIZE op and its float output
  tensor ``<name>_dequant`` (metadata in the file; at run time the runtime
  dequantizes it once into a float buffer, which the footprint counts);
- buffers: inline flatbuffer vectors (4-byte aligned) for models whose packed
  data is under 256 KiB, else appended after the flatbuffer 16-byte aligned
  (buffers of 1 KiB or more). We round up to 16 for buffers of 1 KiB or more
  and 4 otherwise, so the prediction never undershoots by the padding.

The rest of the file (graph, other tensors, signatures) is the float model as
AEQ re-serialises it (flatbuffers' own builder, which packs tighter than the
TFLite converter) minus its float weight payloads:
``model_bytes = base + sum(bytes_l)``. Measured against AEQ on the zoo, the
constants below are at the top of what we saw, so predictions err on the large
side by a few bytes per tensor, never by a payload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ai_edge_litert.tools import flatbuffer_utils

from edgetqs import runtimes
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.quant import aeq
from edgetqs.quant.formats import FORMATS, WeightFormat
from edgetqs.quant.modes import Mode
from edgetqs.quant.ops import op_spec

# Metadata bytes AEQ adds per tensor beyond payloads, measured on its output
# (tests/planner/test_costs.py keeps them honest): a DEQUANTIZE op with its
# output tensor, and a blockwise scales tensor; names are added separately.
QUANT_TABLE_OVERHEAD = 25  # the quantization table (scale and zero-point vectors, axis) of an int tensor
DEQUANTIZE_INT_OVERHEAD = 71
DEQUANTIZE_FLOAT_OVERHEAD = 77
BLOCK_SCALES_OVERHEAD = 94
TFLITE_ARENA_ALIGNMENT = 64  # TfLite's arena aligns every tensor to 64 bytes



@dataclass(frozen=True)
class WeightTensor:
    """One constant tensor as the planner sees it."""

    name: str
    shape: tuple[int, ...]
    op: str  # the op that reads it
    channel_axis: int
    quantizable: bool  # AEQ quantizes it (a weight input of a supported op)

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def channels(self) -> int:
        return self.shape[self.channel_axis] if self.shape else 1

    @property
    def fan_in(self) -> int:
        return self.elements // max(self.channels, 1)


def weight_tensors(graph: TFLiteGraph) -> dict[str, WeightTensor]:
    """Every float constant tensor, with the op that reads it, its channel axis and
    whether AEQ quantizes it (edgetqs.quant.ops): what stays float is priced as float."""
    found: dict[str, WeightTensor] = {}
    for op in graph.operators:
        spec = op_spec(op.opcode)
        adj_y = bool(getattr(op.options, "adjY", False))
        for position, index in enumerate(op.inputs):
            if index < 0:
                continue
            t = graph.tensors[index]
            if not t.is_constant or t.type_name != "FLOAT32" or t.name in found:
                continue
            found[t.name] = WeightTensor(t.name, tuple(t.shape), op.opcode, spec.weight_axis(t.shape, adj_y),
                                         spec.aeq_quantizes(position, t.shape))
    return found


def _padded(n: int) -> int:
    return (n + 15) // 16 * 16 if n >= 1024 else (n + 3) // 4 * 4


def _name_bytes(name: str) -> int:
    """A flatbuffer string: 4-byte length, the bytes, a NUL, padded to 4."""
    return (4 + len(name.encode()) + 1 + 3) // 4 * 4


def applicable(t: WeightTensor, fmt: WeightFormat) -> bool:
    """Can AEQ store ``t`` as ``fmt`` at all (before asking the runtime)?"""
    if fmt.name == "fp32":
        return True
    if not t.quantizable:
        return False
    if fmt.granularity == "block":  # AEQ refuses a fan-in that is not a multiple of the block
        return t.channel_axis == 0 and t.fan_in % fmt.block_size == 0
    return True


def tensor_bytes(t: WeightTensor, fmt: WeightFormat, mode: Mode) -> int:
    """Bytes ``t`` adds to the .tflite when stored as ``fmt`` (fp32 for non-quantizable tensors)."""
    n = t.elements
    if fmt.name == "fp32" or not t.quantizable:
        return 4 * n  # what the base leaves out, exactly
    if fmt.is_float:
        return _padded(2 * n) + DEQUANTIZE_FLOAT_OVERHEAD + _name_bytes(t.name + "_dequant")
    values = _padded(math.ceil(n * fmt.bits / 8))
    if fmt.granularity == "block":
        blocks = t.channels * math.ceil(t.fan_in / fmt.block_size)
        scales = _padded(2 * blocks) + BLOCK_SCALES_OVERHEAD + _name_bytes(t.name + "_scales")
    else:
        channels = 1 if fmt.granularity == "tensor" else t.channels
        scales = 4 * channels + 8 * channels + QUANT_TABLE_OVERHEAD  # fp32 scale + int64 zero point each
    dequant = DEQUANTIZE_INT_OVERHEAD + _name_bytes(t.name + "_dequant") if mode == Mode.WEIGHT_ONLY else 0
    return values + scales + dequant


def dequantized_copy_bytes(t: WeightTensor, fmt: WeightFormat, mode: Mode) -> int:
    """RAM the runtime spends on a float copy of ``t`` (DEQUANTIZE of a constant)."""
    explicit_dequant = fmt.is_float or mode == Mode.WEIGHT_ONLY
    return 4 * t.elements if t.quantizable and fmt.name != "fp32" and explicit_dequant else 0


def packed_copy_bytes(t: WeightTensor, fmt: WeightFormat, mode: Mode, delegate: str) -> int:
    """RAM ``delegate`` (XNNPACK) spends on its packed copy of ``t`` (edgetqs.runtimes holds the
    per-format fractions). Tensors AEQ leaves float (biases) are packed as float."""
    stored = fmt if t.quantizable else FORMATS["fp32"]
    fraction = runtimes.packed_weight_fraction(delegate, stored.name, stored.bits, mode)
    return math.ceil(fraction * 4 * t.elements)


def base_bytes(graph: TFLiteGraph, tensors: dict[str, WeightTensor]) -> int:
    """The file as AEQ re-serialises it, minus its float weight payloads: what no plan changes."""
    reserialised = len(flatbuffer_utils.convert_object_to_bytearray(graph.model))
    return reserialised - sum(4 * t.elements for t in tensors.values())


def arena_bytes(graph: TFLiteGraph) -> int:
    """Peak bytes of activations alive at once, walking the ops in order.

    A tensor lives from the op that writes it (inputs: from the start) to the
    last op that reads it (outputs: to the end), each aligned to 64 bytes as in
    TfLite's arena. TfLite's greedy planner reaches this peak or slightly more
    on branchy graphs; for the chain-like forecasters here it is the peak.
    """
    last_op = len(graph.operators) - 1
    start: dict[int, int] = {i: 0 for i in graph.inputs}
    end: dict[int, int] = {i: last_op for i in graph.outputs}
    for op in graph.operators:
        for i in op.outputs:
            start.setdefault(i, op.index)
        for i in op.inputs:
            if i >= 0 and not graph.tensors[i].is_constant:
                end[i] = max(end.get(i, op.index), op.index)
    peak = 0
    for step in range(len(graph.operators)):
        live = sum(_aligned_size(graph, i) for i, s in start.items() if s <= step <= end.get(i, s))
        peak = max(peak, live)
    return peak


def _aligned_size(graph: TFLiteGraph, index: int) -> int:
    t = graph.tensors[index]
    itemsize = {"FLOAT32": 4, "INT32": 4, "FLOAT16": 2, "INT8": 1, "UINT8": 1, "INT64": 8, "BOOL": 1,
                "INT16": 2}.get(t.type_name, 4)
    n = int(np.prod([max(d, 1) for d in t.shape])) if t.shape else 1
    return (n * itemsize + TFLITE_ARENA_ALIGNMENT - 1) // TFLITE_ARENA_ALIGNMENT * TFLITE_ARENA_ALIGNMENT


# -- static mode ----------------------------------------------------------------
# Static (int8-activation) export adds what no per-tensor sum captures well: a
# quantization table on every activation tensor, int32 biases with per-channel
# scales, QUANTIZE/DEQUANTIZE at the float boundary and around every op left
# float, int8 copies of small constants. Rather than re-implement AEQ's rules,
# the planner has AEQ price the plan itself: the recipe the converter builds,
# quantized with the plan's calibration. Range *values* do not change sizes, but
# range *equalities* do: a bias shared by several ops (an unrolled GRU) is stored
# once if their inputs have equal scales (e.g. hidden states saturated at +-1)
# and duplicated otherwise. Hence real ranges from the model's own free run
# (``static_calibration``); without them, distinct synthetic ranges give the
# upper bound (every shared bias duplicated).
def static_export(graph: TFLiteGraph, formats: dict[str, str], calibration: dict | None = None) -> bytes:
    """The static-mode .tflite AEQ writes for ``formats`` (weight tensor -> format name)."""
    recipe = aeq.build_recipe(graph, formats, Mode.STATIC)  # the recipe the converter exports with
    return aeq.export(_source(graph), recipe, Mode.STATIC, calibration or synthetic_ranges(graph))


def static_model_bytes(graph: TFLiteGraph, formats: dict[str, str], calibration: dict | None = None) -> int:
    """Bytes of the static-mode .tflite AEQ writes for ``formats``."""
    return len(static_export(graph, formats, calibration))


def _source(graph: TFLiteGraph) -> str | bytes:
    return str(graph.path) if graph.path else bytes(flatbuffer_utils.convert_object_to_bytearray(graph.model))


def static_calibration(graph: TFLiteGraph, model_path, windows: np.ndarray) -> dict:
    """AEQ's min/max calibration of the model at ``model_path`` over ``windows`` [K, window, features],
    as the converter calibrates."""
    return aeq.calibrate_windows(model_path, aeq.build_recipe(graph, {}, Mode.STATIC), windows)


def synthetic_ranges(graph: TFLiteGraph) -> dict:
    """An AEQ calibration result with a distinct range per activation tensor (no shared scales)."""
    return {t.name: {"min": np.array(-1.0 - 0.01 * t.index, np.float32),
                     "max": np.array(1.0 + 0.013 * t.index, np.float32)}
            for t in graph.tensors if not t.is_constant}


def static_fixed_bytes(units_tensors: list[list[WeightTensor]], int8_model_bytes: int) -> int:
    """The static file minus what the units add at their int8 costs (fp32 where int8 does not apply),
    from ``int8_model_bytes``: ``static_model_bytes`` with every quantizable unit tensor at int8.

    Exact for any plan of integer formats (weights cost the same as in dynamic
    mode); units left float add the island of QUANTIZE/DEQUANTIZE around them,
    which ``static_model_bytes`` of the chosen plan accounts for.
    """
    int8, fp32 = FORMATS["int8"], FORMATS["fp32"]
    in_units = {t.name: t for ts in units_tensors for t in ts}
    return int8_model_bytes - sum(tensor_bytes(t, int8 if t.quantizable else fp32, "static") for t in in_units.values())
