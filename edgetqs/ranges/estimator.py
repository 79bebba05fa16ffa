"""The probabilistic range estimator (METHOD.md §4): predicted activation ranges per input.

For every activation tensor the quantizing executor writes (a *site*), the
estimator predicts the moments of the op's output *before* the op runs:

* weighted layers (FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D) in closed form
  from offline weight statistics and fan-in sums of the layer's actual input
  (``moments.linear_layer``); convolutions sample every ``stride``-th output
  position;
* elementwise ops (activations, residual adds, scaling, the pieces of a layer
  norm) by carrying the input tensors' predicted moments through the op under
  a Gaussian assumption (``moments.gaussian_map`` and friends);
* layout ops (reshape, slice, split, ...) move channel moments along;
* anything else falls back to the tensor's calibration prior (its pooled
  moments over the calibration windows), which is static in effect; sites
  that use it are listed by ``RangeEstimator.fallback_sites``.

The predicted range is ``[E - alpha*sd, E + beta*sd]`` in the op's
pre-activation space, mapped through the fused activation (all TFLite fused
activations are monotone) and clipped to the op's image (tanh in [-1, 1], ...).
``alpha``/``beta`` are calibrated per tensor and per channel
(``edgetqs.ranges.calibration``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf

from edgetqs.engine.ops.conv import patches
from edgetqs.engine.registry import Node, graph_axis, ints, lookup
from edgetqs.quant.ops import Role, ops_with
from edgetqs.ranges import moments as mom
from edgetqs.ranges.moments import Moments, WeightStats

# Weighted layers with closed-form moments, and ops that only move values around
# (their outputs keep their input's quantization, as in TFLite int8 graphs, so
# they are not sites): roles in the op descriptions.
LINEAR_OPS = ops_with(Role.LINEAR)
LAYOUT_OPS = ops_with(Role.LAYOUT)

_ELEMENTWISE = {
    "TANH": np.tanh,
    "LOGISTIC": lambda v: 0.5 * (1 + np.tanh(0.5 * v)),
    "GELU": lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))),
    "RELU": lambda v: np.maximum(v, 0),
    "RELU6": lambda v: np.clip(v, 0, 6),
    "RELU_N1_TO_1": lambda v: np.clip(v, -1, 1),
    "EXP": np.exp,
    "ABS": np.abs,
    "SQUARE": np.square,
}
# Fused activation codes (TFLite ActivationFunctionType) as functions; all monotone.
FUSED = {1: lambda v: np.maximum(v, 0), 2: lambda v: np.clip(v, -1, 1), 3: lambda v: np.clip(v, 0, 6), 4: np.tanh}
# Where an op's output can possibly lie: predicted intervals are clipped to it.
IMAGE = {
    "TANH": (-1.0, 1.0), "LOGISTIC": (0.0, 1.0), "SOFTMAX": (0.0, 1.0), "RELU": (0.0, np.inf),
    "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0), "GELU": (-0.17, np.inf), "EXP": (0.0, np.inf),
    "ABS": (0.0, np.inf), "SQUARE": (0.0, np.inf), "SQUARED_DIFFERENCE": (0.0, np.inf),
    "RSQRT": (0.0, np.inf), "SQRT": (0.0, np.inf),
}
# SOFTMAX gets the range TFLite fixes for it ([0, 1]) rather than an estimate.
FIXED_RANGE = {"SOFTMAX": (0.0, 1.0)}


@dataclass
class SiteCalibration:
    """What calibration learns for one site (see calibration.py)."""

    alpha_tensor: float = 3.0
    beta_tensor: float = 3.0
    alpha_channel: np.ndarray | float = 3.0
    beta_channel: np.ndarray | float = 3.0
    prior: Moments | None = None  # pooled moments over the calibration windows, [1, C]


@dataclass
class RangeEstimator:
    """Predicts per-input ranges for the sites of one engine's graph."""

    nodes: list[Node]
    constants: dict[int, np.ndarray]
    shapes: dict[int, tuple[int, ...]]  # tensor index -> graph shape
    stride: int = 1
    per_channel_weights: bool = True  # weight statistics per output channel (the paper) or per layer
    exact_mean: bool = False  # E[y] from the layer's weights rather than the surrogate (see _with_exact_mean)
    weight_stats: dict[int, WeightStats] = field(default_factory=dict)  # node index -> stats
    sites: dict[int, SiteCalibration] = field(default_factory=dict)  # tensor index -> calibration
    fallback_sites: set[int] = field(default_factory=set)
    oracle_fallback: bool = False  # calibration's first pass: fall back to the measured moments
    _maps: dict[int, list | None] = field(default_factory=dict)
    _constant_moments: dict[int, Moments] = field(default_factory=dict)

    def __post_init__(self):
        for node in self.nodes:
            if node.opcode in LINEAR_OPS and node.inputs[1] in self.constants:
                self.weight_stats[node.index] = linear_weight_stats(node, self.constants, self.per_channel_weights)
            if node.opcode in LAYOUT_OPS:
                self._maps[node.index] = channel_maps(node, self.constants, self.shapes)

    # -- moments -------------------------------------------------------------
    def input_moments(self, x: np.ndarray) -> Moments:
        """The graph input is in memory before anything runs: its moments are measured."""
        return mom.of_values(x)

    def pre_moments(self, node: Node, inputs: list, carried: dict[int, Moments]) -> Moments | None:
        """Predicted moments of a site op's output before its fused activation; None: no rule."""
        if node.index in self.weight_stats:
            return self._linear(node, inputs[0])
        operands = [self._operand(i, v, carried) for i, v in zip(node.inputs, inputs)]
        op = node.opcode
        if op == "RELU":
            return mom.relu(operands[0])
        if op in _ELEMENTWISE:
            return mom.gaussian_map(_ELEMENTWISE[op], operands[0])
        if op == "NEG":
            return Moments(-operands[0].mean, operands[0].var)
        if op in ("ADD", "SUB"):
            return mom.add(operands[0], operands[1], 1.0 if op == "ADD" else -1.0)
        if op == "MUL":
            return mom.multiply(operands[0], operands[1])
        if op == "SQUARED_DIFFERENCE":
            return mom.squared_difference(operands[0], operands[1])
        if op in ("RSQRT", "SQRT"):
            return mom.power_delta(operands[0], -0.5 if op == "RSQRT" else 0.5)
        if op == "MEAN":
            return self._mean(node, inputs[0], operands[0])
        if op == "BATCH_MATMUL":
            return self._matmul(node, inputs, operands)
        return None

    def post_moments(self, node: Node, pre: Moments) -> Moments:
        code = node.option("fusedActivationFunction", 0)
        if code == 1:
            return mom.relu(pre)
        return mom.gaussian_map(FUSED[code], pre) if code in FUSED else pre

    def layout_moments(self, node: Node, carried: dict[int, Moments]) -> list[Moments] | None:
        """Moments of a layout op's outputs: channels followed through the op, else pooled."""
        data = [i for i in node.inputs if i >= 0 and i not in self.constants]
        if not data or any(i not in carried for i in data):
            return None
        joined = _concat_channels([carried[i] for i in data])
        maps = self._maps.get(node.index)
        if joined.channels == 1:  # already pooled: it broadcasts to any layout
            return [joined for _ in node.outputs]
        if maps is None or any(m is not None and m.max() >= joined.channels for m in maps):
            return [joined.pooled() for _ in node.outputs]
        return [Moments(joined.mean[:, m], joined.var[:, m]) if m is not None else joined.pooled() for m in maps]

    def fallback(self, tensor: int, measured: np.ndarray) -> Moments:
        """Moments of a site without a rule: the calibration prior (the measurement while calibrating)."""
        self.fallback_sites.add(tensor)
        site = self.sites.get(tensor)
        if self.oracle_fallback or site is None or site.prior is None:
            return mom.of_values(measured)
        return site.prior

    # -- intervals -----------------------------------------------------------
    def interval(self, node: Node | None, tensor: int, pre: Moments, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
        """Predicted range of the site's output: [B, 1] per tensor or [B, C] per channel."""
        site = self.sites.get(tensor, SiteCalibration())
        opcode = node.opcode if node is not None else "INPUT"
        batch = pre.mean.shape[0]
        if opcode in FIXED_RANGE:
            lo, hi = FIXED_RANGE[opcode]
            return np.full((batch, 1), lo), np.full((batch, 1), hi)
        if per_channel:
            sd = pre.sd()
            lo, hi = pre.mean - site.alpha_channel * sd, pre.mean + site.beta_channel * sd
        else:
            pooled = pre.pooled()
            sd = pooled.sd()
            lo, hi = pooled.mean - site.alpha_tensor * sd, pooled.mean + site.beta_tensor * sd
        if node is not None:
            code = node.option("fusedActivationFunction", 0)
            if code in FUSED:
                lo, hi = FUSED[code](lo), FUSED[code](hi)
        low, high = IMAGE.get(opcode, (-np.inf, np.inf))
        return np.clip(lo, low, high), np.clip(hi, low, high)

    # -- rules ---------------------------------------------------------------
    def _operand(self, tensor: int, value, carried: dict[int, Moments]) -> Moments:
        if tensor in carried:
            return carried[tensor]
        if tensor in self.constants:  # exact, and the same on every call
            if tensor not in self._constant_moments:
                self._constant_moments[tensor] = mom.of_values(np.asarray(value, np.float64))
            return self._constant_moments[tensor]
        return mom.of_values(np.asarray(value, np.float64))  # an activation no rule reached: measured

    def _linear(self, node: Node, x: np.ndarray) -> Moments:
        stats = self.weight_stats[node.index]
        if node.opcode == "FULLY_CONNECTED":
            rows = x.reshape(x.shape[0], -1, stats.fan_in)[:, :: self.stride]
            moments = mom.linear_layer(stats, rows.sum(axis=2), np.square(rows).sum(axis=2))
            return self._with_exact_mean(node, moments, rows)
        weight = self.constants[node.inputs[1]][0]
        kh, kw = weight.shape[1], weight.shape[2]
        cols = patches(node, x.reshape(x.shape[0], *x.shape[2:]), kh, kw)  # [B, OH, OW, K, C]
        cols = cols[:, :: self.stride, :: self.stride].reshape(x.shape[0], -1, kh * kw, x.shape[-1])
        if node.opcode == "CONV_2D":
            flat = cols.reshape(cols.shape[0], cols.shape[1], -1)
            moments = mom.linear_layer(stats, flat.sum(axis=2), np.square(flat).sum(axis=2))
            return self._with_exact_mean(node, moments, flat)
        multiplier = weight.shape[3] // x.shape[-1]
        s, q = cols.sum(axis=2), np.square(cols).sum(axis=2)  # [B, P, C]
        return mom.linear_layer(stats, np.repeat(s, multiplier, axis=2), np.repeat(q, multiplier, axis=2))

    def _with_exact_mean(self, node: Node, moments: Moments, rows: np.ndarray) -> Moments:
        """``exact_mean``: E[y] = W E[x] + b with the layer's own weights (one matrix-vector
        product per sample, 1/P of the layer's cost for P output positions); variance stays
        the surrogate's. The surrogate's mean ``mu_j * E[S]`` misses how each channel weighs
        features with different means, which shifts whole intervals (layer-norm statistics
        of the zoo transformer: ~20% misses)."""
        if not self.exact_mean:
            return moments
        stats = self.weight_stats[node.index]
        weight = self.constants[node.inputs[1]][0].reshape(len(stats.mean), -1)
        mean = rows.mean(axis=1, dtype=np.float64) @ weight.T.astype(np.float64) + stats.bias
        return Moments(mean, moments.var)

    def _mean(self, node: Node, x: np.ndarray, operand: Moments) -> Moments | None:
        rank = node.input_ranks[0]
        axes = {graph_axis(a, rank) for a in ints(self.constants[node.inputs[1]])}
        if axes == {rank}:  # over the channel axis only: one value per position
            return mom.reduce_mean(operand, x.shape[-1], over_channels=True)
        if rank not in axes:
            return mom.reduce_mean(operand, int(np.prod([x.shape[a] for a in axes])), over_channels=False)
        return None

    def _matmul(self, node: Node, inputs: list, operands: list[Moments]) -> Moments:
        adj_x = bool(node.option("adjX", False))
        a_shape = inputs[0].shape
        length = a_shape[-2] if adj_x else a_shape[-1]
        return mom.contraction(operands[0], operands[1], length)


def linear_weight_stats(node: Node, constants: dict[int, np.ndarray], per_channel: bool = True) -> WeightStats:
    """Weight statistics of a weighted layer, per output channel or pooled over the layer."""
    bias = constants.get(node.inputs[2])[0] if len(node.inputs) > 2 and node.inputs[2] >= 0 else None
    return WeightStats.of_rows(weight_rows(node, constants), bias, per_channel)


def weight_rows(node: Node, constants: dict[int, np.ndarray]) -> np.ndarray:
    """The weights of a layer as [C_out, fan_in] rows (what the estimator models as i.i.d. per row)."""
    weight = constants[node.inputs[1]][0]
    if node.opcode == "DEPTHWISE_CONV_2D":
        return weight.reshape(-1, weight.shape[-1]).T
    return weight.reshape(weight.shape[0], -1)


def _concat_channels(parts: list[Moments]) -> Moments:
    if len(parts) == 1:
        return parts[0]
    batch = max(p.mean.shape[0] for p in parts)
    means = [np.broadcast_to(p.mean, (batch, p.channels)) for p in parts]
    variances = [np.broadcast_to(p.var, (batch, p.channels)) for p in parts]
    return Moments(np.concatenate(means, axis=1), np.concatenate(variances, axis=1))


def channel_maps(node: Node, constants: dict[int, np.ndarray],
                 shapes: dict[int, tuple[int, ...]]) -> list[np.ndarray | None] | None:
    """For a layout op, which input channel each output channel holds (None: mixed, pool).

    Found once by running the op's own kernel on a tensor that holds its
    channel index (+1, so zero padding reads as "no channel") everywhere.
    """
    probes, offset = {}, 1
    for tensor in node.inputs:
        if tensor >= 0 and tensor not in constants:
            shape = shapes[tensor]
            if not shape:
                return None
            probes[tensor] = (np.arange(shape[-1]) + offset).astype(np.float32) * np.ones(shape, np.float32)
            offset += shape[-1]
    inputs = [probes[i][None] if i in probes else constants.get(i) for i in node.inputs]
    try:
        outputs = lookup(node.opcode).kernel(node, inputs)
    except Exception:  # a layout the probe cannot express: pooling is the safe answer
        return None
    maps = []
    for out in outputs:
        rows = np.rint(out[0]).astype(np.int64).reshape(-1, out.shape[-1]) if out.ndim > 1 else None
        if rows is None or np.any(rows != rows[:1]) or np.any(rows[0] == 0):
            maps.append(None)
        else:
            maps.append(rows[0] - 1)
    return maps
