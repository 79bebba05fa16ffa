"""Lint a plan against the model and the target runtime before anything is exported.

Three kinds of trouble are caught here rather than on the board:

- a format the target's runtime does not execute correctly for that op
  (the planner's capability matrix, which was measured by running them);
- scales that underflow in fp16: fp16 weights smaller than fp16's smallest
  subnormal become 0, and blockwise scales are stored as fp16 too, so a block
  whose scale underflows is all zeros;
- planned tensors the quantizer will leave float (read only by ops AEQ does
  not quantize, or biases, which LiteRT keeps float32/int32): reported, so
  "what stayed float and why" is never a surprise.

Errors stop the conversion; warnings and notes are reported with the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.planner.planfile import Plan
from edgetqs.quant.aeq import op_targets
from edgetqs.quant.formats import get_format
from edgetqs.quant.modes import Mode

FP16_MIN_SUBNORMAL = 2.0 ** -24  # smaller magnitudes round to zero
FP16_MIN_NORMAL = 2.0 ** -14  # below this fp16 keeps fewer significant bits
FP16_MAX = 65504.0
UNDERFLOW_SHARE_ERROR = 0.01  # more than 1% of a tensor's nonzero weights flushed to zero is an error


@dataclass
class Finding:
    level: str  # "error", "warning" or "note"
    tensor: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.tensor}: {self.message}"


def lint_plan(graph: TFLiteGraph, plan: Plan, mode: Mode, runtime: str | None = None, matrix=None) -> list[Finding]:
    """Every finding for converting ``graph`` under ``plan`` for ``runtime`` (``package==version``)."""
    formats = plan.formats()
    targets = op_targets(graph, formats)
    findings = stays_float(graph, formats, {t.weight_tensor for t in targets})
    for target in targets:
        findings += fp16_findings(graph, target.weight_tensor, target.format)
    if runtime and matrix is not None:
        findings += runtime_findings(targets, mode, runtime, matrix)
    return findings


def raise_on_errors(findings: list[Finding]) -> None:
    errors = [f for f in findings if f.level == "error"]
    if errors:
        raise EdgeTQSError("the plan cannot be converted as it stands:\n  " + "\n  ".join(map(str, errors)),
                           "change those units' formats in the plan (or re-plan for this target), then convert again")


def stays_float(graph: TFLiteGraph, formats: dict[str, str], quantized: set[str]) -> list[Finding]:
    """Planned non-float tensors AEQ will not touch, with the reason."""
    readers: dict[str, set[str]] = {}
    for op in graph.operators:
        for index in op.inputs:
            if index >= 0:
                readers.setdefault(graph.tensors[index].name, set()).add(op.opcode)
    findings = []
    for name, fmt in formats.items():
        if fmt == "fp32" or name in quantized:
            continue
        ops = ", ".join(sorted(readers.get(name, {"no op"})))
        if len(graph.tensor_by_name(name).shape) <= 1:
            why = f"it is a bias of {ops}; LiteRT kernels keep biases float32 (int32 in static mode)"
        else:
            why = f"it is read by {ops}, whose weights AI Edge Quantizer does not quantize"
        findings.append(Finding("note", name, f"planned {fmt} but stays float: {why}"))
    return findings


def fp16_findings(graph: TFLiteGraph, name: str, fmt: str) -> list[Finding]:
    weight = graph.float_constant(graph.tensor_by_name(name))
    spec = get_format(fmt)
    if fmt == "fp16":
        values = np.abs(weight[weight != 0])
        return _fp16_range(name, values, "weights")
    if spec.granularity == "block":
        # AEQ stores one fp16 scale per block: max|w| / qmax (symmetric).
        qmax = 2 ** (spec.bits - 1) - 1
        blocks = np.abs(weight).reshape(-1, spec.block_size) if weight.size % spec.block_size == 0 else None
        if blocks is None:
            return [Finding("error", name, f"{weight.size} values are not a whole number of {spec.block_size}-value blocks")]
        scales = blocks.max(axis=1) / qmax
        return _fp16_range(name, scales[scales > 0], f"{fmt} block scales")
    return []


def _fp16_range(name: str, magnitudes: np.ndarray, what: str) -> list[Finding]:
    if magnitudes.size == 0:
        return []
    if magnitudes.max() > FP16_MAX:
        return [Finding("error", name, f"{what} reach {magnitudes.max():.3g}, beyond fp16's {FP16_MAX:g}")]
    flushed = float(np.mean(magnitudes < FP16_MIN_SUBNORMAL / 2))
    if flushed > UNDERFLOW_SHARE_ERROR:
        return [Finding("error", name, f"{flushed:.1%} of the {what} underflow to 0 in fp16")]
    coarse = float(np.mean(magnitudes < FP16_MIN_NORMAL))
    if coarse > 0:
        return [Finding("warning", name, f"{coarse:.1%} of the {what} are fp16 subnormals (fewer significant bits)")]
    return []


def runtime_findings(targets, mode: Mode, runtime: str, matrix) -> list[Finding]:
    """Formats the runtime does not execute correctly for their op, per the capability matrix."""
    findings = []
    checked_modes = matrix_modes(matrix)
    if mode not in checked_modes:
        return [Finding("warning", "*", f"the capability matrix has no {mode}-mode results; "
                        f"{runtime} support for this model is unchecked")]
    for target in targets:
        if not matrix.supports(runtime, target.op.opcode, mode, target.format):
            findings.append(Finding("error", target.weight_tensor,
                                    f"{runtime} does not execute {target.format} {target.op.opcode} "
                                    f"correctly in {mode} mode (capability matrix)"))
    return findings


def matrix_modes(matrix) -> set[str]:
    modes = set()
    for ops in matrix.runtimes.values():
        for per_mode in ops.values():
            if isinstance(per_mode, dict):
                modes.update(per_mode)
    return modes
