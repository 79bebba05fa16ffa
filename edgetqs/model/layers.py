"""The layer table of a canonical TFLite model, and its rollout spec inferred
from the input/output shapes.

A *layer* is a group of weighted ops sharing one main weight tensor (an
unrolled GRU runs the same kernel at every time step: that is one layer, not
sixteen). Units are addressed by weight tensor names exactly as in the .tflite.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import LayerInfo, RolloutSpec
from edgetqs.model.tflite_graph import Operator, TFLiteGraph
from edgetqs.quant.ops import op_spec

# Block names people put in layer names: block_2, block2, layers.3, encoder_layer_1, h.4 ...
_BLOCK_PATTERN = re.compile(r"((?:block|blk|layer|layers|encoder_layer|decoder_layer|stage|res|h)[_.]?\d+)", re.I)
# Components that are the model wrapper, not a layer (Keras functional/sequential, tf.function, onnx2tf).
_WRAPPER_PATTERN = re.compile(r"^(functional|sequential|model|statefulpartitionedcall|wa|tf\.\w+)(_\d+)?$", re.I)
_SUFFIX_PATTERN = re.compile(r"_\d+$")


def _is_float_constant(graph: TFLiteGraph, index: int) -> bool:
    return index >= 0 and graph.tensors[index].is_constant and graph.tensors[index].type_name == "FLOAT32"


def _weights_of(graph: TFLiteGraph, op: Operator) -> tuple[int, list[int]] | None:
    """(main weight tensor index, bias tensor indices) of a weighted op (edgetqs.quant.ops), or None.

    The main weight is the one float constant among the op's weight inputs (an op
    with two, such as a BATCH_MATMUL of two constants, is not a layer); a fused
    recurrent op's largest constant is its main weight, the others ride along.
    """
    spec = op_spec(op.opcode)
    if spec.every_constant_is_weight:
        constant = [i for i in op.inputs if _is_float_constant(graph, i)]
        if not constant:
            return None
        main = max(constant, key=lambda i: graph.tensors[i].num_elements)
        return main, [i for i in constant if i != main]
    weights = [op.inputs[i] for i in spec.weight_inputs if i < len(op.inputs) and _is_float_constant(graph, op.inputs[i])]
    if len(weights) != 1:
        return None
    biases = [op.inputs[b] for b in spec.bias_inputs if b < len(op.inputs) and _is_float_constant(graph, op.inputs[b])]
    return weights[0], biases


def _clean_component(component: str, known_names: set[str]) -> str:
    """'block_1_fc1_1' -> 'block_1_fc1' when Keras says the layer is called that."""
    if component in known_names:
        return component
    stripped = _SUFFIX_PATTERN.sub("", component)
    if stripped in known_names:
        return stripped
    return component


# TF op names that apply a layer's weights: the fused tensor name part ending in one of these names the layer.
_WEIGHT_OP_PATTERN = re.compile(r"^(MatMul|Tensordot|convolution|Conv\w*|Einsum\w*|einsum\w*|BatchMatMul\w*|Gemm|BiasAdd)(_\d+)?$")


def name_part(tensor_name: str) -> str:
    """The part of a fused tensor name ('a/MatMul;b/Relu;...') that names the weight-applying op."""
    parts = tensor_name.split(";")
    for part in parts:
        if _WEIGHT_OP_PATTERN.match(part.rsplit("/", 1)[-1]):
            return part
    return parts[0]


def unit_name(tensor_name: str, known_names=frozenset()) -> str:
    """A readable, stable layer name from an op's output tensor name.

    'functional_1/block_1_fc1_1/MatMul;functional_1/block_1_fc1_1/Relu' -> 'block_1_fc1':
    the fused name of the weighted op, without the model wrapper and the op at the end.
    ``known_names`` are the source's layer names (Keras), used to undo Keras' '_1' scope suffixes.
    """
    first = name_part(tensor_name)
    parts = [p for p in first.split("/") if p]
    if len(parts) > 1:
        parts = parts[:-1]  # the last part names the TF op (MatMul, BiasAdd, Conv2D ...)
    while len(parts) > 1 and _WRAPPER_PATTERN.match(parts[0]):
        parts = parts[1:]
    if known_names:
        parts = [_clean_component(p, known_names) for p in parts]
        # Drop leading components Keras does not know as layers (the model's own name scope).
        while len(parts) > 1 and parts[0] not in known_names:
            parts = parts[1:]
        # Keras cells inside a layer (gru/gru_cell_29) are the same layer at every step.
        parts = [p for i, p in enumerate(parts) if i == 0 or not re.fullmatch(rf"{re.escape(parts[0])}_cell(_\d+)?", p)]
    name = "/".join(parts) or first
    return re.sub(r"[^\w./-]", "_", name)


SAMPLED_RANKS = 1024  # order statistics a SourceNames keeps per weight, for matches up to a scale


def multiset_digest(values) -> int:
    """A 64-bit digest of a float32 array's values that ignores their order (transposed, reshaped:
    the same digest): the sum of a mixing hash of each value's bits. O(n), no sort."""
    bits = np.ascontiguousarray(values, np.float32).ravel().view(np.uint32).astype(np.uint64)
    bits ^= bits >> np.uint64(16)
    bits *= np.uint64(0x45D9F3B)
    bits ^= bits >> np.uint64(16)
    bits *= np.uint64(0x9E3779B97F4A7C15)
    bits ^= bits >> np.uint64(29)
    return int(bits.sum(dtype=np.uint64))


@dataclass(frozen=True)
class WeightSignature:
    """A weight's values, reduced to what matching them needs, without a copy of them: its size,
    the order-free digest of its float32 values (the same values in any layout), SAMPLED_RANKS of
    its order statistics and two whole-array moments (for values a converter scaled, which no
    digest matches)."""

    size: int
    digest: int
    sample: np.ndarray  # float64, sorted values at evenly spaced ranks, first and last included
    sum_abs: float
    sum_squares: float

    @classmethod
    def of(cls, values, digest: int | None = None) -> "WeightSignature":
        ordered = np.sort(np.asarray(values, np.float32).ravel())
        ranks = np.linspace(0, ordered.size - 1, min(SAMPLED_RANKS, ordered.size)).round().astype(np.int64)
        wide = ordered.astype(np.float64)
        return cls(ordered.size, multiset_digest(ordered) if digest is None else digest, wide[ranks],
                   float(np.abs(wide).sum()), float(wide @ wide))

    @property
    def is_zero(self) -> bool:
        return self.sum_squares == 0.0

    def holds(self, size: int, digest: int) -> bool:
        """Whether values of this ``size`` and ``digest`` are these very values (in some layout)."""
        return size == self.size and digest == self.digest and not self.is_zero

    def scaled_in(self, mine: "WeightSignature") -> bool:
        """Whether ``mine`` holds a positive multiple of these values (up to float rounding)."""
        if mine.size != self.size or self.is_zero:
            return False
        scale = float(mine.sample @ self.sample) / float(self.sample @ self.sample)
        return bool(scale > 0 and np.allclose(mine.sample, scale * self.sample, rtol=1e-4,
                                              atol=1e-6 * np.abs(mine.sample).max())
                    and np.isclose(mine.sum_abs, scale * self.sum_abs, rtol=1e-4)
                    and np.isclose(mine.sum_squares, scale**2 * self.sum_squares, rtol=2e-4))


@dataclass
class SourceNames:
    """What the source model knows about its weights, to name the .tflite's layers.

    ``layers``: the source's layer names (Keras), to clean tensor-derived names;
    ``weights``: (readable unit name, weight values) of every weight matrix, any iterable: each is
    reduced to its WeightSignature as it comes, so neither the caller (a generator) nor this object
    holds a copy of the model's weights while the converter and verification run.
    Converters transpose, reshape and sometimes fold a scale into a kernel
    (a following Mul, a batch norm), but keep its values up to that scale, so
    a .tflite weight is matched to the source weight whose values are its own (same digest),
    else to the first whose sorted values are a positive multiple of its own.
    """

    layers: set = field(default_factory=set)
    weights: Iterable = ()

    def __post_init__(self):
        self.weights = [(name, WeightSignature.of(values)) for name, values in self.weights]

    def name_of(self, values: np.ndarray | None) -> str | None:
        if values is None or not self.weights:
            return None
        size, digest = int(np.size(values)), multiset_digest(values)
        exact = next((name for name, theirs in self.weights if theirs.holds(size, digest)), None)
        if exact is not None:
            return exact
        mine = WeightSignature.of(values, digest)  # sorts: only for weights the converter changed
        return next((name for name, theirs in self.weights if theirs.scaled_in(mine)), None)


# Names the converter gives graph outputs and the like: they say nothing about the layer.
_ANONYMOUS_PATTERN = re.compile(r"^(StatefulPartitionedCall|PartitionedCall|Identity|serving_default)\w*(:\d+)?$")


def _tensor_derived_name(graph: TFLiteGraph, op: Operator, known_names: set) -> str:
    tensor_name = graph.tensors[op.outputs[0]].name
    if _ANONYMOUS_PATTERN.match(tensor_name.split(";")[0]):
        return f"{op.opcode.lower()}_{op.index}"
    return unit_name(tensor_name, known_names)


def block_name(unit: str) -> str:
    """The block a unit belongs to: a numbered block in its name, else its top-level layer."""
    match = _BLOCK_PATTERN.search(unit)
    if match:
        return match.group(1)
    return unit.split("/")[0]


def layer_table(graph: TFLiteGraph, source: SourceNames | None = None) -> list[LayerInfo]:
    """One LayerInfo per distinct main weight tensor, in graph order.

    Unit names come from the source's own layer names when the weights can be
    matched to them (Keras), else from the .tflite tensor names.
    """
    source = source or SourceNames()
    layers: list[LayerInfo] = []
    by_main: dict[int, LayerInfo] = {}
    used_names: dict[str, int] = {}
    for op in graph.operators:
        found = _weights_of(graph, op)
        if found is None:
            continue
        main, biases = found
        if main in by_main:  # the same weights again (an unrolled recurrent step)
            layer = by_main[main]
            for b in biases:
                name = graph.tensors[b].name
                if name not in layer.weight_tensors:
                    layer.weight_tensors.append(name)
                    layer.shapes.append(list(graph.tensors[b].shape))
            continue
        name = source.name_of(graph.tensors[main].data) or _tensor_derived_name(graph, op, source.layers)
        used_names[name] = used_names.get(name, 0) + 1
        if used_names[name] > 1:
            name = f"{name}#{used_names[name]}"
        tensors = [main] + [b for b in biases if b != main]
        layer = LayerInfo(
            name=name,
            op_type=op.opcode,
            op_index=op.index,
            weight_tensors=[graph.tensors[i].name for i in tensors],
            shapes=[list(graph.tensors[i].shape) for i in tensors],
            params=0,
            float_bytes=0,
            block=block_name(name),
            main_weight=graph.tensors[main].name,
        )
        by_main[main] = layer
        layers.append(layer)
    for layer in layers:
        layer.params = int(sum(np.prod(s) if s else 1 for s in layer.shapes))
        layer.float_bytes = 4 * layer.params
    return layers


def infer_rollout(graph: TFLiteGraph, given: RolloutSpec | None = None) -> RolloutSpec:
    """The rollout spec from the canonical shapes, checked against ``given`` if any."""
    where = graph.path or "the model"
    fix = "pass --rollout window=W,features=F[,patch=P] that matches the model's input [1, W, F]"
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise EdgeTQSError(f"{where} has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
                           "an autoregressive forecaster needs exactly one of each",
                           "export the model with one input window and one output")
    in_shape, out_shape = graph.input_shapes()[0], graph.output_shapes()[0]
    if given is not None:
        spec = dataclasses.replace(given).validate()  # a copy: the caller's spec stays as given
        expected_out = (spec.patch, spec.outputs) if len(out_shape) == 3 else (spec.outputs,)
        if tuple(in_shape[1:]) != (spec.window, spec.features) or tuple(out_shape[1:]) != expected_out:
            raise EdgeTQSError(f"rollout spec window={spec.window},features={spec.features},patch={spec.patch},"
                               f"covariates={spec.covariates} does not "
                               f"match the model's input {list(in_shape)} and output {list(out_shape)}", fix)
        spec.output_rank = len(out_shape)
        return spec
    if len(in_shape) == 3 and len(out_shape) == 3 and in_shape[2] == out_shape[2] and 1 <= out_shape[1] <= in_shape[1]:
        return RolloutSpec(window=in_shape[1], features=in_shape[2], patch=out_shape[1], output_rank=3).validate()
    if len(in_shape) == 3 and len(out_shape) == 2 and in_shape[2] == out_shape[1]:
        return RolloutSpec(window=in_shape[1], features=in_shape[2], patch=1, output_rank=2).validate()
    raise EdgeTQSError(f"cannot infer a rollout spec from {where}: input {list(in_shape)}, output {list(out_shape)} "
                       "are not [batch, window, features] -> [batch, patch, features] or [batch, features]", fix)
