"""The Engine: runs a canonical float TFLite graph with the engine's kernels.

Every value carries a leading batch axis in front of the graph's own shape
(see registry.py), so one pass runs any number of trajectories. Probe groups
are rows of that batch; a group's weight perturbations are handed to the ops
that read the weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Iterator, Mapping, Protocol

import numpy as np

from edgetqs.engine import gemm
from edgetqs.engine.ops.shape_arith import static_shape
from edgetqs.engine.precompile import ensure_compiled
from edgetqs.engine.registry import Node, Perturbation, UnsupportedOpError, lookup
from edgetqs.engine.rollout import check_covariates, check_group_windows, check_horizon, check_windows, roll_out
from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.tflite_graph import Tensor, TFLiteGraph

_FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64")

# on_output(node, outputs) -> outputs: sees (and may replace) every op's batched outputs.
OutputHook = Callable[[Node, list], list]
# kernel(node, inputs) -> outputs: the engine's kernel for an op (a perturbed op's probe kernel during
# rollout_probes); it accepts a modified copy of the node, e.g. without its fused activation.
OpKernel = Callable[[Node, list], list]


class OpHooks(Protocol):
    """What a wrapper composes with the engine (``Engine(graph, spec, hooks=...)``) to change execution.

    ``on_input`` sees the graph input once per model call, before any op (it may reset
    per-call state); ``run_op`` computes one op's batched outputs, calling ``kernel`` for
    the engine's arithmetic. Unlike ``on_output`` these also run for the ops that read a
    perturbed weight in ``rollout_probes``, so a wrapper sees every op of every probe group.
    """

    def on_input(self, x: np.ndarray) -> np.ndarray: ...

    def run_op(self, node: Node, inputs: list[np.ndarray | None], kernel: OpKernel) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class OpView:
    """One op as the engine runs it, by name: what ``Engine.ops()`` yields."""

    node: Node  # what kernels and hooks receive (tensor indices, options)
    opcode: str
    inputs: list[str]  # tensor names ("" for an omitted optional input)
    outputs: list[str]
    weights: dict[str, np.ndarray]  # the constant inputs (after folding), name -> graph-shaped value


class Engine:
    """Batched, probe-aware execution of one model. See the package docstring for the API.

    A ``RolloutBackend`` (engine/backends.py) under the name "numba"."""

    name = "numba"
    group_contexts = True  # rollout_probes takes [G, K, window, F]: each group from its own windows

    def __init__(self, graph: TFLiteGraph, spec: RolloutSpec, gemm_kernel: str = "numba",
                 on_output: OutputHook | None = None, hooks: OpHooks | None = None, keep_transposed: bool = True):
        """``gemm_kernel``: "numba" (row-exact kernel) or "blas" (one BLAS call per probe group); see gemm.py.
        ``on_output``: the per-op hook, see ``run_op``; ``hooks``: a wrapper's input and op hooks (OpHooks).
        ``keep_transposed=False``: for an engine that makes one model call: each weight's [fan_in, out]
        copy for the GEMM is made at its op and dropped after it, not kept for the next call (same numbers)."""
        if gemm_kernel not in gemm.KERNELS:
            raise EdgeTQSError(f"unknown GEMM kernel '{gemm_kernel}'", f"use one of: {', '.join(gemm.KERNELS)}")
        self.graph, self.spec = graph, spec.validate()
        self.gemm_kernel, self.on_output, self.hooks = gemm_kernel, on_output, hooks
        self.keep_transposed = keep_transposed
        ensure_compiled()  # the first run after install compiles numba's kernels in a child (precompile.py)
        self._check_io()
        self._nodes = [self._node(op) for op in graph.operators]
        missing = sorted({n.opcode for n in self._nodes if lookup(n.opcode) is None})
        if missing:
            raise UnsupportedOpError(missing)
        self._entries = {n.index: lookup(n.opcode) for n in self._nodes}
        self._constants = {t.index: self._constant_value(t) for t in graph.tensors if t.is_constant}
        self._weights = {t.name: t.index for t in graph.tensors if t.is_constant and t.type_name in _FLOAT_TYPES}
        self._fold_constants()
        self._last_use = self._last_uses()

    # -- public API --------------------------------------------------------
    def weight_names(self) -> list[str]:
        """Float constant tensors (names as in the .tflite) that rollout_probes can perturb."""
        return list(self._weights)

    def weight(self, name: str) -> np.ndarray:
        """The float32 value of a weight tensor (graph shape)."""
        return self._constants[self._weight_index(name)][0]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """One model call: windows [B, window, F] -> [B, patch, F]."""
        x = check_windows(x, self.spec)
        return self._run(x, {}).reshape(x.shape[0], self.spec.patch, self.spec.outputs)

    def rollout(self, contexts: np.ndarray, horizon: int, covariates: np.ndarray | None = None) -> np.ndarray:
        """contexts [K, window, F] (+ covariates [K, horizon*patch, C]) -> trajectories [K, horizon*patch, F - C]."""
        return roll_out(self.forward, contexts, horizon, self.spec, covariates)

    def rollout_probes(self, contexts: np.ndarray, horizon: int, deltas: list[dict[str, np.ndarray]],
                       covariates: np.ndarray | None = None) -> np.ndarray:
        """Roll every probe group out in one batch: [G, K, horizon*patch, F - C].

        Group g runs its contexts with weights ``W + deltas[g][name]`` (``{}``: the
        reference); all groups share each op's unperturbed work. ``contexts``:
        [K, window, F] for every group, or [G, K, window, F], each group from its own
        windows (a resumed rollout: rollout.windows_after gives each group's next windows).
        """
        if not deltas:
            raise EdgeTQSError("rollout_probes got no probe groups", "pass deltas=[{}] at least (the reference)")
        contexts, shared_contexts = check_group_windows(contexts, len(deltas), self.spec)
        check_horizon(horizon)
        k = contexts.shape[1]
        by_node = self._perturbations_by_node(deltas, k)
        windows = np.ascontiguousarray(contexts).reshape(-1, *contexts.shape[2:])
        given = None if covariates is None else np.tile(check_covariates(covariates, k, horizon, self.spec),
                                                        (len(deltas), 1, 1))
        patch, f = self.spec.patch, self.spec.outputs
        calls = [0]

        def forward(x):
            # At the first call from shared contexts every group reads the same windows: the
            # ops before a group's first perturbed op compute exactly the reference's rows,
            # so they run once, on K rows, and the batch widens to all groups there.
            shared = k if calls[0] == 0 and shared_contexts else 0
            calls[0] += 1
            return self._run(x, by_node, group_rows=k, shared_rows=shared).reshape(x.shape[0], patch, f)

        return roll_out(forward, windows, horizon, self.spec, given).reshape(len(deltas), k, -1, f)

    # -- the graph as the engine runs it -------------------------------------
    @property
    def nodes(self) -> tuple[Node, ...]:
        """The ops a model call runs, in order (ops on constants only were folded away at construction)."""
        return tuple(self._nodes)

    @property
    def constants(self) -> Mapping[int, np.ndarray]:
        """Tensor index -> value of every constant (folded ones included), batched as [1, *graph shape].

        A read-only live view: ``set_constant`` changes what it shows."""
        return MappingProxyType(self._constants)

    def set_constant(self, index: int, value: np.ndarray) -> None:
        """Replace a constant (graph shape, e.g. a fake-quantized weight); later calls compute with it."""
        old = self._constants[index]
        value = np.asarray(value, dtype=old.dtype)
        if value.shape != old.shape[1:]:
            raise EdgeTQSError(f"new value for tensor {index} has shape {value.shape}, the constant is {old.shape[1:]}",
                               "give the constant's own graph shape")
        self._constants[index] = np.array(value, order="C")[None]

    def tensor_name(self, index: int) -> str:
        return self.graph.tensors[index].name if index >= 0 else ""

    def ops(self) -> Iterator[OpView]:
        """Every op a model call runs, with its tensor names and constant inputs (the weights)."""
        def name(i: int) -> str:  # not self.tensor_name: subclasses may give -1 a meaning
            return self.graph.tensors[i].name if i >= 0 else ""

        for node in self._nodes:
            weights = {name(i): self._constants[i][0] for i in node.inputs if i in self._constants}
            yield OpView(node, node.opcode, [name(i) for i in node.inputs], [name(i) for i in node.outputs], weights)

    # -- the per-op hook -----------------------------------------------------
    def run_op(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Compute one op's outputs during ``forward``/``rollout``: the hook point.

        ``inputs`` and the returned outputs are batched ([B, *graph shape]).
        The default runs the engine's kernel and hands the outputs to
        ``on_output(node, outputs)``, whose return value the graph reads on.
        A subclass may override this to observe or replace any op's outputs
        (``self.kernel(node, inputs)`` is the engine's kernel; it accepts a
        modified copy of ``node``, e.g. without its fused activation).
        ``rollout_probes`` calls it too, except for the ops that read a
        perturbed weight (those run the probe kernels directly; ``hooks.run_op`` sees them).
        """
        if self.hooks is not None:
            outputs = self.hooks.run_op(node, inputs, self.kernel)
        else:
            outputs = self._entries[node.index].kernel(node, inputs)
        if self.on_output is not None:
            outputs = self.on_output(node, outputs)
        return outputs

    def transform_input(self, x: np.ndarray) -> np.ndarray:
        """The graph input as the first op reads it (batched, graph shape). Called once per model
        call, before any ``run_op``: a subclass may transform it or reset per-call state here."""
        return self.hooks.on_input(x) if self.hooks is not None else x

    @staticmethod
    def kernel(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """The engine's kernel for ``node.opcode``, run on batched inputs."""
        return lookup(node.opcode).kernel(node, inputs)

    # -- execution ---------------------------------------------------------
    def _run(self, x: np.ndarray, perturbations: dict[int, list[Perturbation]], group_rows: int = 0,
             shared_rows: int = 0) -> np.ndarray:
        kernel, rows = gemm.KERNEL.set(self.gemm_kernel), gemm.GROUP_ROWS.set(group_rows)
        keep = gemm.KEEP_TRANSPOSED.set(self.keep_transposed)
        try:
            return self._run_nodes(x, perturbations, shared_rows)
        finally:
            gemm.KERNEL.reset(kernel)
            gemm.GROUP_ROWS.reset(rows)
            gemm.KEEP_TRANSPOSED.reset(keep)

    def _run_nodes(self, x: np.ndarray, perturbations: dict[int, list[Perturbation]], shared_rows: int = 0) -> np.ndarray:
        """Run every op. ``shared_rows`` > 0: x is the same ``shared_rows`` windows tiled once per
        group, so the ops before the first perturbed one run on those rows only (see rollout_probes)."""
        values: dict[int, np.ndarray] = dict(self._constants)
        widen_at = -1
        if shared_rows and perturbations and x.shape[0] > shared_rows:
            groups, x = x.shape[0] // shared_rows, x[:shared_rows]
            widen_at = min(position for position, node in enumerate(self._nodes) if node.index in perturbations)
        x = x.reshape(x.shape[0], *self.graph.tensors[self.graph.inputs[0]].shape)
        values[self.graph.inputs[0]] = self.transform_input(x)
        for position, node in enumerate(self._nodes):
            if position == widen_at:
                for index, value in values.items():
                    if index not in self._constants:
                        values[index] = np.tile(value, (groups,) + (1,) * (value.ndim - 1))
            inputs = [values[i] if i >= 0 else None for i in node.inputs]
            perturbed = perturbations.get(node.index)
            if not perturbed:
                outputs = self.run_op(node, inputs)
            elif self.hooks is not None:
                outputs = self.hooks.run_op(node, inputs, lambda n, ins, p=perturbed: self._run_perturbed(n, ins, p))
            else:
                outputs = self._run_perturbed(node, inputs, perturbed)
            for index, value in zip(node.outputs, outputs):
                values[index] = value
            for index in self._last_use.get(node.index, ()):
                values.pop(index, None)  # free activations nobody reads any more
        return values[self.graph.outputs[0]]

    def _run_perturbed(self, node: Node, inputs: list, perturbations) -> list[np.ndarray]:
        """``node`` may be a modified copy of one of the graph's nodes (same index)."""
        entry = self._entries[node.index]
        if entry.perturbable:
            return entry.kernel(node, inputs, perturbations)
        return self._run_node_per_group(node, inputs, perturbations, entry.kernel)

    @staticmethod
    def _run_node_per_group(node, inputs, perturbations, kernel) -> list[np.ndarray]:
        """Generic probes for ops without a shared-work kernel: re-run the perturbed rows with W + delta."""
        batch = max(v.shape[0] for v in inputs if v is not None)
        outputs = [np.array(np.broadcast_to(o, (batch, *o.shape[1:]))) for o in kernel(node, inputs)]
        for p in perturbations:
            rows_inputs = [v if v is None or v.shape[0] == 1 else v[p.rows] for v in inputs]
            rows_inputs[p.input_position] = rows_inputs[p.input_position] + p.delta[None]
            for out, value in zip(outputs, kernel(node, rows_inputs)):
                out[p.rows] = value
        return outputs

    # -- set-up ------------------------------------------------------------
    def _check_io(self) -> None:
        g, spec = self.graph, self.spec
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise EdgeTQSError(
                f"the model has {len(g.inputs)} inputs and {len(g.outputs)} outputs; the engine runs canonical "
                "models with one of each", "convert the model through edgetqs intake first")
        in_shape, out_shape = g.input_shapes()[0], g.output_shapes()[0]
        want_out = (1, spec.patch, spec.outputs) if spec.output_rank == 3 else (1, spec.outputs)
        if tuple(in_shape[1:]) != (spec.window, spec.features) or tuple(out_shape)[1:] != want_out[1:]:
            raise EdgeTQSError(
                f"model input {in_shape} / output {out_shape} do not match the rollout spec "
                f"(window={spec.window}, features={spec.features}, patch={spec.patch}, output_rank={spec.output_rank})",
                "fix the rollout spec in the model card to match the model",
            )

    def _node(self, op) -> Node:
        shapes = [self.graph.tensors[i].shape for i in op.outputs]
        ranks = [len(self.graph.tensors[i].shape) if i >= 0 else 0 for i in op.inputs]
        return Node(op.index, op.opcode, op.inputs, op.outputs, op.options, shapes, ranks)

    def _constant_value(self, tensor: Tensor) -> np.ndarray:
        if tensor.type_name == "FLOAT32" and tensor.quantization is None and tensor.shape and tensor.data.flags.aligned:
            # The graph's own read-only view: weights are shared, never copied into the engine.
            return tensor.data.reshape(tensor.shape)[None]
        if tensor.type_name in _FLOAT_TYPES or tensor.quantization is not None:
            value = self.graph.float_constant(tensor)
        else:
            value = np.asarray(tensor.data)
        return np.array(value.reshape(tensor.shape), dtype=value.dtype, order="C")[None]  # ascontiguousarray would make 0-d 1-d

    def _fold_constants(self) -> None:
        """Evaluate ops whose inputs are all constant once (fp16 DEQUANTIZE, shape arithmetic).

        A folded DEQUANTIZE of an fp16 weight keeps the fp16 tensor's name as
        the weight's name, so the probe addresses the tensor the card lists.
        """
        remaining = []
        for node in self._nodes:
            if node.opcode == "SHAPE":  # the graph's static shape (batch 1), whatever the input holds
                outputs = static_shape(node, self.graph.tensors[node.inputs[0]].shape)
            elif all(i < 0 or i in self._constants for i in node.inputs):
                outputs = lookup(node.opcode).kernel(node, [self._constants.get(i) for i in node.inputs])
            else:
                remaining.append(node)
                continue
            for index, value in zip(node.outputs, outputs):
                self._constants[index] = value
            if node.opcode == "DEQUANTIZE":
                self._weights[self.graph.tensors[node.inputs[0]].name] = node.outputs[0]
        self._nodes = remaining
        used = {i for node in self._nodes for i in node.inputs}
        self._weights = {name: i for name, i in self._weights.items() if i in used}

    def _last_uses(self) -> dict[int, list[int]]:
        last: dict[int, int] = {}
        for node in self._nodes:
            for i in node.inputs:
                if i >= 0 and i not in self._constants:
                    last[i] = node.index
        by_node: dict[int, list[int]] = {}
        for tensor, node_index in last.items():
            if tensor != self.graph.outputs[0]:
                by_node.setdefault(node_index, []).append(tensor)
        return by_node

    def _weight_index(self, name: str) -> int:
        if name not in self._weights:
            raise EdgeTQSError(f"'{name}' is not a float weight tensor the engine can perturb",
                               "pick a name from Engine.weight_names()")
        return self._weights[name]

    def _perturbations_by_node(self, deltas, k: int) -> dict[int, list[Perturbation]]:
        readers: dict[int, list[tuple[Node, int]]] = {}
        for node in self._nodes:
            for position, i in enumerate(node.inputs):
                readers.setdefault(i, []).append((node, position))
        by_node: dict[int, list[Perturbation]] = {}
        for g, group in enumerate(deltas):
            rows = slice(g * k, (g + 1) * k)
            for name, delta in group.items():
                index = self._weight_index(name)
                delta = np.asarray(delta, dtype=np.float32)  # shared with the caller, not copied
                if delta.shape != self._constants[index].shape[1:]:
                    raise EdgeTQSError(
                        f"delta for '{name}' has shape {delta.shape}, the weight is {self._constants[index].shape[1:]}",
                        "give each delta the weight's own shape")
                for node, position in readers.get(index, []):
                    by_node.setdefault(node.index, []).append(Perturbation(rows, position, delta))
        return by_node
