"""Op registry: TFLite opcode name -> kernel.

A kernel is ``kernel(node, inputs) -> list[np.ndarray]``. Every value the
engine passes around carries one extra leading axis in front of the graph's
own shape: the batch of trajectories (size B for activations, size 1 for
constants), so a graph tensor of shape ``(1, 8, 6)`` is held as ``(B, 1, 8, 6)``.
Kernels therefore shift graph axes by one; numpy broadcasting does the rest.
Kernels compute output shapes from their inputs, as LiteRT does at run time:
the static shapes in the file say 1 for the batch even where an op (such as
SPACE_TO_BATCH_ND) has made the graph's batch larger.

A kernel registered with ``perturbable=True`` also takes ``perturbations``:
a list of ``Perturbation`` (rows of the batch, which input, additive delta)
and applies them itself, sharing the unperturbed work (linear ops add
``x_rows · delta`` to the shared ``x · W``). Other kernels get the generic
treatment in the engine: re-run on the perturbed rows with ``W + delta``.

A new op is one new module in ``edgetqs/engine/ops`` that calls ``register``.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgetqs.engine import ops  # the package only: its modules register themselves when _load_op_modules imports them
from edgetqs.errors import EdgeTQSError


@dataclass
class Node:
    """One operator as the engine runs it."""

    index: int
    opcode: str
    inputs: list[int]  # tensor indices, -1 for omitted optional inputs
    outputs: list[int]
    options: object | None
    output_shapes: list[tuple[int, ...]]  # graph shapes (batch dim included, as 1)
    input_ranks: list[int]  # graph ranks of the inputs (0 for omitted)

    def option(self, name: str, default=None):
        return getattr(self.options, name, default) if self.options is not None else default


@dataclass
class Perturbation:
    rows: slice  # rows of the batch (one probe group)
    input_position: int  # which of the op's inputs is perturbed
    delta: np.ndarray  # additive, graph shape of that constant
    # The delta in the GEMM's [fan_in, out] layout, made on first use and kept
    # for this rollout only (a global cache kept hundreds of deltas alive).
    gemm_delta: np.ndarray | None = None

    def transposed(self, out_dim: int) -> np.ndarray:
        if self.gemm_delta is None:
            self.gemm_delta = np.ascontiguousarray(self.delta.reshape(out_dim, -1).T, dtype=np.float32)
        return self.gemm_delta


Kernel = Callable[..., list]


@dataclass
class OpEntry:
    kernel: Kernel
    perturbable: bool


_REGISTRY: dict[str, OpEntry] = {}


def register(*opcodes: str, perturbable: bool = False) -> Callable[[Kernel], Kernel]:
    def decorate(kernel: Kernel) -> Kernel:
        for opcode in opcodes:
            _REGISTRY[opcode] = OpEntry(kernel, perturbable)
        return kernel

    return decorate


def lookup(opcode: str) -> OpEntry | None:
    _load_op_modules()
    return _REGISTRY.get(opcode)


def supported_ops() -> list[str]:
    _load_op_modules()
    return sorted(_REGISTRY)


_LOADED = False


def _load_op_modules() -> None:
    """Import every module of the ops package once, so each registers its kernels."""
    global _LOADED
    if _LOADED:
        return
    for module in pkgutil.iter_modules(ops.__path__):
        importlib.import_module(f"{ops.__name__}.{module.name}")
    _LOADED = True


def graph_axis(axis: int, rank: int) -> int:
    """A graph axis (possibly negative) as an axis of the batched value."""
    return (axis % rank) + 1 if rank else 1


def ints(value) -> list[int]:
    """An integer parameter tensor (shape, axis, perm...) as a list of ints."""
    return np.asarray(value).reshape(-1).astype(np.int64).tolist()


class UnsupportedOpError(EdgeTQSError):
    """The graph has ops the engine has no kernel for; ``ops`` names them."""

    def __init__(self, ops: list[str]):
        self.ops = ops
        super().__init__(
            f"the rollout engine does not cover op(s) {', '.join(ops)}",
            "score this model through the black-box LiteRT path (engine='litert'), "
            "or add a kernel module for the op in edgetqs/engine/ops/",
        )

