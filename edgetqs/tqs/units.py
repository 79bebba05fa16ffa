"""Units of TQS: what one score is about — a weight tensor, a layer, or a block.

Units are built from the model card's layer table (``card.layers``):

- ``tensor``: every float weight tensor on its own, named ``layer/tensor``;
- ``layer``: all float weight tensors of one op (the card's layer names);
- ``block``: layers grouped by the card's ``block`` field, or by a regex
  (``--block-regex``): layers whose name matches are grouped by the first
  capture group (the whole match when the regex has no group); layers that do
  not match stay units of their own.

Only FLOAT32 constants can be perturbed; other weight tensors are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import ModelCard
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.quant.ops import channel_axis

GRANULARITIES = ("tensor", "layer", "block")


@dataclass
class Unit:
    name: str
    weight_tensors: list[str]
    channel_axes: dict[str, int] = field(default_factory=dict)  # tensor -> output-channel axis
    params: int = 0


def tensor_channel_axes(graph: TFLiteGraph) -> dict[str, int]:
    """Every constant tensor's output-channel axis, from the first op that reads it."""
    axes: dict[str, int] = {}
    for op in graph.operators:
        adj_y = bool(getattr(op.options, "adjY", False))
        for tensor_index in op.inputs:
            if tensor_index < 0:
                continue
            tensor = graph.tensors[tensor_index]
            if tensor.is_constant and tensor.name not in axes:
                axes[tensor.name] = channel_axis(op.opcode, tensor.shape, adj_y)
    return axes


def _float_weights(graph: TFLiteGraph, names: list[str]) -> list[str]:
    kept = []
    for name in names:
        tensor = graph.tensor_by_name(name)
        if tensor.type_name == "FLOAT32" and tensor.is_constant and tensor.num_elements > 0:
            kept.append(name)
    return kept


def _group_names(card: ModelCard, granularity: str, block_regex: str | None) -> dict[str, list[str]]:
    """Unit name -> layer names, in first-seen order."""
    groups: dict[str, list[str]] = {}
    pattern = _compile(block_regex) if block_regex else None
    matched = 0
    for layer in card.layers:
        if granularity == "layer":
            key = layer.name
        elif pattern is not None:
            hit = pattern.search(layer.name)
            matched += hit is not None
            key = (hit.group(1) if hit and pattern.groups else hit.group(0)) if hit else layer.name
        else:
            key = layer.block or layer.name
        groups.setdefault(key, []).append(layer.name)
    if pattern is not None and matched == 0:
        raise EdgeTQSError(
            f"the block regex '{block_regex}' matches none of the {len(card.layers)} layer names "
            f"(for example: {', '.join(layer.name for layer in card.layers[:3])})",
            "write a regex that matches layer names (`edgetqs inspect MODEL` lists them), e.g. 'block_(\\d+)'",
        )
    return groups


def _compile(regex: str) -> re.Pattern:
    try:
        return re.compile(regex)
    except re.error as exc:
        raise EdgeTQSError(f"the block regex '{regex}' is not a valid regex: {exc}", "fix the regex") from exc


def build_units(card: ModelCard, graph: TFLiteGraph, granularity: str = "layer",
                block_regex: str | None = None) -> list[Unit]:
    """The units to score, in the card's layer order."""
    if granularity not in GRANULARITIES:
        raise EdgeTQSError(f"unknown granularity '{granularity}'", f"use one of: {', '.join(GRANULARITIES)}")
    if block_regex and granularity != "block":
        raise EdgeTQSError("--block-regex groups blocks, but the granularity is not 'block'",
                           "add --granularity block, or drop --block-regex")
    axes = tensor_channel_axes(graph)
    layer_tensors = {layer.name: _float_weights(graph, layer.weight_tensors) for layer in card.layers}
    if granularity == "tensor":
        tensors_of = _tensor_units(layer_tensors)
    else:
        groups = _group_names(card, granularity, block_regex)
        tensors_of = {key: _unique(t for layer in layers for t in layer_tensors[layer]) for key, layers in groups.items()}
    units = [_make_unit(graph, name, tensors, axes) for name, tensors in tensors_of.items() if tensors]
    if not units:
        raise EdgeTQSError(
            f"model '{card.name}' has no float weight tensors to perturb (its layer table lists "
            f"{len(card.layers)} weighted ops)",
            "score a float model with weights (fully connected, conv, matmul); a weight-free or already "
            "quantized model has nothing for TQS to score",
        )
    return units


def _tensor_units(layer_tensors: dict[str, list[str]]) -> dict[str, list[str]]:
    """One unit per tensor, named ``layer/tensor`` by the first layer that uses it (tied weights once)."""
    seen: set[str] = set()
    units = {}
    for layer, tensors in layer_tensors.items():
        for tensor in tensors:
            if tensor not in seen:
                seen.add(tensor)
                units[f"{layer}/{tensor}"] = [tensor]
    return units


def _unique(names) -> list[str]:
    return list(dict.fromkeys(names))


def _make_unit(graph: TFLiteGraph, name: str, tensors: list[str], axes: dict[str, int]) -> Unit:
    params = int(sum(np.prod(graph.tensor_by_name(t).shape) for t in tensors))
    return Unit(name, tensors, {t: axes.get(t, 0) for t in tensors}, params)
