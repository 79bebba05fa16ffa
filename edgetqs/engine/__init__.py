"""The rollout engine: a canonical float TFLite model run by numba/numpy kernels,
batched over many trajectories and probe groups at once.

API (stable; the TQS scorer codes against it)::

    from edgetqs.engine import Engine
    eng = Engine(graph: TFLiteGraph, spec: RolloutSpec)   # gemm_kernel="numba" (default) | "blas", see below
    y = eng.forward(x)                      # x [B, window, F] float32 -> [B, patch, F]
    traj = eng.rollout(contexts, horizon)   # [K, window, F] -> [K, horizon*patch, F]; horizon = model calls
    trajs = eng.rollout_probes(contexts, horizon, deltas)
        # deltas: list[dict[str, np.ndarray]], weight tensor name -> additive delta (weight's shape);
        # group g runs the K contexts with W + deltas[g]; {} is the reference. -> [G, K, horizon*patch, F]
        # contexts may also be [G, K, window, F]: group g starts from contexts[g] (a resumed rollout)
    from edgetqs.engine.rollout import windows_after
    state = windows_after(contexts, trajs, covariates, spec)   # [G, K, window, F]: each group's next windows;
        # rollout_probes(state, h, deltas, next covariates) continues the rollouts bit for bit
    eng.weight_names()                      # float constant tensors that can be perturbed
    eng.weight(name)                        # a weight's float32 value

    # the per-op hook: observe or replace every op's outputs during forward/rollout
    eng = Engine(graph, spec, on_output=lambda node, outputs: outputs)  # node: registry.Node; outputs batched
    eng = Engine(graph, spec, hooks=wrapper)  # composition (OpHooks): wrapper.on_input(x), wrapper.run_op(node,
                                            # inputs, kernel); also sees the perturbed ops of rollout_probes
    class MyEngine(Engine):                 # or override the hook points themselves:
        def run_op(self, node, inputs): ...         # default: self.kernel(node, inputs), then on_output
        def transform_input(self, x): ...           # the graph input, once per model call
    eng.ops()       # OpView(node, opcode, input/output tensor names, weights {name: value}) per op run
    eng.nodes, eng.constants, eng.set_constant(index, value), eng.tensor_name(index)

    from edgetqs.engine.litert import LiteRTRunner   # same forward/rollout through the LiteRT interpreter
    runner = LiteRTRunner(model_bytes_or_path, spec)

    from edgetqs.engine.backends import make_backend, RolloutBackend   # numba | litert | fake-quant, by name
    backend = make_backend("litert", graph, spec)   # the protocol: name, spec, weight, forward, rollout, rollout_probes

A graph with an op the engine has no kernel for raises ``UnsupportedOpError``
(an ``EdgeTQSError``; ``.ops`` names the ops) at construction, so callers can
fall back to the LiteRT path. ``supported_ops()`` lists the covered opcodes.

How it works: every value carries a leading batch axis in front of the
graph's shape (the graph's own batch dim stays 1). Probe groups are blocks of
K rows of that batch. Linear ops (FULLY_CONNECTED, BATCH_MATMUL, CONV_2D,
DEPTHWISE_CONV_2D) compute ``x·W`` for all rows in one pass and add
``x_rows·delta`` only for the rows of groups that perturb W; other ops with a
perturbed constant re-run just those rows. A group whose delta is zero
reproduces the reference group bit for bit (gemm.py explains how).

Kernels: FULLY_CONNECTED and CONV_2D GEMMs run on the engine's row-exact numba
kernel (``gemm_kernel="numba"``, default; both cores via ``prange`` and
NUMBA_NUM_THREADS) or on BLAS, one call per probe group (``gemm_kernel="blas"``).
Softmax and exact GELU are numba; other elementwise ops use numpy's SIMD loops.
numba kernels are ``cache=True``: compiled once per machine, reused across
processes; the first engine of a process has a child process compile any
that are not cached yet (precompile.py), so a run never holds the compiler's memory. OMP_WAIT_POLICY defaults to PASSIVE (see below).
"""

import os

# numba's OpenMP workers otherwise spin after each parallel region, stealing
# the core the main thread needs next; on a busy 2-core machine that made a
# forward pass 100x slower. Passive waiting costs nothing when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from edgetqs.engine.executor import Engine, OpView  # noqa: E402
from edgetqs.engine.registry import Node, UnsupportedOpError, supported_ops  # noqa: E402

__all__ = ["Engine", "Node", "OpView", "UnsupportedOpError", "supported_ops"]
