"""One description per TFLite op: everything edgetqs knows about an op, in one place.

Every per-op question is a lookup here: which inputs hold weights (model/layers.py
builds units from them), which of those AI Edge Quantizer quantizes and under
which operation name (the planner prices, the converter's recipe addresses
them), the output-channel axis of the weight (the reference quantizer, TQS
probes), how LiteRT's hybrid kernel quantizes the op's input (the verified
search's plan rollouts), the op's role for the range estimator (ranges/), and
the tiny model the capability check runs (planner/conformance.py).

Adding a weighted op: one ``OpSpec`` entry below plus its engine kernel
(edgetqs/engine/ops/). An op without an entry has no weights, no AEQ support
and no special role.

A constant operand is a weight wherever it sits: BATCH_MATMUL's left operand
counts as much as its right one (AEQ quantizes any constant BATCH_MATMUL input,
with the channel axis it derives from ``adj_y``). What AEQ cannot quantize
(``aeq_name`` None: CONV_3D, the fused recurrent ops) is still a weight — a unit
TQS scores — but the planner prices it as float, because it stays float.

Channel axes follow the TFLite quantization spec, as AEQ uses it:

| op | weight layout | channel axis |
|---|---|---|
| FULLY_CONNECTED | [out, in] | 0 |
| CONV_2D, TRANSPOSE_CONV, EMBEDDING_LOOKUP | [out, ...] | 0 |
| DEPTHWISE_CONV_2D | [1, kh, kw, out] | 3 |
| CONV_3D | [kd, kh, kw, in, out] | 4 |
| BATCH_MATMUL constant operand | [..., in, out] | last (``adj_y``: second to last) |

Anything else (and 1-D tensors such as biases) falls back to axis 0.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

import numpy as np


class Role(enum.Enum):
    """What the range estimator (ranges/estimator.py) does with the op's output."""

    OTHER = "other"  # elementwise rules or the calibration prior
    LINEAR = "linear"  # closed-form moments from the weight statistics
    LAYOUT = "layout"  # only moves values: keeps its input's quantization, not a site


@dataclass(frozen=True)
class ConformanceCase:
    """A float model whose one weighted op is this op, for the capability check.

    ``keras_layer(tf)`` builds it as a Keras layer on ``input_shape`` (batch
    included), or ``function(tf, weight)`` as a tf.function of the input
    through a SavedModel (keeps a signature), with ``weight`` drawn of
    ``weight_shape``, and input of ``input_dtype``; ``rewrite_from`` names the op TF emits instead, rewritten
    into this one with its first two inputs swapped. ``reference(x, w)`` is
    what the op must compute (float64, bias added apart along ``bias_axis`` of
    the weight; None: no bias). Fan-ins are multiples of 64 so every blockwise
    format applies.
    """

    input_shape: tuple[int, ...]
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray]
    keras_layer: Callable | None = None
    function: Callable | None = None
    weight_shape: tuple[int, ...] = ()
    rewrite_from: str | None = None
    input_dtype: str = "float32"
    sample: Callable[[np.random.Generator], np.ndarray] | None = None  # input; default: unit Gaussian
    bias_axis: int | None = None


@dataclass(frozen=True)
class OpSpec:
    name: str  # the TFLite builtin opcode
    weight_inputs: tuple[int, ...] = ()  # inputs that are weights when they are float constants
    bias_inputs: tuple[int, ...] = ()
    every_constant_is_weight: bool = False  # fused recurrent ops keep many weights as inputs
    channel_axis: int = 0  # of the weight; negative counts from the last axis
    channel_axis_adjoint: int | None = None  # the axis when the op's adj_y option is set
    aeq_name: str | None = None  # AEQ's operation name, when AEQ quantizes the op's weights
    # With integer weights LiteRT runs the op as a hybrid kernel that quantizes its float input
    # to int8 on the fly, one (scale, zero point) per "row" (last axis) or per "sample".
    hybrid_input: str | None = None
    role: Role = Role.OTHER
    conformance: ConformanceCase | None = None

    @property
    def is_weighted(self) -> bool:
        return bool(self.weight_inputs) or self.every_constant_is_weight

    def weight_axis(self, shape, adj_y: bool = False) -> int:
        """The output-channel axis of a weight of ``shape`` read by this op."""
        rank = len(shape)
        if rank <= 1:
            return 0
        axis = self.channel_axis_adjoint if adj_y and self.channel_axis_adjoint is not None else self.channel_axis
        axis = axis + rank if axis < 0 else axis
        return axis if 0 <= axis < rank else 0

    def aeq_quantizes(self, position: int, shape) -> bool:
        """AEQ quantizes a float constant at input ``position`` of this op (matrices only)."""
        return self.aeq_name is not None and position in self.weight_inputs and len(shape) >= 2


def _conv2d(x: np.ndarray, w: np.ndarray) -> np.ndarray:  # w [out, kh, kw, in], VALID, stride 1
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[1:3], axis=(1, 2))  # n,oh,ow,c,kh,kw
    return np.einsum("nijcab,oabc->nijo", windows, w)


def _depthwise(x: np.ndarray, w: np.ndarray) -> np.ndarray:  # w [1, kh, kw, c]
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[1:3], axis=(1, 2))
    return np.einsum("nijcab,abc->nijc", windows, w[0])


_RECURRENT = ("UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_LSTM",
              "BIDIRECTIONAL_SEQUENCE_RNN", "LSTM", "RNN", "SVDF")
_LAYOUT = ("RESHAPE", "EXPAND_DIMS", "SQUEEZE", "TRANSPOSE", "STRIDED_SLICE", "SLICE", "GATHER", "SPLIT",
           "SPLIT_V", "UNPACK", "PACK", "CONCATENATION", "PAD", "PADV2", "DEQUANTIZE", "CAST")

OPS: dict[str, OpSpec] = {s.name: s for s in (
    OpSpec("FULLY_CONNECTED", (1,), (2,), aeq_name="FULLY_CONNECTED", role=Role.LINEAR, hybrid_input="row",
           conformance=ConformanceCase((2, 64), lambda x, w: x @ w.T, bias_axis=0,
                                       keras_layer=lambda tf: tf.keras.layers.Dense(16))),
    OpSpec("CONV_2D", (1,), (2,), aeq_name="CONV_2D", role=Role.LINEAR, hybrid_input="sample",
           conformance=ConformanceCase((1, 5, 5, 64), _conv2d, bias_axis=0,
                                       keras_layer=lambda tf: tf.keras.layers.Conv2D(8, 3))),
    OpSpec("DEPTHWISE_CONV_2D", (1,), (2,), channel_axis=3, aeq_name="DEPTHWISE_CONV_2D", role=Role.LINEAR,
           hybrid_input="sample",
           conformance=ConformanceCase((1, 5, 5, 64), _depthwise, bias_axis=-1,
                                       keras_layer=lambda tf: tf.keras.layers.DepthwiseConv2D(3))),
    OpSpec("CONV_3D", (1,), (2,), channel_axis=4),  # AEQ 0.10 has no CONV_3D: it stays float
    OpSpec("TRANSPOSE_CONV", (1,), (3,), aeq_name="CONV_2D_TRANSPOSE"),
    OpSpec("BATCH_MATMUL", (0, 1), channel_axis=-1, channel_axis_adjoint=-2, aeq_name="BATCH_MATMUL",
           hybrid_input="row",
           conformance=ConformanceCase((2, 3, 64), lambda x, w: x @ w, weight_shape=(2, 64, 16),
                                       function=lambda tf, w: lambda x: tf.linalg.matmul(x, tf.constant(w)))),
    OpSpec("EMBEDDING_LOOKUP", (1,), aeq_name="EMBEDDING_LOOKUP",
           conformance=ConformanceCase((5,), lambda ids, w: w[ids], weight_shape=(10, 64), rewrite_from="GATHER",
                                       input_dtype="int32", function=lambda tf, w: lambda ids: tf.gather(tf.constant(w), ids),
                                       sample=lambda rng: np.array([3, 0, 7, 7, 1], np.int32))),
    *(OpSpec(name, every_constant_is_weight=True) for name in _RECURRENT),
    *(OpSpec(name, role=Role.LAYOUT) for name in _LAYOUT),
)}


def op_spec(opcode: str) -> OpSpec:
    """The description of ``opcode``; an op edgetqs knows nothing special about gets the plain one."""
    return OPS.get(opcode) or OpSpec(opcode)


def channel_axis(opcode: str, shape, adj_y: bool = False) -> int:
    """The output-channel axis of a weight tensor of ``shape`` read by ``opcode``."""
    return op_spec(opcode).weight_axis(shape, adj_y)


def ops_with(role: Role) -> frozenset[str]:
    return frozenset(name for name, spec in OPS.items() if spec.role is role)


WEIGHTED_OPS = frozenset(name for name, spec in OPS.items() if spec.is_weighted)
CONFORMANCE_OPS = tuple(name for name, spec in OPS.items() if spec.conformance is not None)
