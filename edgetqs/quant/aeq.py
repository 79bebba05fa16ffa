"""The one adapter to AI Edge Quantizer (AEQ): recipe, calibration, quiet export.

The planner (pricing static plans, the capability check) and the converter
(the real export) both go through here, so what is priced, checked and emitted
is the same recipe run the same way.

- ``op_config(fmt, mode)``: the AEQ op config that stores weights as ``fmt``;
- ``build_recipe(graph, {tensor: format}, mode)``: one entry per op that reads a
  planned weight AEQ quantizes (``edgetqs.quant.ops``), as
  ``Quantizer.load_quantization_recipe`` takes it;
- ``calibrate(model, recipe, samples)``: min/max activation ranges (static mode);
  ``calibration_from_ranges``: ranges from elsewhere written over them;
- ``export(model, recipe, mode, calibration)``: the quantized .tflite bytes, with
  AEQ's size report, progress bars and interpreter warnings kept off the
  terminal (edgetqs shows its own progress).

AEQ addresses ops by a regex that it searches in the op's *scope*: the op's
output tensor names joined by ';' with a trailing ';'
(``ai_edge_quantizer.utils.tfl_flatbuffer_utils.get_op_scope``). Each planned
weight tensor is read by one or more ops (a GRU unrolled in time reads the same
kernel once per step); every such op gets one recipe entry whose regex is that
op's escaped scope, anchored at both ends, so it matches exactly that op.

``graph`` arguments are ``edgetqs.model.tflite_graph.TFLiteGraph`` objects (only
their operators and tensors are read; this module sits below model/).
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_quantizer import calibrator, qtyping, quantizer

from edgetqs.errors import EdgeTQSError
from edgetqs.quant.formats import WeightFormat, get_format
from edgetqs.quant.modes import Mode
from edgetqs.quant.ops import op_spec

NO_QUANTIZE = "no_quantize"
# Static mode: the dynamic-range weights plus int8 activations with calibrated
# ranges (LiteRT's int8 activations are asymmetric, per tensor).
STATIC_ACTIVATIONS = qtyping.TensorQuantizationConfig(num_bits=8, symmetric=False,
                                                      granularity=qtyping.QuantGranularity.TENSORWISE)
_BLOCKWISE = {32: qtyping.QuantGranularity.BLOCKWISE_32, 64: qtyping.QuantGranularity.BLOCKWISE_64,
              128: qtyping.QuantGranularity.BLOCKWISE_128, 256: qtyping.QuantGranularity.BLOCKWISE_256}

Model = str | Path | bytes | bytearray  # a .tflite path or its bytes
# Static mode calibrates on this many context windows of the model's free run (or of
# the calibration data), taken as for rollouts of this many model calls. The converter
# exports with them and the planner prices static plans with the same ranges.
CALIBRATION_WINDOWS = 8
CALIBRATION_HORIZON = 32
# Modes are parsed (Mode.parse) where they enter the adapter, so callers may pass the plan file's string.


# -- recipes --------------------------------------------------------------------
def op_config(fmt: WeightFormat, mode: Mode | str) -> tuple[qtyping.OpQuantizationConfig, str]:
    """(AEQ op config, algorithm key) that stores weights as ``fmt`` in ``mode``."""
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
    config = qtyping.OpQuantizationConfig(
        activation_tensor_config=STATIC_ACTIVATIONS if mode.quantizes_activations else None,
        weight_tensor_config=tensor,
        compute_precision=qtyping.ComputePrecision.FLOAT if mode.dequantizes_weights else qtyping.ComputePrecision.INTEGER,
        explicit_dequantize=mode.dequantizes_weights,
    )
    return config, "min_max_uniform_quantize"


@dataclass
class OpTarget:
    """One op the recipe addresses: its weight tensor and the format planned for it."""

    op: object  # edgetqs.model.tflite_graph.Operator
    weight_tensor: str
    format: str
    scope: str  # AEQ's scope string for this op

    @property
    def regex(self) -> str:
        return "^" + re.escape(self.scope) + "$"


def op_scope(graph, op) -> str:
    """The scope AEQ computes for an op (output tensor names, ';'-joined, trailing ';')."""
    names = [graph.tensors[i].name for i in op.outputs if i >= 0 and graph.tensors[i].name]
    if not names:
        names = [graph.tensors[i].name for i in op.inputs if i >= 0 and graph.tensors[i].name]
    return ";".join(names) + (";" if names else "")


def weight_tensor_of(graph, op) -> str | None:
    """The constant float weight AEQ would quantize in this op, if any (the first, wherever it sits)."""
    spec = op_spec(op.opcode)
    for position, index in enumerate(op.inputs):
        tensor = graph.tensors[index] if index >= 0 else None
        if tensor is not None and tensor.is_constant and tensor.type_name == "FLOAT32" \
                and spec.aeq_quantizes(position, tensor.shape):
            return tensor.name
    return None


def op_targets(graph, formats: dict[str, str]) -> list[OpTarget]:
    """Every op that reads a planned weight tensor as its quantizable weight."""
    targets = []
    for op in graph.operators:
        weight = weight_tensor_of(graph, op)
        if weight is not None and weight in formats:
            targets.append(OpTarget(op, weight, formats[weight], op_scope(graph, op)))
    return targets


def _entry(regex: str, operation: str, fmt: str, mode: Mode) -> dict:
    if fmt == "fp32":
        return {"regex": regex, "operation": operation, "algorithm_key": NO_QUANTIZE}
    config, algorithm = op_config(get_format(fmt), mode)
    return {"regex": regex, "operation": operation, "algorithm_key": algorithm, "op_config": config.to_dict()}


def build_recipe(graph, formats: dict[str, str], mode: Mode | str) -> list[dict]:
    """The AEQ recipe (JSON-able list of entries) that stores each weight tensor as ``formats`` says.

    In static mode a first catch-all entry quantizes every activation to int8
    (weights int8); the per-op entries after it override the weights, because
    AEQ lets the last matching entry win. fp32 entries keep their op float.
    """
    mode = Mode.parse(mode)
    recipe = []
    if mode.quantizes_activations:
        recipe.append(_entry(".*", "*", "int8", mode))
        # The canonical model keeps float input and output (runners feed float
        # windows), so the virtual IO ops stay unquantized.
        recipe += [{"regex": ".*", "operation": io, "algorithm_key": NO_QUANTIZE} for io in ("INPUT", "OUTPUT")]
    for target in op_targets(graph, formats):
        recipe.append(_entry(target.regex, op_spec(target.op.opcode).aeq_name, target.format, mode))
    return recipe


# -- running AEQ ----------------------------------------------------------------
@contextlib.contextmanager
def _quiet():
    """AEQ prints a size report on stdout and tqdm progress bars (calibration over
    more than 100 ops) on stderr, and its calibration opens interpreters with
    preserve_all_tensors, which LiteRT warns about. None of it is ours to show."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _quantizer(model: Model, recipe: list[dict], mode: Mode) -> quantizer.Quantizer:
    """A Quantizer with ``recipe`` loaded; AEQ checks the recipe here, and its refusals are EdgeTQSError."""
    try:
        with _quiet():
            q = quantizer.Quantizer(_aeq_source(model))
            q.load_quantization_recipe(recipe)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise _refusal(exc, mode) from exc
    return q


def _aeq_source(model: Model) -> bytes | str:
    """What AEQ reads: bytes as they are (it reads the float model in place, without a copy; immutable,
    so no transformation can write into the caller's model), a bytearray as bytes, a path as a path
    (AEQ maps the file)."""
    if isinstance(model, bytearray):
        return bytes(model)
    return model if isinstance(model, bytes) else str(model)


def _refusal(exc: Exception, mode: Mode) -> EdgeTQSError:
    reason = str(exc).split("\n")[0][:400]
    return EdgeTQSError(f"AI Edge Quantizer refuses the plan in {mode} mode: {reason}",
                        "plan a format AEQ supports for that op in this mode (blockwise formats need --mode "
                        "dynamic; AEQ has no int2 weight-only kernels), or change --mode")


def _signature(model: Model) -> tuple[str, list[str]]:
    """(signature key, input names in order) of the model's first signature."""
    content = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    signatures = Interpreter(model_content=content).get_signature_list()
    if not signatures:
        raise EdgeTQSError("the model has no signature, which AEQ calibration needs",
                           "re-export the model with a serving signature, or use --mode dynamic")
    key = next(iter(signatures))
    return key, signatures[key]["inputs"]


def calibrate(model: Model, recipe: list[dict], samples: Iterable[list[np.ndarray]]) -> dict:
    """Min/max of every tensor over ``samples`` (each one model call: its inputs, in signature order).

    AEQ keeps a *moving average* of per-call min/max, which lets later samples
    shrink the range and clips the earlier ones; calibrating each sample alone
    and taking the extremes gives the true min/max over all of them.
    """
    key, names = _signature(model)
    q = _quantizer(model, recipe, Mode.STATIC)  # only static mode calibrates
    merged: dict = {}
    for inputs in samples:
        result = _calibrate_once(q, {key: [dict(zip(names, inputs))]})
        for name, qsv in result.items():
            if name not in merged:
                merged[name] = dict(qsv)
            elif "min" in qsv and "max" in qsv:
                merged[name]["min"] = np.minimum(merged[name]["min"], qsv["min"])
                merged[name]["max"] = np.maximum(merged[name]["max"], qsv["max"])
    return merged


def calibrate_windows(model: Model, recipe: list[dict], windows: np.ndarray) -> dict:
    """:func:`calibrate` over context windows [K, window, features] of a one-input forecaster."""
    return calibrate(model, recipe, ([w[None].astype(np.float32)] for w in windows))


def _calibrate_once(q: quantizer.Quantizer, data: dict) -> dict:
    try:
        with _quiet():
            # Profiler-based calibration: the preserve-all-tensors mode fails on some
            # graphs (unrolled GRU, attention) with "Tensor data is null".
            return q.calibrate(data, num_threads=1, mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED)
    except (ValueError, RuntimeError) as exc:
        raise EdgeTQSError(f"AI Edge Quantizer could not calibrate this model for static int8: {exc}",
                           "use --mode dynamic (int8 weights, float activations) for this model") from exc


def calibration_from_ranges(ranges: dict[str, tuple[float, float]], base: dict | None = None) -> dict:
    """An AEQ calibration result with ``ranges`` (tensor -> (low, high)) written over ``base``."""
    result = {name: dict(qsv) for name, qsv in (base or {}).items()}
    for name, (low, high) in ranges.items():
        if not np.isfinite(low) or not np.isfinite(high) or low > high:
            raise EdgeTQSError(f"activation range for '{name}' is [{low}, {high}]",
                               "give finite ranges with low <= high")
        # AEQ wants ranges that include 0 (int8 zero point must be representable).
        result[name] = {"min": np.array(min(low, 0.0), np.float32), "max": np.array(max(high, 0.0), np.float32)}
    return result


def export(model: Model, recipe: list[dict], mode: Mode, calibration: dict | None = None) -> bytes:
    """The .tflite AEQ writes for ``recipe`` (static mode: with ``calibration``); refusals are EdgeTQSError."""
    mode = Mode.parse(mode)
    q = _quantizer(model, recipe, mode)
    try:
        with _quiet():
            result = q.quantize(calibration, enable_progress_bar=False, enable_progress_report=False)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise _refusal(exc, mode) from exc
    return bytes(result.quantized_model)
