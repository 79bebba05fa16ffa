"""Weight- and activation-fake-quantized execution with three activation-range modes.

``FakeQuantEngine`` wraps the rollout engine (``edgetqs.engine.Engine``, its
kernels, constant folding, batching and rollout loop) through the engine's
``hooks`` (``OpHooks``) and changes one thing: after every op that computes
values (a *site*: not a pure layout op) the output is quantized and
dequantized to ``act_bits`` with an asymmetric uniform grid over a range
chosen by the mode:

* ``static``: the min/max seen on the calibration windows (fixed);
* ``dynamic``: the exact min/max of this very output (needs the whole float
  output buffered before quantizing it);
* ``probabilistic``: the estimator's range, predicted from statistics before
  the op runs (``RangeEstimator``);
* ``hybrid``: probabilistic, except at sites whose whole float output per
  sample is no larger than the estimator's statistics for it (at most two
  values per channel, e.g. a flattened MLP's hidden vector, an RNN cell's
  state, an output projection): those take the exact min/max, which there
  costs no more memory than estimating it and is never wrong; and the graph
  input, which is a float buffer before the model runs anyway;
* ``float``: no activation quantization (weights only, if ``weight_bits``).

Ranges are per sample of the batch, per tensor or per channel (last axis),
and always contain zero (as TFLite's int8 scheme needs). Weights of weighted
layers are fake-quantized symmetric per output channel with the TQS reference
quantizer. Layout ops pass their input's quantization through, as in TFLite.

It is the ``fake-quant`` rollout backend (engine/backends.py). Because the hooks
see the ops that read a perturbed weight too, ``rollout_probes`` runs TQS probes
on the quantized model, and ``rollout_plans`` rolls out whole plans
(``{tensor: format}``, the reference quantizer's weights, activations as the
mode says) side by side from the same contexts, sharing the unperturbed work::

    fq = FakeQuantEngine(graph, spec, QuantConfig("dynamic", weight_bits=None))  # "float": weights only
    trajs = fq.rollout_plans(contexts, horizon, [{"dense/kernel": "int4"}, {"dense/kernel": "int8"}])
    # -> [P, K, horizon*patch, F]; tensors a plan does not name keep the engine's weights (float here)

In the estimated modes a probe group's ranges are predicted from the
unperturbed weights (the estimator's statistics are the model's, not the plan's).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import numpy as np

from edgetqs.engine import Engine, OpView
from edgetqs.engine.backends import register_backend
from edgetqs.engine.executor import OpKernel
from edgetqs.engine.ops.unary import apply_fused
from edgetqs.engine.registry import Node
from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.quant.formats import WeightFormat, get_format
from edgetqs.quant.ops import channel_axis
from edgetqs.quant.quantizer import quantize, quantize_channel
from edgetqs.ranges.estimator import LAYOUT_OPS, LINEAR_OPS, RangeEstimator
from edgetqs.ranges.moments import Moments
from edgetqs.tqs.units import tensor_channel_axes

MODES = ("float", "static", "dynamic", "probabilistic", "hybrid")
ESTIMATED_MODES = ("probabilistic", "hybrid")
GRANULARITIES = ("tensor", "channel")
INPUT_SITE = -1  # the graph input is quantized too; it has no producing node


@dataclass(frozen=True)
class QuantConfig:
    mode: str = "dynamic"
    act_bits: int = 8
    weight_bits: int | None = 8  # None: float weights
    granularity: str = "tensor"

    def check(self) -> "QuantConfig":
        if self.mode not in MODES:
            raise EdgeTQSError(f"activation mode '{self.mode}' is unknown", f"use one of {', '.join(MODES)}")
        if self.granularity not in GRANULARITIES:
            raise EdgeTQSError(f"granularity '{self.granularity}' is unknown", "use tensor or channel")
        for what, bits in (("activation", self.act_bits), ("weight", self.weight_bits)):
            if bits is not None and not 2 <= bits <= 16:
                raise EdgeTQSError(f"{what} bit-width {bits} is outside 2..16", "use 8 or 4 bits")
        return self


# observer(tensor, node, pre, post, pre_moments, lo, hi): sees every site as it is quantized.
Observer = Callable[[int, Node | None, np.ndarray, np.ndarray, Moments | None, np.ndarray, np.ndarray], None]


class FakeQuantEngine:
    """The engine with fake-quantized weights and activations (see module docstring).

    Composes with the engine through its ``hooks`` only: ``on_input`` quantizes the
    graph input and starts the moments a model call carries from op to op;
    ``run_op`` quantizes each site's output (and moves moments through layout ops).
    """

    name = "fake-quant"
    group_contexts = True  # rollout_probes takes [G, K, window, F], as the engine's

    def __init__(self, graph: TFLiteGraph, spec: RolloutSpec, config: QuantConfig = QuantConfig(), stride: int = 1,
                 per_channel_weights: bool = True, exact_mean: bool = False):
        if stride < 1:
            raise EdgeTQSError(f"sampling stride {stride} must be at least 1", "use --stride 1 (every position) or more")
        config = config.check()
        self.engine = Engine(graph, spec, hooks=self)
        self.graph, self.spec, self.config = graph, self.engine.spec, config
        shapes = {t.index: t.shape for t in graph.tensors}
        self.estimator = RangeEstimator(list(self.nodes), self.constants, shapes, stride=stride,
                                        per_channel_weights=per_channel_weights, exact_mean=exact_mean)
        self.static_ranges: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # tensor -> per-tensor/per-channel lo, hi
        self.observer: Observer | None = None
        self._pre_nodes = {n.index: _without_fused_activation(n) for n in self.nodes}
        self.sites = [INPUT_SITE] + [n.outputs[0] for n in self.nodes if is_site(n)]
        self._carried: dict[int, Moments] = {}  # this model call's moments, by tensor
        self._want_moments = False
        self._channel_axes: dict[str, int] | None = None
        if config.weight_bits:
            self._quantize_weights(config.weight_bits)

    # -- the engine, as this backend runs it -------------------------------------
    @property
    def nodes(self) -> tuple[Node, ...]:
        return self.engine.nodes

    @property
    def constants(self) -> Mapping[int, np.ndarray]:
        return self.engine.constants

    def set_constant(self, index: int, value: np.ndarray) -> None:
        self.engine.set_constant(index, value)

    def ops(self) -> Iterator[OpView]:
        return self.engine.ops()

    def weight_names(self) -> list[str]:
        return self.engine.weight_names()

    def weight(self, name: str) -> np.ndarray:
        """A weight as this backend computes with it (fake-quantized when ``weight_bits`` is set)."""
        return self.engine.weight(name)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.engine.forward(x)

    def rollout(self, contexts: np.ndarray, horizon: int, covariates: np.ndarray | None = None) -> np.ndarray:
        return self.engine.rollout(contexts, horizon, covariates)

    def rollout_probes(self, contexts: np.ndarray, horizon: int, deltas: list[dict[str, np.ndarray]],
                       covariates: np.ndarray | None = None) -> np.ndarray:
        """TQS probes around the fake-quantized model: group g adds ``deltas[g]`` to its weights
        (contexts [K, window, F] or each group's own [G, K, window, F], as Engine.rollout_probes)."""
        return self.engine.rollout_probes(contexts, horizon, deltas, covariates)

    def rollout_plans(self, contexts: np.ndarray, horizon: int,
                      plans: list[Mapping[str, str | WeightFormat]]) -> np.ndarray:
        """Every plan ``{tensor: format}`` rolled out from the same contexts in one batch: [P, K, horizon*patch, F]."""
        return self.engine.rollout_probes(contexts, horizon, [self.plan_deltas(plan) for plan in plans])

    def plan_deltas(self, plan: Mapping[str, str | WeightFormat]) -> dict[str, np.ndarray]:
        """Tensor -> the change from this backend's weight to the float weight quantized as ``plan`` says."""
        if self._channel_axes is None:
            self._channel_axes = tensor_channel_axes(self.graph)
        deltas = {}
        for name, fmt in plan.items():
            fmt = get_format(fmt) if isinstance(fmt, str) else fmt
            current = self.weight(name)  # also checks the name is a weight
            target = quantize(self.graph.float_constant(self.graph.tensor_by_name(name)).reshape(current.shape),
                              fmt, self._channel_axes.get(name, 0))
            deltas[name] = target - current
        return deltas

    def is_small_site(self, tensor: int) -> bool:
        """Whether the site's float output (per sample) fits in two values per channel."""
        shape = self.graph.tensors[self.graph.inputs[0] if tensor == INPUT_SITE else tensor].shape
        return bool(shape) and int(np.prod(shape)) <= 2 * shape[-1]

    def tensor_name(self, tensor: int) -> str:
        return self.engine.tensor_name(self.graph.inputs[0] if tensor == INPUT_SITE else tensor)

    def pre_activation_node(self, node: Node) -> Node:
        """The node whose kernel stops before its fused activation (what a site quantizes after)."""
        return self._pre_nodes[node.index]

    def set_mode(self, mode: str) -> None:
        """Switch activation mode, keeping calibration and weights."""
        self.config = QuantConfig(mode, self.config.act_bits, self.config.weight_bits, self.config.granularity).check()

    # -- the engine's hooks (OpHooks) ----------------------------------------------
    def on_input(self, x: np.ndarray) -> np.ndarray:
        if self.config.mode == "static" and not self.static_ranges:
            raise EdgeTQSError("static activation ranges are not calibrated",
                               "call edgetqs.ranges.calibration.calibrate(engine, windows) first")
        self._want_moments = self.config.mode in ESTIMATED_MODES or self.observer is not None
        self._carried = {}
        in_moments = self.estimator.input_moments(x) if self._want_moments else None
        if in_moments is not None:
            self._carried[self.graph.inputs[0]] = in_moments
        return self._quantize_site(INPUT_SITE, None, x, x, in_moments)

    def run_op(self, node: Node, inputs: list, kernel: OpKernel) -> list[np.ndarray]:
        if is_site(node):
            return [self._run_site(node, inputs, kernel)]
        outputs = kernel(node, inputs)
        if self._want_moments:
            moved = self.estimator.layout_moments(node, self._carried)
            for index, m in zip(node.outputs, moved or []):
                self._carried[index] = m
        return outputs

    # -- execution -------------------------------------------------------------
    def _run_site(self, node: Node, inputs: list, kernel: OpKernel) -> np.ndarray:
        pre = kernel(self._pre_nodes[node.index], inputs)[0]
        pre_moments = None
        if self._want_moments:
            pre_moments = self.estimator.pre_moments(node, inputs, self._carried)
            if pre_moments is None:
                pre_moments = self.estimator.fallback(node.outputs[0], pre)
        code = node.option("fusedActivationFunction", 0)
        post = apply_fused(pre.copy(), code) if code else pre  # apply_fused clips in place: keep pre intact
        out = self._quantize_site(node.outputs[0], node, pre, post, pre_moments)
        if self._want_moments:
            self._carried[node.outputs[0]] = self.estimator.post_moments(node, pre_moments)
        return out

    def _quantize_site(self, tensor: int, node: Node | None, pre, post, pre_moments) -> np.ndarray:
        mode, per_channel = self.config.mode, self.config.granularity == "channel"
        if mode == "float" and self.observer is None:
            return post
        lo, hi = self._range(mode, tensor, node, post, pre_moments, per_channel)
        if self.observer is not None:
            self.observer(tensor, node, pre, post, pre_moments, lo, hi)
        if mode == "float":
            return post
        return fake_quantize(post, lo, hi, self.config.act_bits)

    def _range(self, mode, tensor, node, post, pre_moments, per_channel):
        if mode == "hybrid" and (tensor == INPUT_SITE or self.is_small_site(tensor)):
            return observed_range(post, per_channel)
        if mode in ESTIMATED_MODES or (mode == "float" and pre_moments is not None):
            return self.predicted_range(node, tensor, pre_moments, per_channel, post.shape[0])
        if mode == "static":
            lo, hi = self.static_ranges[tensor]
            batch = post.shape[0]
            if not per_channel:
                lo, hi = np.min(lo), np.max(hi)
            return np.broadcast_to(lo, (batch, np.size(lo))), np.broadcast_to(hi, (batch, np.size(hi)))
        return observed_range(post, per_channel)

    def predicted_range(self, node, tensor, pre_moments, per_channel, batch):
        """The estimator's range for each of ``batch`` samples (priors are shared by all samples)."""
        lo, hi = self.estimator.interval(node, tensor, pre_moments, per_channel)
        return np.broadcast_to(lo, (batch, lo.shape[-1])), np.broadcast_to(hi, (batch, hi.shape[-1]))

    # -- weights ---------------------------------------------------------------
    def _quantize_weights(self, bits: int) -> None:
        for node in self.nodes:
            if node.opcode in LINEAR_OPS and node.inputs[1] in self.constants:
                index = node.inputs[1]
                weight = self.constants[index][0]
                axis = channel_axis(node.opcode, weight.shape)
                self.set_constant(index, quantize_channel(weight, bits, axis))


register_backend(FakeQuantEngine.name, FakeQuantEngine)  # int8 weights, dynamic int8 activations


def is_site(node: Node) -> bool:
    return node.opcode not in LAYOUT_OPS and len(node.outputs) == 1


def observed_range(value: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Exact min/max of each sample of a batched value: [B, 1], or [B, C] per channel."""
    rows = value.reshape(value.shape[0], -1, value.shape[-1] if per_channel else 1)
    return rows.min(axis=1), rows.max(axis=1)


def zero_inclusive(value: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample ranges [B, 1|C] widened to contain zero, shaped to broadcast against the batched value."""
    shape = (value.shape[0],) + (1,) * (value.ndim - 2) + (-1,)
    return (np.minimum(np.asarray(lo, np.float64), 0.0).reshape(shape),
            np.maximum(np.asarray(hi, np.float64), 0.0).reshape(shape))


def fake_quantize(value: np.ndarray, lo: np.ndarray, hi: np.ndarray, bits: int) -> np.ndarray:
    """Asymmetric uniform quantize-dequantize of a batched value with per-sample ranges [B, 1|C]."""
    lo, hi = zero_inclusive(value, lo, hi)  # zero must be exact (padding, ReLU)
    levels = 2**bits - 1
    scale = np.maximum(hi - lo, 1e-12) / levels
    zero_point = np.rint(-lo / scale)
    q = np.clip(np.rint(value / scale) + zero_point, 0, levels)
    return ((q - zero_point) * scale).astype(np.float32)


def _without_fused_activation(node: Node) -> Node:
    """A copy of the node whose kernel stops before the fused activation (the pre-activation)."""
    if node.option("fusedActivationFunction", 0) == 0:
        return node
    options = copy.copy(node.options)
    options.fusedActivationFunction = 0
    return dataclasses.replace(node, options=options)
