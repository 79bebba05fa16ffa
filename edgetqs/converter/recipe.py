"""A plan becomes an AI Edge Quantizer recipe.

AEQ addresses ops by a regex that it searches in the op's *scope*: the op's
output tensor names joined by ';' with a trailing ';'
(``ai_edge_quantizer.utils.tfl_flatbuffer_utils.get_op_scope``). Each planned
weight tensor is read by one or more ops (a GRU unrolled in time reads the same
kernel once per step); every such op gets one recipe entry whose regex is that
op's escaped scope, anchored at both ends, so it matches exactly that op.

The recipe itself is data: a JSON-able list of entries, saved next to the
model so a conversion can be reproduced or inspected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgetqs.errors import EdgeTQSError
from edgetqs.model.tflite_graph import Operator, TFLiteGraph
from edgetqs.planner.aeq import op_config as planner_op_config
from edgetqs.quant.formats import get_format
from edgetqs.quant.modes import Mode
from edgetqs.quant.ops import op_spec

NO_QUANTIZE = "no_quantize"


@dataclass
class OpTarget:
    """One op the recipe addresses: its weight tensor and the format planned for it."""

    op: Operator
    weight_tensor: str
    format: str
    scope: str  # AEQ's scope string for this op

    @property
    def regex(self) -> str:
        return "^" + re.escape(self.scope) + "$"


def op_scope(graph: TFLiteGraph, op: Operator) -> str:
    """The scope AEQ computes for an op (output tensor names, ';'-joined, trailing ';')."""
    names = [graph.tensors[i].name for i in op.outputs if i >= 0 and graph.tensors[i].name]
    if not names:
        names = [graph.tensors[i].name for i in op.inputs if i >= 0 and graph.tensors[i].name]
    return ";".join(names) + (";" if names else "")


def weight_tensor_of(graph: TFLiteGraph, op: Operator) -> str | None:
    """The constant float weight AEQ would quantize in this op, if any (the first, wherever it sits)."""
    spec = op_spec(op.opcode)
    for position, index in enumerate(op.inputs):
        tensor = graph.tensors[index] if index >= 0 else None
        if tensor is not None and tensor.is_constant and tensor.type_name == "FLOAT32" \
                and spec.aeq_quantizes(position, tensor.shape):
            return tensor.name
    return None


def planned_formats(plan: dict) -> dict[str, str]:
    """Weight tensor name -> planned format name, from the plan's assignments."""
    formats: dict[str, str] = {}
    for assignment in plan["assignments"]:
        get_format(assignment["format"])  # unknown names fail here with the list of known ones
        for name in assignment["weight_tensors"]:
            if formats.get(name, assignment["format"]) != assignment["format"]:
                raise EdgeTQSError(
                    f"the plan assigns tensor '{name}' two formats ({formats[name]} and {assignment['format']})",
                    "re-run `edgetqs plan`; each weight tensor must belong to one unit")
            formats[name] = assignment["format"]
    return formats


def op_targets(graph: TFLiteGraph, formats: dict[str, str]) -> list[OpTarget]:
    """Every op that reads a planned weight tensor as its quantizable weight."""
    targets = []
    for op in graph.operators:
        weight = weight_tensor_of(graph, op)
        if weight is not None and weight in formats:
            targets.append(OpTarget(op, weight, formats[weight], op_scope(graph, op)))
    return targets


def op_config(fmt: str, mode: str) -> tuple[str, dict | None]:
    """(AEQ algorithm key, op_config dict) for one format in one mode.

    The format -> AEQ config mapping is the planner's (planner/aeq.py), so the
    conformance matrix and byte costs describe exactly what we emit (static mode's
    int8 activations included).
    """
    if fmt == "fp32":
        return NO_QUANTIZE, None
    config, algorithm = planner_op_config(get_format(fmt), mode)
    return algorithm, config.to_dict()


def build_recipe(graph: TFLiteGraph, plan: dict, mode: str) -> list[dict]:
    """The AEQ recipe (list of dicts, as ``Quantizer.load_quantization_recipe`` takes) for a plan.

    In static mode a first catch-all entry quantizes every activation to int8
    (weights int8); the per-op entries after it override the weights, because
    AEQ lets the last matching entry win.
    """
    recipe = []
    if Mode.parse(mode).quantizes_activations:
        algorithm, config = op_config("int8", "static")
        recipe.append({"regex": ".*", "operation": "*", "algorithm_key": algorithm, "op_config": config})
        # The canonical model keeps float input and output (runners feed float
        # windows), so the virtual IO ops stay unquantized.
        recipe += [{"regex": ".*", "operation": io, "algorithm_key": NO_QUANTIZE} for io in ("INPUT", "OUTPUT")]
    for target in op_targets(graph, planned_formats(plan)):
        algorithm, config = op_config(target.format, mode)
        entry = {"regex": target.regex, "operation": op_spec(target.op.opcode).aeq_name,
                 "algorithm_key": algorithm}
        if config is not None:
            entry["op_config"] = config
        recipe.append(entry)
    return recipe
